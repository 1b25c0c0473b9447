"""The exported model's folder: its file names, its ``preprocess.json`` record, and the checks before loading.

``tools/export.py`` (:mod:`paddle_palm.engine.export`) writes into one folder the
program (``inference.json``, or ``inference.pdmodel`` with Paddle 2), the weights
(``inference.pdiparams``) and ``preprocess.json``: how to turn an image into the
model's input (:func:`preprocess_record`), the architecture, classes, threshold
and the SHA-256 digests of the model files.  Everyone who loads such a folder
(:class:`paddle_palm.engine.predictors.ExportedPredictor`, the app) calls
:func:`check_export_folder` first: a damaged or foreign model file would otherwise
reach Paddle Inference's C++ parser, which may crash the process.

Nothing here imports Paddle.
"""

import json
import os
import textwrap
from pathlib import Path

from paddle_palm.engine.checkpoint import sha256_file
from paddle_palm.errors import ConfigError, DataError, MissingFileError, short_message

#: Name of the preprocessing record written beside an exported model.
PREPROCESS_FILE = "preprocess.json"
#: File prefix of an exported model (``inference.json`` + ``inference.pdiparams``).
MODEL_PREFIX = "inference"
#: Version of the ``preprocess.json`` layout (2: with ``files.sha256``, the digests of the model files).
EXPORT_FORMAT = 2
#: The only file names an export record may name (written by ``paddle.jit.save``).
MODEL_FILE_NAMES = {"model": (MODEL_PREFIX + ".json", MODEL_PREFIX + ".pdmodel"), "params": (MODEL_PREFIX + ".pdiparams",)}
#: The ONNX model written with ``tools/export.py --format onnx`` (or ``both``).
ONNX_FILE = "model.onnx"
#: The deploy description in the form PaddleClas's deploy scripts read.
DEPLOY_FILE = "inference.yml"
#: Names of the exported model's input and (for a PM classifier) output tensors.
INPUT_NAME, OUTPUT_NAME = "image", "pm_probability"

__all__ = [
    "DEPLOY_FILE",
    "EXPORT_FORMAT",
    "INPUT_NAME",
    "MODEL_FILE_NAMES",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "MODEL_PREFIX",
    "PREPROCESS_FILE",
    "check_export_folder",
    "check_export_record",
    "check_onnx_export",
    "deploy_config",
    "deploy_yaml",
    "preprocess_record",
    "read_export_record",
]

#: What ``preprocess.json`` says about each preprocessing method (:mod:`paddle_palm.data.transforms`).
_METHODS = {
    "A": {
        "spec": "preprocessing A: the course's SENet and ResNet readers (BGR, stretched to a square)",
        "channel_order": "BGR",
        "resize": "cv2.resize to {size}x{size}, bilinear (aspect ratio not kept)",
        "formula": "x = (pixel / 255 - 0.5) / 0.5, i.e. pixel / 255 * 2 - 1, in [-1, 1]",
    },
    "B": {
        "spec": "preprocessing B: the course's SqueezeNet transforms (RGB, fitted into a black square)",
        "channel_order": "RGB",
        "resize": "padding_black: longer side scaled to {size}, aspect ratio kept, centred on black",
        "formula": "x = (pixel / 255 - 0.5) / 0.5, in [-1, 1]",
    },
}


#: What ``preprocess.json`` says about each enhancement of the resized image.
_ENHANCEMENTS = {
    "clahe": "OpenCV CLAHE (clipLimit 2, tileGridSize 8x8) on the L channel of CIE Lab, after the resize",
    "graham": "4 * (image - GaussianBlur(image, sigma = size / 30)) + 128 after the resize; pixels whose "
              "brightest channel is at most 12 (eroded by 5x5) set to 128",
}


def _method_parts(method):
    """``(pipeline, enhancement or None)`` of a preprocessing name written as export writes it (``"B+clahe"``).

    Raises:
        ValueError: an unknown name, or one not in that form (``"b+CLAHE"``).
    """
    from paddle_palm.data.transforms import base_method, check_method, enhancement_of  # OpenCV: only when needed

    try:
        if check_method(method) == method:
            return base_method(method), enhancement_of(method)
    except ConfigError:
        pass
    raise ValueError(f"unknown method {method!r}")


def preprocess_record(method, image_size):
    """The description of preprocessing ``method`` at ``image_size`` stored in ``preprocess.json``."""
    from paddle_palm.data.transforms import check_method

    method = check_method(method)
    base, enhancement = _method_parts(method)
    text = _METHODS[base]
    record = {
        "method": method,
        "image_size": int(image_size),
        "spec": text["spec"],
        "channel_order": text["channel_order"],
        "resize": text["resize"].format(size=image_size),
        "scale": 1.0 / 255.0,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "formula": text["formula"],
        "layout": "NCHW",
    }
    if enhancement:
        record["enhance"] = _ENHANCEMENTS[enhancement]
    return record


