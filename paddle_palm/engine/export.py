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
that describes other model files.  The folder's names and the checks made before
loading one live in :mod:`paddle_palm.engine.export_record`.

Paddle is imported inside the functions that save and run the model (importing it
takes seconds; the tools install their signal handlers first).
"""

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from paddle_palm import __version__
from paddle_palm.data.synthetic import render_fundus
from paddle_palm.data.transforms import preprocess_image
from paddle_palm.engine.checkpoint import sha256_file
from paddle_palm.engine.export_record import (
    EXPORT_FORMAT,
    MODEL_FILE_NAMES,
    MODEL_PREFIX,
    PREPROCESS_FILE,
    preprocess_record,
)
from paddle_palm.engine.model_settings import load_trained_model, resolve_model_settings
from paddle_palm.engine.predictors import ExportedPredictor
from paddle_palm.errors import ConfigError, UnsupportedVersionError

#: Largest accepted difference between exported and dynamic-mode probabilities (fp32, oneDNN).
EXPORT_TOLERANCE = 1e-4

__all__ = ["EXPORT_TOLERANCE", "PMProbabilityModel", "export_checkpoint", "export_model"]  # noqa: F822


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
            temperature: the calibration temperature the logits are divided by (1: none).
        """

        def __init__(self, network, num_classes, temperature=1.0):
            super().__init__()
            self.network = network
            self.num_classes = int(num_classes)
            self.temperature = float(temperature)
            # Layers, not names of the enclosing function: Paddle 2.6's dynamic-to-static
            # conversion does not see those (NameError at export; paddle_palm.compat).
            self.sigmoid = paddle.nn.Sigmoid()
            self.softmax = paddle.nn.Softmax(axis=1)

        def forward(self, image):
            logits = self.network(image)
            if self.temperature != 1.0:
                logits = logits / self.temperature
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


def _verification_batch(channels, size, method):
    """Inputs for the export check: two synthetic fundus photographs (a normal and a PM eye) through
    the model's preprocessing, and one image of uniform noise in [-1, 1].

    Random noise alone is a poor probe: a trained network often gives it a flat,
    saturated answer, which would hide a difference.
    """
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
        settings: a :class:`paddle_palm.engine.model_settings.ModelSettings` (arch,
            num_classes, image_size, preprocess, in_channels, threshold, classes).
        verify: load the exported model with Paddle Inference (oneDNN) and
            record its largest difference from ``model`` on random input.

    Returns:
        dict: the record written to ``preprocess.json``.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output must be a folder, but {output_dir} is a file")
    output_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    wrapped = _pm_wrapper_class()(model, settings.num_classes, settings.temperature)
    wrapped.eval()

    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=output_dir))
    try:
        produced, model_file = _save_program(wrapped, staging, settings)
        record = _export_record(settings, staging, model_file)
        _write_record(staging, record)
        if verify and settings.num_classes <= 2:
            record["verification"] = _verify(wrapped, staging, settings)
            _write_record(staging, record)
        _move_in_place(staging, output_dir, produced)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _save_program(wrapped, staging, settings):
    """``paddle.jit.save`` into ``staging``: ``(names of the files written, name of the program file)``."""
    import paddle

    size, channels = int(settings.image_size), int(settings.in_channels)
    spec = paddle.static.InputSpec([None, channels, size, size], "float32", "image")
    paddle.jit.save(wrapped, os.fspath(staging / MODEL_PREFIX), input_spec=[spec])
    produced = sorted(p.name for p in staging.iterdir())
    model_file = next((n for n in MODEL_FILE_NAMES["model"] if n in produced), None)
    if model_file is None or MODEL_FILE_NAMES["params"][0] not in produced:
        raise UnsupportedVersionError(f"paddle.jit.save wrote unexpected files: {produced}")
    return produced, model_file


def _export_record(settings, staging, model_file):
    """The ``preprocess.json`` record of the model files in ``staging`` (format :data:`EXPORT_FORMAT`)."""
    import paddle

    size, channels = int(settings.image_size), int(settings.in_channels)
    params_file = MODEL_FILE_NAMES["params"][0]
    weights = settings.weights
    return {
        "format": EXPORT_FORMAT,
        "arch": settings.arch,
        "num_classes": int(settings.num_classes),
        "loss": settings.loss,
        "output": "pm_probability" if settings.num_classes <= 2 else "class_probabilities",
        "input": {"name": "image", "shape": [None, channels, size, size], "dtype": "float32", "layout": "NCHW"},
        "preprocess": preprocess_record(settings.preprocess, size),
        "threshold": float(settings.threshold),
        # The calibration temperature is part of the exported program: its output is calibrated.
        "temperature": float(settings.temperature),
        "operating_point": settings.operating_point,
        "classes": list(settings.classes),
        "classes_zh": list(settings.classes_zh),
        "files": {"model": model_file, "params": params_file,
                  "sha256": {name: sha256_file(staging / name) for name in (model_file, params_file)}},
        "weights": os.fspath(weights) if weights else None,
        "weights_sha256": sha256_file(weights) if weights and os.path.isfile(weights) else None,
        "paddle_version": paddle.__version__,
        "paddle_palm_version": __version__,
    }


def _write_record(folder, record):
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    (folder / PREPROCESS_FILE).write_text(text, encoding="utf-8")


def _verify(wrapped, staging, settings):
    """The check of the staged export: its probabilities next to the dynamic-mode network's."""
    import paddle

    x = _verification_batch(int(settings.in_channels), int(settings.image_size), settings.preprocess)
    with paddle.no_grad():
        reference = wrapped(paddle.to_tensor(x)).numpy().reshape(len(x), -1)[:, 0]
    exported = ExportedPredictor(staging, onednn=True).pm_probability(x)
    return {
        "input": f"{len(x)} images: synthetic fundus photographs (N, P) and uniform noise, preprocessed",
        "pm_probability": [float(v) for v in reference],
        "backend": "Paddle Inference, oneDNN fp32",
        "max_abs_diff": float(np.max(np.abs(exported - reference))),
        "tolerance": EXPORT_TOLERANCE,
    }


def _move_in_place(staging, output_dir, produced):
    """Move the staged files in place: the old record first out of the way, the model files, the new record last."""
    old_record = output_dir / PREPROCESS_FILE
    if old_record.exists():
        old_record.unlink()
    for name in produced:
        os.replace(staging / name, output_dir / name)
    for stale in set(MODEL_FILE_NAMES["model"]) - set(produced):
        if (output_dir / stale).exists():
            (output_dir / stale).unlink()
    os.replace(staging / PREPROCESS_FILE, output_dir / PREPROCESS_FILE)


def export_checkpoint(weights, output_dir, arch=None, num_classes=None, image_size=None, preprocess=None,
                      threshold=None, verify=True):
    """Rebuild a trained network from ``weights`` (and its ``config.yaml``) and export it.

    Args:
        weights: a ``.pdparams`` file (or prefix, or run folder).
        output_dir: the folder to write.
        arch, num_classes, image_size, preprocess, threshold: override the run's
            settings (see :func:`paddle_palm.engine.model_settings.resolve_model_settings`).
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
