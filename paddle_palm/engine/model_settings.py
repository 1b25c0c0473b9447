"""The settings of a trained model, and the model itself, rebuilt from its weights and ``config.yaml``.

Evaluation, prediction, export and the app all start from a ``.pdparams`` file:
:func:`resolve_model_settings` reads the run's ``config.yaml`` beside it
(architecture, number of outputs, image size, preprocessing, classes, threshold;
SPEC 5) and the operating point training chose on the validation split (the threshold of
its rule and the calibration temperature, from ``best_model.pdstates``), lets the caller's values override it, and checks the result with the
rules of the training configuration (:func:`paddle_palm.engine.config.validate`,
:func:`~paddle_palm.engine.config.check_image_size`).  Without a ``config.yaml``
the architecture's recipe and registry entry give the defaults.
:func:`load_trained_model` builds the network and loads the weights into it.

The model zoo, the checkpoint loader and the execution path import Paddle
(seconds), so they are imported inside :func:`load_trained_model`.
"""

import dataclasses
import os

from paddle_palm import runtime
from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.engine.config import check_image_size, find_run_config, load_run_config, recipe, validate
from paddle_palm.errors import ConfigError, MissingFileError, PalmError
from paddle_palm.metrics import CLASS_NAMES_EN, CLASS_NAMES_ZH, infer_loss

__all__ = ["ModelSettings", "load_trained_model", "recorded_operating_point", "resolve_model_settings"]


@dataclasses.dataclass
class ModelSettings:
    """Everything needed to rebuild a trained network and feed it (from ``config.yaml`` and flags).

    Attributes:
        arch: registry name of the architecture.
        num_classes: number of outputs (1: one PM logit with a sigmoid; 2: softmax).
        loss: ``"bce"`` (one logit) or ``"ce"``.
        image_size: side of the square input.
        preprocess: ``"A"`` (SPEC 1.3) or ``"B"`` (SPEC 1.4).
        in_channels: input channels of the network.
        threshold: PM decision threshold (``pm_probability >= threshold``): a flag's value, else
            the one training chose (``operating_point``), else ``config.yaml``'s ``threshold``.
        temperature: the calibration temperature (PM logits are divided by it; 1 changes nothing).
        operating_point: the record training wrote for these weights (rule, threshold, the
            validation figures with their intervals), or None.
        classes: English class names (index 0, 1).
        classes_zh: Chinese class names (index 0, 1).
        weights: path of the weights file, or None.
        config_file: the ``config.yaml`` that was read, or None.
    """

    arch: str
    num_classes: int
    loss: str
    image_size: int
    preprocess: str
    in_channels: int = 3
    threshold: float = 0.5
    temperature: float = 1.0
    operating_point: dict = None
    classes: list = dataclasses.field(default_factory=list)
    classes_zh: list = dataclasses.field(default_factory=list)
    weights: str = None
    config_file: str = None


def _check_weights_exist(weights):
    """MissingFileError naming ``weights`` when neither it nor ``weights + ".pdparams"`` exists."""
    if not os.path.isdir(weights) and not os.path.isfile(ckpt.resolve_weights_path(weights)):
        raise MissingFileError(f"weights file not found: {weights}")


def _run_config(weights, arch):
    """The run's configuration beside ``weights`` (and its path), or ``({}, None)``."""
    if weights is None:
        return {}, None
    config_file = find_run_config(weights)
    if config_file is None:
        return {}, None
    config = load_run_config(config_file)
    if arch and config.get("arch") != arch:
        # Another architecture than the run's: its recipe, not the run's settings, gives the defaults.
        return {}, None
    return config, config_file


def recorded_operating_point(weights, config):
    """The operating point training recorded for ``weights``: its own ``.pdstates``, else the run's
    ``config.yaml`` (which holds ``best_model``'s) when ``weights`` is that ``best_model``."""
    if weights is None:
        return None
    try:
        path = ckpt.resolve_weights_path(weights)
        recorded = ckpt.operating_point_beside(path)
    except (OSError, PalmError):
        return None
    if recorded is None and os.path.basename(path) == "best_model" + ckpt.PARAMS_SUFFIX:
        recorded = config.get("operating_point")
    return recorded


def resolve_model_settings(weights=None, arch=None, num_classes=None, image_size=None, preprocess=None,
                           threshold=None):
    """Settings of a trained model: its run's ``config.yaml`` (when beside ``weights``) overridden by flags.

    Without a ``config.yaml`` the architecture's seed recipe gives the defaults
    (image size, preprocessing A or B, and 1 logit or 2 classes), as
    ``tools/train.py`` would have used them.

    Args:
        weights: a ``.pdparams`` file, a prefix without extension, or a run folder.
        arch, num_classes, image_size, preprocess, threshold: overrides (None keeps the run's value).

    Returns:
        ModelSettings

    Raises:
        MissingFileError: ``weights`` names no file (checked first: a missing file, not a missing
            ``--arch``, is what went wrong).
        ConfigError: no architecture known, or an inconsistent or out-of-range value.
    """
    if weights is not None:
        weights = os.fspath(weights)
        _check_weights_exist(weights)
    config, config_file = _run_config(weights, arch)
    arch = arch or config.get("arch")
    if not arch:
        raise ConfigError(
            "no architecture given: use --arch NAME (there is no config.yaml beside the weights to read it from)"
        )
    base = recipe(arch)  # unknown name: ConfigError listing the known ones
    recorded = recorded_operating_point(weights, config)
    if threshold is None:
        threshold = recorded["threshold"] if recorded else config.get("threshold", 0.5)
    values = validate({
        "num_classes": num_classes or config.get("num_classes") or None,
        "image_size": image_size or config.get("image_size") or base["image_size"],
        "preprocess": preprocess or config.get("preprocess") or base["preprocess"],
        "threshold": threshold,
    })
    spec = check_image_size(arch, values["image_size"])
    n = values["num_classes"] or spec.num_classes
    classes = list(config.get("classes") or CLASS_NAMES_EN)
    classes_zh = list(config.get("classes_zh") or (CLASS_NAMES_ZH if len(classes) == 2 else []))
    return ModelSettings(
        arch=arch, num_classes=n, loss=infer_loss(n), image_size=values["image_size"],
        preprocess=values["preprocess"], in_channels=spec.in_channels, threshold=values["threshold"],
        temperature=float((recorded or {}).get("temperature", 1.0)), operating_point=recorded, classes=classes, classes_zh=classes_zh, weights=weights, config_file=config_file,
    )


def load_trained_model(settings, fast=True):
    """Build ``settings.arch`` and load ``settings.weights`` into it; return it in eval mode.

    Args:
        settings: a :class:`ModelSettings`.
        fast: on a CPU, run the convolutions with oneDNN (:class:`paddle_palm.runtime.ExecutionPath`;
            the same numbers within float32 rounding, about twice as fast); False keeps Paddle's.

    Raises:
        CheckpointError: missing, damaged or other-architecture weights (named).
    """
    from paddle_palm.engine.checkpoint import load_weights
    from paddle_palm.models import build_model

    model = build_model(settings.arch, num_classes=settings.num_classes)
    settings.weights = load_weights(model, settings.weights, arch=settings.arch)
    model.eval()
    if fast:
        runtime.ExecutionPath(fast=True).apply(model)
    return model