def read_export_record(model_dir):
    """The ``preprocess.json`` of an exported model folder, parsed (its layout is checked by :func:`check_export_record`).

    Raises:
        MissingFileError: the folder or its ``preprocess.json`` does not exist.
        DataError: the record is not valid JSON or lacks a needed key.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingFileError(f"exported model folder not found: {model_dir} (write one with tools/export.py)")
    path = model_dir / PREPROCESS_FILE
    if not path.is_file():
        raise MissingFileError(f"{path} not found: {model_dir} is not a folder written by tools/export.py")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        pre = record["preprocess"]
        int(pre["image_size"])
        _method_parts(pre["method"])
        record["files"]["model"], record["files"]["params"]  # noqa: B018  presence check
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a valid export record ({short_message(exc)})") from None
    return record


def _plain_name(name):
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and not os.path.isabs(name)


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
    if not isinstance(pre, dict):
        return "preprocess.method"
    try:
        _method_parts(pre.get("method"))
    except ValueError:
        return "preprocess.method"
    if not (isinstance(pre.get("image_size"), int) and number(pre["image_size"], 16, 4096)):
        return "preprocess.image_size"
    checks = {
        "arch": lambda v: isinstance(v, str) and 0 < len(v) <= 100,
        "num_classes": lambda v: isinstance(v, int) and number(v, 1, 100000),
        "threshold": lambda v: number(v, 0.0, 1.0),
        "temperature": lambda v: number(v, 1e-6, 1e6),
        "classes": names,
        "classes_zh": names,
    }
    optional = ("temperature",)  # written since the operating point became part of the model
    for key, ok in checks.items():
        if key in optional and key not in record:
            continue
        if key not in record or not ok(record[key]):
            return key
    op = record.get("operating_point")
    if op is not None and not (isinstance(op, dict) and len(op) <= 40 and number(op.get("threshold"), 0.0, 1.0)):
        return "operating_point"
    files = record.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("sha256"), dict):
        return "files.sha256"
    for role, allowed in MODEL_FILE_NAMES.items():
        if files.get(role) not in allowed:
            return f"files.{role}"
        if not _is_digest(files["sha256"].get(files[role])):
            return f"files.sha256[{files[role]!r}]"
    if "onnx" in files and (files["onnx"] != ONNX_FILE or not _is_digest(files["sha256"].get(ONNX_FILE))):
        return "files.onnx"
    return None


def _is_digest(value):
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_export_record(model_dir, record, path):
    """Check an export record and the model files it names, before Paddle Inference reads them.

    The record must have the layout :func:`export_model` writes (types and ranges); the files it
    names must be plain files inside ``model_dir`` (no path, no link out of the folder) whose
    SHA-256 digests match the ones recorded at export time.

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
        value = record["files"].get(bad[len("files."):]) if bad in ("files.model", "files.params") else None
        if value is not None and not _plain_name(value):
            raise DataError(f"{path}: field {bad!r} = {value!r} is not a file name inside the export folder")
        hint = " (written by an older tools/export.py: export it again)" if bad == "format" else ""
        raise DataError(f"{path} is not a valid export record: field {bad!r} is not what tools/export.py "
                        f"(format {EXPORT_FORMAT}) writes{hint}")
    files = record["files"]
    return {role: _checked_file(model_dir, files[role], files["sha256"][files[role]], path) for role in ("model", "params")}


def check_export_folder(model_dir):
    """Read and check an exported model's folder before anything loads it.

    The record must have the layout and the model files the digests recorded at
    export (:func:`check_export_record`); a JSON program must parse as JSON.

    Returns:
        tuple: the ``preprocess.json`` record and ``{"model": Path, "params": Path}``.

    Raises:
        MissingFileError, DataError: the folder is not a usable export (named).
    """
    model_dir = Path(model_dir)
    record = read_export_record(model_dir)
    files = check_export_record(model_dir, record, model_dir / PREPROCESS_FILE)
    if files["model"].suffix == ".json":
        try:
            json.loads(files["model"].read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"{model_dir / record['files']['model']} is damaged: not the JSON program "
                            "tools/export.py writes") from None
    return record, files


def _checked_file(model_dir, name, digest, record_path):
    """``model_dir / name`` as a real path, after checking it is a plain file inside the folder with ``digest``."""
    target = Path(model_dir) / name
    if not target.is_file():
        raise MissingFileError(f"exported model file missing: {target} (re-run tools/export.py)")
    real = os.path.realpath(target)
    if os.path.dirname(real) != os.path.realpath(model_dir):
        raise DataError(f"{target} lies outside the export folder {model_dir} (a link to {real}); refusing it")
    if sha256_file(real) != digest:
        raise DataError(f"{target} is damaged or was replaced: its SHA-256 digest does not match {record_path}")
    return Path(real)


