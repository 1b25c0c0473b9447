"""Starting a network from pretrained weights (``tools/train.py --pretrained imagenet|PATH``).

``imagenet`` takes the ImageNet weights paddle.vision publishes for the networks
of :data:`IMAGENET_WEIGHTS`; Paddle's own ``get_weights_path_from_url`` downloads
them once, checks their md5 and keeps them in its cache
(``~/.cache/paddle/hapi/weights``, ``paddle.utils.download.WEIGHTS_HOME``).
``PATH`` is a ``.pdparams`` state dict of the same network saved from
paddle.vision, PaddleClas or this package (:func:`paddle_palm.models.convert.detect_format`).

Either way the file is read through :func:`paddle_palm.safe_load.paddle_load` (a
downloaded or shared file never runs code), renamed by
:func:`paddle_palm.models.convert.backbone_from`, and loaded into the backbone;
the classifier keeps its fresh initialisation for this run's outputs unless the
file's has exactly as many.  One log line says what was loaded and what was left out.

Paddle is imported inside the functions: importing it takes seconds, and the
tools install their signal handlers first.
"""

import contextlib
import logging
import os

from paddle_palm.errors import CheckpointError, ConfigError, MissingFileError
from paddle_palm.models import convert
from paddle_palm.safe_load import paddle_load

__all__ = ["IMAGENET", "IMAGENET_WEIGHTS", "check_pretrained", "imagenet_weights_path", "load_pretrained",
           "pretrained_path"]

#: The value of ``--pretrained`` that asks for the published ImageNet weights.
IMAGENET = "imagenet"

#: ``arch -> (url, md5)`` of paddle.vision's ImageNet weights, as ``model_urls`` in
#: ``paddle/vision/models/resnet.py`` and ``squeezenet.py`` give them (Paddle 2.0 to 3.3).
IMAGENET_WEIGHTS = {
    "resnet50": ("https://paddle-hapi.bj.bcebos.com/models/resnet50.pdparams",
                 "ca6f485ee1ab0492d38f323885b0ad80"),
    "resnet101": ("https://paddle-hapi.bj.bcebos.com/models/resnet101.pdparams",
                  "02f35f034ca3858e1e54d4036443c92d"),
    "resnet152": ("https://paddle-hapi.bj.bcebos.com/models/resnet152.pdparams",
                  "7ad16a2f1e7333859ff986138630fd7a"),
    "squeezenet1_0": ("https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/SqueezeNet1_0_pretrained.pdparams",
                      "30b95af60a2178f03cf9b66cd77e1db1"),
    "squeezenet1_1": ("https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/SqueezeNet1_1_pretrained.pdparams",
                      "a11250d3a1f91d7131fd095ebbf09eee"),
}


def check_pretrained(arch, pretrained):
    """Refuse ``--pretrained`` for a network without a weight mapping, or ``imagenet`` without published weights.

    Raises:
        ConfigError: one line naming the networks that have them.
    """
    if pretrained is None:
        return
    if pretrained == IMAGENET and arch not in IMAGENET_WEIGHTS:
        raise ConfigError(f"--pretrained imagenet is available for {', '.join(IMAGENET_WEIGHTS)}; "
                          f"{arch} has no published ImageNet weights")
    if arch not in convert.SUPPORTED:
        raise ConfigError(f"--pretrained reads weights of {', '.join(convert.SUPPORTED)}; "
                          f"{arch} has no pretrained weight mapping")


@contextlib.contextmanager
def _paddle_download_log():
    """Collect what Paddle's downloader logs (the reason a download failed) instead of printing it."""
    logger = logging.getLogger("paddle.utils.download")
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers, logger.propagate = [Collect()], False
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def imagenet_weights_path(arch, log=print):
    """The local copy of ``arch``'s ImageNet weights, downloaded by Paddle when its cache has none.

    Raises:
        ConfigError: ``arch`` has no published ImageNet weights.
        MissingFileError: the download failed (one line with the reason and the URL to fetch by hand).
    """
    check_pretrained(arch, IMAGENET)
    from paddle.utils import download

    url, md5 = IMAGENET_WEIGHTS[arch]
    cached = os.path.join(download.WEIGHTS_HOME, os.path.basename(url))
    if not os.path.isfile(cached):
        log(f"downloading the ImageNet weights of {arch} from {url} to {download.WEIGHTS_HOME}")
    with _paddle_download_log() as messages:
        try:
            return download.get_weights_path_from_url(url, md5)
        except Exception as exc:  # RuntimeError after Paddle's retries, OSError, httpx errors
            failures = [m.split(" failed with exception ", 1)[1] for m in messages if " failed with exception " in m]
            reason = failures[-1] if failures else f"{type(exc).__name__}: {exc}"
            raise MissingFileError(f"could not download {url}: {' '.join(str(reason).split())}; download it "
                                   f"yourself from {url} and pass --pretrained PATH") from None


def pretrained_path(arch, pretrained, log=print):
    """The weights file ``--pretrained`` names: the (downloaded) ImageNet copy, or ``pretrained`` itself."""
    check_pretrained(arch, pretrained)
    if pretrained == IMAGENET:
        return imagenet_weights_path(arch, log=log)
    path = os.fspath(pretrained)
    if not os.path.isfile(path):
        raise MissingFileError(f"--pretrained file not found: {path} (expected a .pdparams state dict of {arch}, "
                               f"or 'imagenet')")
    return path


def load_pretrained(model, arch, pretrained, num_classes, log=print):
    """Load ``--pretrained`` weights into ``model`` (a freshly built ``arch``).

    Args:
        model: the network, built with ``num_classes`` outputs.
        arch: its architecture (one of :data:`paddle_palm.models.convert.SUPPORTED`).
        pretrained: ``"imagenet"`` or the path of a ``.pdparams`` file.
        num_classes: the network's outputs (the file's classifier is used only if it has as many).
        log: a callable taking one message.

    Returns:
        dict: ``path``, ``format``, ``loaded`` (parameter names) and ``skipped`` (the file's classifier).

    Raises:
        ConfigError, MissingFileError: see :func:`pretrained_path`.
        CheckpointError, UnsafeFileError: the file is not a state dict of ``arch`` or does not fit it.
    """
    path = pretrained_path(arch, pretrained, log=log)
    state = paddle_load(path)
    weights, fmt, loaded, skipped = convert.backbone_from(arch, state, num_classes, source=path)
    own = model.state_dict()
    for name in convert.classifier_names(arch):
        weights.setdefault(name, own[name])  # no "not found" warnings for the classifier kept
    try:
        model.set_state_dict(weights)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} could not be loaded into {arch}: {exc}") from None
    what = "the ImageNet weights" if pretrained == IMAGENET else "pretrained weights"
    kept = (f"; skipped the file's classifier {', '.join(skipped)} (initialised afresh for {num_classes} "
            f"output{'s' if num_classes != 1 else ''})" if skipped else
            ("" if len(loaded) == len(weights) else "; the file has no classifier (initialised afresh)"))
    log(f"{what} of {arch} from {path} ({fmt} names): loaded {len(loaded)} tensors "
        f"({loaded[0]} ... {loaded[-1]}){kept}")
    return {"path": path, "format": fmt, "loaded": loaded, "skipped": skipped}
