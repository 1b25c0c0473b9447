"""Export a trained network as a Paddle Inference model with its preprocessing recorded beside it.

What ``tools/export.py`` writes into the output folder (SPEC 5, the PaddleClas
way: the probability layer is part of the exported graph):

* ``inference.json`` + ``inference.pdiparams``: ``paddle.jit.save`` of the
  network wrapped by :class:`PMProbabilityModel`, input ``image`` of shape
  ``[None, C, S, S]`` float32, output ``pm_probability`` ``[N, 1]`` (sigmoid of
  the one logit, or softmax class 1 of two logits).  Paddle 3 saves the
  program in the PIR format (``.json``); older versions write ``.pdmodel``.
  Both load with ``paddle.inference.Config(model_file, params_file)``.
* ``preprocess.json``: how to turn an image file into that input (method A or
  B, image size, channel order, scale, mean, std), the architecture, class
  names (English and Chinese), the decision threshold, the source weights and
  their SHA-256, the Paddle version, and the check made at export: the largest
  difference between the exported model (Paddle Inference, oneDNN) and the
  checkpoint in dynamic mode on random input.

The files are written into a temporary folder first and moved in place one by
one, ``preprocess.json`` last, so an interrupted export never leaves a record
that describes other model files.
"""

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from paddle_palm.engine.checkpoint import sha256_file
from paddle_palm.engine.inference import MODEL_PREFIX, PREPROCESS_FILE, load_trained_model, resolve_model_settings
from paddle_palm.errors import ConfigError, DataError, MissingFileError

#: Version of the ``preprocess.json`` layout (2: with ``files.sha256``, the digests of the model files).
EXPORT_FORMAT = 2
#: The only file names an export record may name (written by ``paddle.jit.save``).
_MODEL_FILE_NAMES = {"model": (MODEL_PREFIX + ".json", MODEL_PREFIX + ".pdmodel"), "params": (MODEL_PREFIX + ".pdiparams",)}

#: Largest accepted difference between exported and dynamic-mode probabilities (fp32, oneDNN).
EXPORT_TOLERANCE = 1e-4

__all__ = ["EXPORT_TOLERANCE", "PMProbabilityModel", "export_checkpoint", "export_model", "preprocess_record"]  # noqa: F822


@functools.lru_cache(maxsize=1)
def _pm_wrapper_class():
    import paddle

    class PMProbabilityModel(paddle.nn.Layer):
        """A classifier with its probability layer: outputs the PM probability ``[N, 1]``.

        One logit -> sigmoid; two logits -> softmax, class 1 (PM); more than
        two -> the softmax over all classes ``[N, C]``.

        Args:
            network: the trained ``paddle.nn.Layer``.
            num_classes: its number of outputs.
        """

        def __init__(self, network, num_classes):
            super().__init__()
            self.network = network
            self.num_classes = int(num_classes)
            # Layers, not names of the enclosing function: Paddle 2.6's dynamic-to-static
            # conversion does not see those (NameError at export; paddle_palm.compat).
            self.sigmoid = paddle.nn.Sigmoid()
            self.softmax = paddle.nn.Softmax(axis=1)

        def forward(self, image):
            logits = self.network(image)
            if self.num_classes == 1:
                return self.sigmoid(logits)
            probs = self.softmax(logits)
            if self.num_classes == 2:
                return probs[:, 1:2]
            return probs

    return PMProbabilityModel


def __getattr__(name):
    # Defined lazily so that importing this module does not import Paddle.
    if name == "PMProbabilityModel":
        return _pm_wrapper_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preprocess_record(method, image_size):
    """The description of preprocessing ``method`` at ``image_size`` stored in ``preprocess.json``."""
    method = str(method).upper()
    if method == "A":
        return {
            "method": "A",
            "image_size": int(image_size),
            "spec": "SPEC 1.3 (seeds 000, 001)",
            "channel_order": "BGR",
            "resize": f"cv2.resize to {image_size}x{image_size}, bilinear (aspect ratio not kept)",
            "scale": 1.0 / 255.0,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "formula": "x = (pixel / 255 - 0.5) / 0.5, i.e. pixel / 255 * 2 - 1, in [-1, 1]",
            "layout": "NCHW",
        }
    if method == "B":
        return {
            "method": "B",
            "image_size": int(image_size),
            "spec": "SPEC 1.4 (seed 004)",
            "channel_order": "RGB",
            "resize": f"padding_black: longer side scaled to {image_size}, aspect ratio kept, centred on black",
            "scale": 1.0 / 255.0,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "formula": "x = (pixel / 255 - 0.5) / 0.5, in [-1, 1]",
            "layout": "NCHW",
        }
    raise ConfigError(f"preprocess must be A or B, got {method!r}")