def check_onnx_export(model_dir):
    """Read an export folder's record and check its ONNX model before onnxruntime reads it.

    Returns:
        tuple: the ``preprocess.json`` record and the path of ``model.onnx``.

    Raises:
        MissingFileError, DataError: not an export, an export without ONNX model (named with the
            command that writes one), or a ``model.onnx`` whose digest does not match.
    """
    model_dir = Path(model_dir)
    record = read_export_record(model_dir)
    path = model_dir / PREPROCESS_FILE
    bad = _bad_record_field(record)
    if bad is not None:
        raise DataError(f"{path} is not a valid export record: field {bad!r} is not what tools/export.py "
                        f"(format {EXPORT_FORMAT}) writes")
    if record["files"].get("onnx") != ONNX_FILE:
        raise MissingFileError(f"{model_dir} holds no ONNX model: export it with tools/export.py --format onnx")
    return record, _checked_file(model_dir, ONNX_FILE, record["files"]["sha256"][ONNX_FILE], path)


#: PaddleClas's nearest operations for each preprocessing method, and what they do not say.
_DEPLOY_RESIZE = {
    "A": ("bilinear", "cv2", "Preprocessing A: cv2.resize to SxS (bilinear, aspect ratio not kept) on the BGR "
          "image as cv2.imread gives it; a PaddleClas deploy script that converts to RGB first must not (DecodeImage "
          "to_rgb: false)."),
    "B": ("bicubic", "pil", "Preprocessing B is not a plain resize: the longer side is scaled to S (bicubic, "
          "aspect ratio kept) and the image is centred on a black SxS square (padding_black). ResizeImage is "
          "PaddleClas's nearest operation and equals it only for square photographs; paddle_palm's predictors "
          "(and preprocess.json) do the padding."),
}


def deploy_config(record):
    """The ``inference.yml`` of an export record: what PaddleClas's deploy scripts read.

    ``Global`` names the model, ``PreProcess.transform_ops`` the preprocessing in PaddleClas's
    operation names (``DecodeImage``, ``ResizeImage``, ``NormalizeImage``, ``ToCHWImage``) and
    ``PostProcess`` PaddleClas's ``ThreshOutput`` with the model's threshold and class names.
    """
    pre = record["preprocess"]
    size, (method, _) = int(pre["image_size"]), _method_parts(pre["method"])
    interpolation, backend, _ = _DEPLOY_RESIZE[method]
    classes = list(record.get("classes") or ["0", "1"])
    return {
        "Global": {"model_name": record["arch"], "inference_model_dir": ".",
                   "input_name": record.get("input", {}).get("name", INPUT_NAME),
                   "output_name": record.get("output_tensor", OUTPUT_NAME)},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"to_rgb": pre["channel_order"] == "RGB", "channel_first": False}},
            {"ResizeImage": {"size": [size, size], "interpolation": interpolation, "backend": backend}},
            {"NormalizeImage": {"scale": float(pre["scale"]), "mean": list(pre["mean"]), "std": list(pre["std"]),
                                "order": "hwc", "channel_num": 3}},
            {"ToCHWImage": None},
        ]},
        "PostProcess": {"main_indicator": "ThreshOutput",
                        "ThreshOutput": {"threshold": float(record["threshold"]),
                                         "label_0": classes[0], "label_1": classes[1] if len(classes) > 1 else "1"}},
    }


def deploy_yaml(record):
    """The text of ``inference.yml`` (:func:`deploy_config` with comments saying where it is approximate)."""
    import yaml

    method, enhancement = _method_parts(record["preprocess"]["method"])
    output = record.get("output_tensor", OUTPUT_NAME)
    caveats = _DEPLOY_RESIZE[method][2]
    if enhancement:
        caveats += (f" The model also expects the '{enhancement}' enhancement after the resize ({_ENHANCEMENTS[enhancement]}), "
                    "which PaddleClas has no operation for: apply it before NormalizeImage.")
    lines = [
        "# Deploy description of this exported model, in the layout PaddleClas's deploy scripts read",
        "# (written by paddle_palm tools/export.py; preprocess.json beside it is the exact record).",
        *textwrap.wrap(caveats, 96, initial_indent="# ", subsequent_indent="# "),
        f"# Output {output!r}: the PM probability, float32 [N, 1] (sigmoid or softmax already inside the model).",
        "# PaddleClas's ThreshOutput reads column 1 of a two-class softmax [N, 2]; for this model read column 0:",
        "# PM (label_1) when pm_probability >= threshold, else label_0.",
    ]
    text = yaml.safe_dump(deploy_config(record), sort_keys=False, allow_unicode=True, default_flow_style=None)
    return "\n".join(lines) + "\n" + text
