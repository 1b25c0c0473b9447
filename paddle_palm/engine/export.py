"""Export a trained network as a Paddle Inference model with its preprocessing recorded beside it.

What ``tools/export.py`` writes into the output folder (SPEC 5, the PaddleClas
way: the probability layer is part of the exported graph):

* ``inference.json`` + ``inference.pdiparams``: ``paddle.jit.save`` of the
  network wrapped by :class:`PMProbabilityModel`, input ``image`` of shape
  ``[None, C, S, S]`` float32, output ``pm_probability`` ``[N, 1]`` (sigmoid of
  the one logit, or softmax class 1 of two logits).  Paddle 3 saves the
  program in the PIR format (``.json``); older versions write ``.pdmodel``.
  Both load with ``paddle.inference.Config(model_file, params_file)``.
* ``inference.yml``: the same preprocessing and the threshold in the layout
  PaddleClas's deploy scripts read (``Global``, ``PreProcess.transform_ops``,
  ``PostProcess.ThreshOutput``; :func:`paddle_palm.engine.export_record.deploy_yaml`).
* ``model.onnx`` with ``fmt="onnx"`` or ``"both"``: the program converted by
  paddle2onnx (:mod:`paddle_palm.engine.onnx_export`), input ``image``, output
  ``pm_probability``, checked with onnxruntime against the checkpoint like the
  Paddle Inference model.  The Paddle files it is converted from stay beside it.
* ``preprocess.json``: how to turn an image file into that input (method A or
  B, image size, channel order, scale, mean, std), the architecture, class
  names (English and Chinese), the decision threshold, the source weights and
  their SHA-256, the Paddle version, and the check made at export: the largest
  difference between the exported model (Paddle Inference, oneDNN) and the
  checkpoint in dynamic mode on synthetic photographs, noise and any real images
  given (``verify_images``).  The output tensor is named ``pm_probability`` in the
  program (Paddle 3; Paddle 2 keeps its own name, recorded as ``output_tensor``:
  :func:`paddle_palm.compat.name_exported_output`).

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

from paddle_palm import __version__, compat
from paddle_palm.data.images import read_image
from paddle_palm.data.synthetic import render_fundus
from paddle_palm.data.transforms import preprocess_image
from paddle_palm.engine.checkpoint import sha256_file
from paddle_palm.engine.export_record import (
    DEPLOY_FILE,
    EXPORT_FORMAT,
    INPUT_NAME,
    MODEL_FILE_NAMES,
    MODEL_PREFIX,
    ONNX_FILE,
    OUTPUT_NAME,
    PREPROCESS_FILE,
    deploy_yaml,
    preprocess_record,
)
from paddle_palm.engine.model_settings import load_trained_model, resolve_model_settings
from paddle_palm.engine.onnx_export import convert_to_onnx, onnxruntime_version, require_onnx
from paddle_palm.engine.predict import collect_images
from paddle_palm.engine.predictors import ExportedPredictor, OnnxPredictor
from paddle_palm.errors import ConfigError, UnsupportedVersionError

#: Largest accepted difference between exported and dynamic-mode probabilities (fp32, oneDNN).
EXPORT_TOLERANCE = 1e-4
#: What ``tools/export.py --format`` accepts: Paddle Inference files, and ONNX beside them.
FORMATS = ("paddle", "onnx", "both")
#: At most this many of the real images given for the export check are used.
MAX_VERIFY_IMAGES = 8

__all__ = ["EXPORT_TOLERANCE", "FORMATS", "PMProbabilityModel", "export_checkpoint", "export_model"]  # noqa: F822


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


def _verification_batch(channels, size, method, images=()):
    """Inputs for the export check: two synthetic fundus photographs (a normal and a PM eye) through
    the model's preprocessing, one image of uniform noise in [-1, 1], and the real image files
    ``images`` (at most :data:`MAX_VERIFY_IMAGES`), preprocessed.

    Random noise alone is a poor probe: a trained network often gives it a flat,
    saturated answer, which would hide a difference.
    """
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (1, channels, size, size)).astype(np.float32)
    if channels != 3:
        return noise
    photos = [preprocess_image(render_fundus(rng, max(size, 64), prefix)[0], size, method) for prefix in ("N", "P")]
    photos += [preprocess_image(read_image(path), size, method) for path in images]
    return np.concatenate([np.stack(photos).astype(np.float32), noise])


def _verify_image_files(paths):
    """The first :data:`MAX_VERIFY_IMAGES` image files of ``paths`` (files and folders), or ``[]``."""
    return [item.path for item in collect_images(paths)[:MAX_VERIFY_IMAGES]] if paths else []


def export_model(model, output_dir, settings, verify=True, fmt="paddle", verify_images=None):
    """Save ``model`` (with its probability layer) and its preprocessing record into ``output_dir``.

    Args:
        model: the trained network (``paddle.nn.Layer``).
        output_dir: the folder to write (created; our files in it are replaced).
        settings: a :class:`paddle_palm.engine.model_settings.ModelSettings` (arch,
            num_classes, image_size, preprocess, in_channels, threshold, classes).
        verify: load the exported model with Paddle Inference (oneDNN), and the ONNX
            model with onnxruntime, and record their largest difference from ``model``.
        fmt: ``"paddle"`` (Paddle Inference files), ``"onnx"`` or ``"both"`` (``model.onnx``
            as well, converted from them; the Paddle files stay: the same as ``"both"``).
        verify_images: image files or folders whose images (the first
            :data:`MAX_VERIFY_IMAGES`) join the check's synthetic inputs.

    Returns:
        dict: the record written to ``preprocess.json``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    onnx = fmt != "paddle"
    if onnx:
        require_onnx()  # before anything is written
    images = _verify_image_files(verify_images)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output must be a folder, but {output_dir} is a file")
    output_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    wrapped = _pm_wrapper_class()(model, settings.num_classes, settings.temperature)
    wrapped.eval()

    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=output_dir))
    try:
        produced, model_file, output_tensor = _save_program(wrapped, staging, settings)
        record = _export_record(settings, staging, model_file, output_tensor)
        produced += _write_side_files(staging, record, onnx)
        _write_record(staging, record)
        if verify and settings.num_classes <= 2:
            x = _verification_batch(int(settings.in_channels), int(settings.image_size), settings.preprocess, images)
            record["verification"] = _verify(wrapped, staging, x, images)
            if onnx:
                record["onnx"]["verification"] = _verify_onnx(staging, x, record["verification"])
            _write_record(staging, record)
        _move_in_place(staging, output_dir, produced)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _save_program(wrapped, staging, settings):
    """``paddle.jit.save`` into ``staging``: the names of the files written, of the program file and of its output.

    The program's output is named ``pm_probability`` where the Paddle version allows it.
    """
    import paddle

    size, channels = int(settings.image_size), int(settings.in_channels)
    spec = paddle.static.InputSpec([None, channels, size, size], "float32", INPUT_NAME)
    paddle.jit.save(wrapped, os.fspath(staging / MODEL_PREFIX), input_spec=[spec])
    produced = sorted(p.name for p in staging.iterdir())
    model_file = next((n for n in MODEL_FILE_NAMES["model"] if n in produced), None)
    if model_file is None or MODEL_FILE_NAMES["params"][0] not in produced:
        raise UnsupportedVersionError(f"paddle.jit.save wrote unexpected files: {produced}")
    wanted = OUTPUT_NAME if settings.num_classes <= 2 else "class_probabilities"
    return produced, model_file, compat.name_exported_output(staging / model_file, wanted)