def _bad_record_field(record):
    """The first field of a ``preprocess.json`` record that is not what :func:`export_model` writes, or None."""
    def number(v, low, high):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high

    def names(v):
        return v is None or (isinstance(v, list) and len(v) <= 1000 and all(isinstance(x, str) and len(x) <= 200
                                                                           for x in v))

    if not isinstance(record, dict):
        return "(top level)"
    if record.get("format") != EXPORT_FORMAT:
        return "format"
    pre = record.get("preprocess")
    if not isinstance(pre, dict) or pre.get("method") not in ("A", "B"):
        return "preprocess.method"
    if not (isinstance(pre.get("image_size"), int) and number(pre["image_size"], 16, 4096)):
        return "preprocess.image_size"
    checks = {
        "arch": lambda v: isinstance(v, str) and 0 < len(v) <= 100,
        "num_classes": lambda v: isinstance(v, int) and number(v, 1, 100000),
        "threshold": lambda v: number(v, 0.0, 1.0),
        "classes": names,
        "classes_zh": names,
    }
    for key, ok in checks.items():
        if key not in record or not ok(record[key]):
            return key
    files = record.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("sha256"), dict):
        return "files.sha256"
    for role, allowed in _MODEL_FILE_NAMES.items():
        if files.get(role) not in allowed:
            return f"files.{role}"
        digest = files["sha256"].get(files[role])
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            return f"files.sha256[{files[role]!r}]"
    return None


def check_export_record(model_dir, record, path):
    """Check an export record and the model files it names, before Paddle Inference reads them.

    The record must have the layout :func:`export_model` writes (types and ranges); the files it
    names must be plain files inside ``model_dir`` (no path, no link out of the folder) whose
    SHA-256 digests match the ones recorded at export time.  A damaged or foreign model file
    would otherwise reach Paddle Inference's C++ parser, which may crash the process.

    Args:
        model_dir: the export folder.
        record: the parsed ``preprocess.json``.
        path: the record's path, for messages.

    Returns:
        dict: ``{"model": Path, "params": Path}``.

    Raises:
        DataError: naming the record and the field, or the file that does not match.
    """
    bad = _bad_record_field(record)
    if bad is not None:
        hint = " (written by an older tools/export.py: export it again)" if bad == "format" else ""
        raise DataError(f"{path} is not a valid export record: field {bad!r} is not what tools/export.py "
                        f"(format {EXPORT_FORMAT}) writes{hint}")
    folder = os.path.realpath(model_dir)
    found = {}
    for role in ("model", "params"):
        name = record["files"][role]
        target = Path(model_dir) / name
        if not target.is_file():
            raise MissingFileError(f"exported model file missing: {target} (re-run tools/export.py)")
        real = os.path.realpath(target)
        if os.path.dirname(real) != folder:
            raise DataError(f"{target} lies outside the export folder {model_dir} (a link to {real}); refusing it")
        if sha256_file(real) != record["files"]["sha256"][name]:
            raise DataError(f"{target} is damaged or was replaced: its SHA-256 digest does not match {path}")
        found[role] = Path(real)
    return found


def _verification_batch(channels, size, method):
    """Inputs for the export check: two synthetic fundus photographs (a normal and a PM eye) through
    the model's preprocessing, and one image of uniform noise in [-1, 1].

    Random noise alone is a poor probe: a trained network often gives it a flat,
    saturated answer, which would hide a difference.
    """
    from paddle_palm.data.synthetic import render_fundus
    from paddle_palm.data.transforms import preprocess_image

    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (1, channels, size, size)).astype(np.float32)
    if channels != 3:
        return noise
    photos = [preprocess_image(render_fundus(rng, max(size, 64), prefix)[0], size, method) for prefix in ("N", "P")]
    return np.concatenate([np.stack(photos).astype(np.float32), noise])