def _write_side_files(staging, record, onnx):
    """``inference.yml`` and, with ``onnx``, ``model.onnx``, recorded with their digests: their names."""
    files = record["files"]
    written = []
    if onnx:
        facts = convert_to_onnx(staging / files["model"], staging / files["params"], staging / ONNX_FILE,
                                output_name=record["output"])
        files["onnx"] = ONNX_FILE
        files["sha256"][ONNX_FILE] = sha256_file(staging / ONNX_FILE)
        record["onnx"] = {"file": ONNX_FILE, **facts}
        written.append(ONNX_FILE)
    (staging / DEPLOY_FILE).write_text(deploy_yaml(record), encoding="utf-8")
    files["deploy"] = DEPLOY_FILE
    files["sha256"][DEPLOY_FILE] = sha256_file(staging / DEPLOY_FILE)
    return written + [DEPLOY_FILE]


def _export_record(settings, staging, model_file, output_tensor):
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
        # The output tensor's name in the program (Paddle 2.x keeps its own: compat.name_exported_output).
        "output_tensor": output_tensor,
        "input": {"name": INPUT_NAME, "shape": [None, channels, size, size], "dtype": "float32", "layout": "NCHW"},
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


def _describe_inputs(x, images):
    names = ", ".join(os.path.basename(os.fspath(p)) for p in images)
    real = f", {len(images)} image file{'s' if len(images) > 1 else ''} ({names})" if images else ""
    return f"{len(x)} images: synthetic fundus photographs (N, P){real} and uniform noise, preprocessed"