def export_model(model, output_dir, settings, verify=True):
    """Save ``model`` (with its probability layer) and its preprocessing record into ``output_dir``.

    Args:
        model: the trained network (``paddle.nn.Layer``).
        output_dir: the folder to write (created; our files in it are replaced).
        settings: a :class:`paddle_palm.engine.inference.ModelSettings` (arch,
            num_classes, image_size, preprocess, in_channels, threshold, classes).
        verify: load the exported model with Paddle Inference (oneDNN) and
            record its largest difference from ``model`` on random input.

    Returns:
        dict: the record written to ``preprocess.json``.
    """
    import paddle

    from paddle_palm import __version__
    from paddle_palm.engine.inference import ExportedPredictor

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output must be a folder, but {output_dir} is a file")
    output_dir.mkdir(parents=True, exist_ok=True)
    size, channels = int(settings.image_size), int(settings.in_channels)

    model.eval()
    wrapped = _pm_wrapper_class()(model, settings.num_classes)
    wrapped.eval()
    spec = paddle.static.InputSpec([None, channels, size, size], "float32", "image")

    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=output_dir))
    try:
        paddle.jit.save(wrapped, os.fspath(staging / MODEL_PREFIX), input_spec=[spec])
        produced = sorted(p.name for p in staging.iterdir())
        model_file = next((n for n in (MODEL_PREFIX + ".json", MODEL_PREFIX + ".pdmodel") if n in produced), None)
        params_file = MODEL_PREFIX + ".pdiparams"
        if model_file is None or params_file not in produced:
            raise RuntimeError(f"paddle.jit.save wrote unexpected files: {produced}")
        record = {
            "format": EXPORT_FORMAT,
            "arch": settings.arch,
            "num_classes": int(settings.num_classes),
            "loss": settings.loss,
            "output": "pm_probability" if settings.num_classes <= 2 else "class_probabilities",
            "input": {"name": "image", "shape": [None, channels, size, size], "dtype": "float32", "layout": "NCHW"},
            "preprocess": preprocess_record(settings.preprocess, size),
            "threshold": float(settings.threshold),
            "classes": list(settings.classes),
            "classes_zh": list(settings.classes_zh),
            "files": {"model": model_file, "params": params_file,
                      "sha256": {name: sha256_file(staging / name) for name in (model_file, params_file)}},
            "weights": os.fspath(settings.weights) if settings.weights else None,
            "weights_sha256": sha256_file(settings.weights) if settings.weights and os.path.isfile(settings.weights) else None,
            "paddle_version": paddle.__version__,
            "paddle_palm_version": __version__,
        }
        (staging / PREPROCESS_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

        if verify and settings.num_classes <= 2:
            x = _verification_batch(channels, size, settings.preprocess)
            with paddle.no_grad():
                reference = wrapped(paddle.to_tensor(x)).numpy().reshape(len(x), -1)[:, 0]
            exported = ExportedPredictor(staging, onednn=True).pm_probability(x)
            record["verification"] = {
                "input": f"{len(x)} images: synthetic fundus photographs (N, P) and uniform noise, preprocessed",
                "pm_probability": [float(v) for v in reference],
                "backend": "Paddle Inference, oneDNN fp32",
                "max_abs_diff": float(np.max(np.abs(exported - reference))),
                "tolerance": EXPORT_TOLERANCE,
            }
            text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
            (staging / PREPROCESS_FILE).write_text(text, encoding="utf-8")

        # Move in place: the old record first out of the way, the model files, the new record last.
        old_record = output_dir / PREPROCESS_FILE
        if old_record.exists():
            old_record.unlink()
        for name in produced:
            os.replace(staging / name, output_dir / name)
        for stale in {MODEL_PREFIX + ".json", MODEL_PREFIX + ".pdmodel"} - set(produced):
            if (output_dir / stale).exists():
                (output_dir / stale).unlink()
        os.replace(staging / PREPROCESS_FILE, output_dir / PREPROCESS_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def export_checkpoint(weights, output_dir, arch=None, num_classes=None, image_size=None, preprocess=None,
                      threshold=None, verify=True):
    """Rebuild a trained network from ``weights`` (and its ``config.yaml``) and export it.

    Args:
        weights: a ``.pdparams`` file (or prefix, or run folder).
        output_dir: the folder to write.
        arch, num_classes, image_size, preprocess, threshold: override the run's
            settings (see :func:`paddle_palm.engine.inference.resolve_model_settings`).
        verify: check the exported model against the checkpoint (see :func:`export_model`).

    Returns:
        dict: the ``preprocess.json`` record.

    Raises:
        CheckpointError: missing, damaged or other-architecture weights.
        ConfigError: bad settings.
    """
    settings = resolve_model_settings(weights, arch, num_classes, image_size, preprocess, threshold)
    model = load_trained_model(settings, fast=False)  # traced: Paddle's own layers
    return export_model(model, output_dir, settings, verify=verify)