def _verify(wrapped, staging, x, images):
    """The check of the staged export: its probabilities next to the dynamic-mode network's."""
    import paddle

    with paddle.no_grad():
        reference = wrapped(paddle.to_tensor(x)).numpy().reshape(len(x), -1)[:, 0]
    exported = ExportedPredictor(staging, onednn=True).pm_probability(x)
    return {
        "input": _describe_inputs(x, images),
        "pm_probability": [float(v) for v in reference],
        "backend": "Paddle Inference, oneDNN fp32",
        "max_abs_diff": float(np.max(np.abs(exported - reference))),
        "tolerance": EXPORT_TOLERANCE,
    }


def _verify_onnx(staging, x, paddle_check):
    """The check of the staged ONNX model (onnxruntime, CPU) against the dynamic-mode probabilities."""
    reference = np.asarray(paddle_check["pm_probability"], dtype=np.float64)
    onnx = OnnxPredictor(staging, threads=1).pm_probability(x)
    return {
        "input": paddle_check["input"],
        "backend": f"onnxruntime {onnxruntime_version()}, CPU fp32",
        "max_abs_diff": float(np.max(np.abs(onnx - reference))),
        "tolerance": EXPORT_TOLERANCE,
    }


def _move_in_place(staging, output_dir, produced):
    """Move the staged files in place: the old record first out of the way, the model files, the new record last."""
    old_record = output_dir / PREPROCESS_FILE
    if old_record.exists():
        old_record.unlink()
    for name in produced:
        os.replace(staging / name, output_dir / name)
    for stale in (set(MODEL_FILE_NAMES["model"]) | {ONNX_FILE}) - set(produced):
        if (output_dir / stale).exists():
            (output_dir / stale).unlink()
    os.replace(staging / PREPROCESS_FILE, output_dir / PREPROCESS_FILE)


def export_checkpoint(weights, output_dir, arch=None, num_classes=None, image_size=None, preprocess=None,
                      threshold=None, verify=True, fmt="paddle", verify_images=None):
    """Rebuild a trained network from ``weights`` (and its ``config.yaml``) and export it.

    Args:
        weights: a ``.pdparams`` file (or prefix, or run folder).
        output_dir: the folder to write.
        arch, num_classes, image_size, preprocess, threshold: override the run's
            settings (see :func:`paddle_palm.engine.model_settings.resolve_model_settings`).
        verify: check the exported model against the checkpoint (see :func:`export_model`).
        fmt: ``"paddle"``, ``"onnx"`` or ``"both"`` (see :func:`export_model`).
        verify_images: real image files or folders for the check (see :func:`export_model`).

    Returns:
        dict: the ``preprocess.json`` record.

    Raises:
        CheckpointError: missing, damaged or other-architecture weights.
        ConfigError: bad settings.
    """
    settings = resolve_model_settings(weights, arch, num_classes, image_size, preprocess, threshold)
    model = load_trained_model(settings, fast=False)  # traced: Paddle's own layers
    return export_model(model, output_dir, settings, verify=verify, fmt=fmt, verify_images=verify_images)
