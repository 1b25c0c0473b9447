"""Prediction: PM probabilities for image files, from a checkpoint or an exported model.

Two predictors give the same numbers through the same preprocessing
(:func:`paddle_palm.data.transforms.preprocess_image`):

* :class:`CheckpointPredictor` rebuilds the trained network from a
  ``.pdparams`` file and the run's ``config.yaml`` beside it (architecture,
  number of outputs, image size, preprocessing, classes, threshold; SPEC 5),
  and runs it in dynamic mode;
* :class:`ExportedPredictor` loads what ``tools/export.py`` wrote
  (:mod:`paddle_palm.engine.export`) into a Paddle Inference predictor with
  oneDNN on CPU (issue 8: ResNet-50 at 224x224 in about 25 ms per image on two
  cores) and reads the recorded preprocessing from ``preprocess.json``.

:func:`predict_images` turns a list of files and folders into one record per
image: ``file``, ``pm_probability``, ``label``, ``class_name`` (the columns of
the CSV of SPEC 5), plus the confidence of the predicted class and the true
label when it is known.

Class names are written ``"<Chinese> (<English>)"``: ``"病理性近视 (pathologic
myopia)"`` for label 1 and ``"非病理性近视 (non-pathologic myopia)"`` for label 0
(seed 004's names with their English meaning).

Input policy (files and folders):

* a folder contributes the image files directly inside it, recognised by their
  extension (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``; sorted by name; hidden
  files left out; sub-folders not searched); other files (notes, sheets) are
  ignored;
* every image, named directly or found in a folder, must be readable
  (:func:`paddle_palm.data.images.read_image`: JPEG, PNG or BMP, complete);
  otherwise prediction stops with an error naming the file and nothing is
  written.  A screening run must not silently leave a patient's photograph out.
  With ``skip_bad=True`` (``--skip-bad-images``) unreadable files are skipped
  instead, each with a warning naming it.
"""

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from paddle_palm import compat
from paddle_palm.errors import ConfigError, DataError, ImageError, LabelError, MissingFileError

#: Name of the preprocessing record written beside an exported model.
PREPROCESS_FILE = "preprocess.json"
#: File prefix of an exported model (``inference.json`` + ``inference.pdiparams``).
MODEL_PREFIX = "inference"

#: A PALM training file name such as ``P0001.jpg``: its first letter is its label (SPEC 1.2).
_PALM_TRAIN_NAME = re.compile(r"^[HNP]\d{4}\.[A-Za-z]+$")

__all__ = [
    "CheckpointPredictor",
    "ExportedPredictor",
    "ModelSettings",
    "class_name",
    "collect_images",
    "format_predictions_table",
    "load_predictor",
    "load_trained_model",
    "measure_latency",
    "predict_images",
    "resolve_model_settings",
    "true_labels_for",
    "write_predictions_csv",
]


# ----------------------------------------------------------------------------- settings of a trained model


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
        threshold: PM decision threshold (``pm_probability >= threshold``).
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
    classes: list = dataclasses.field(default_factory=list)
    classes_zh: list = dataclasses.field(default_factory=list)
    weights: str = None
    config_file: str = None

    def as_dict(self):
        """The settings as a plain dict."""
        return dataclasses.asdict(self)


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
        ConfigError: no architecture known, or an inconsistent or out-of-range value.
    """
    from paddle_palm.engine.config import PALM_CLASSES, PALM_CLASSES_ZH, find_run_config, load_run_config, recipe
    from paddle_palm.models import model_spec

    config, config_file = {}, None
    if weights is not None:
        weights = os.fspath(weights)
        config_file = find_run_config(weights)
        if config_file is not None:
            config = load_run_config(config_file)
    arch = arch or config.get("arch")
    if not arch:
        raise ConfigError(
            "no architecture given: use --arch NAME (there is no config.yaml beside the weights to read it from)"
        )
    spec = model_spec(arch)  # unknown name: ConfigError listing the known ones
    if config.get("arch") not in (None, arch):
        # Another architecture than the run's: its recipe, not the run's settings, gives the defaults.
        config = {}
        config_file = None
    base = recipe(arch)
    num_classes = int(num_classes or config.get("num_classes") or spec.num_classes)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    loss = "bce" if num_classes == 1 else "ce"
    image_size = int(image_size or config.get("image_size") or base.get("image_size") or spec.input_size)
    if image_size < spec.min_input_size:
        raise ConfigError(f"image size {image_size} is too small for {arch}: it needs at least {spec.min_input_size}")
    if getattr(spec, "fixed_input_size", False) and image_size != spec.input_size:
        raise ConfigError(f"{arch} takes only {spec.input_size}x{spec.input_size} images, got image size {image_size}")
    preprocess = str(preprocess or config.get("preprocess") or base.get("preprocess") or "A").upper()
    if preprocess not in ("A", "B"):
        raise ConfigError(f"preprocess must be A or B, got {preprocess!r}")
    if threshold is None:
        threshold = config.get("threshold", 0.5)
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    classes = list(config.get("classes") or PALM_CLASSES)
    classes_zh = list(config.get("classes_zh") or (PALM_CLASSES_ZH if len(classes) == 2 else []))
    return ModelSettings(
        arch=arch, num_classes=num_classes, loss=loss, image_size=image_size, preprocess=preprocess,
        in_channels=spec.in_channels, threshold=threshold, classes=classes, classes_zh=classes_zh,
        weights=weights, config_file=config_file,
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
        from paddle_palm import runtime

        runtime.ExecutionPath(fast=True).apply(model)
    return model


# ----------------------------------------------------------------------------- class names


def class_name(label, classes=None, classes_zh=None):
    """The display name of a PALM class: ``"病理性近视 (pathologic myopia)"`` for 1.

    Args:
        label: 0 or 1.
        classes: English names (default: the PALM names).
        classes_zh: Chinese names (default: seed 004's 非病理性近视 / 病理性近视).

    Returns:
        str: ``"<Chinese> (<English>)"``, or just the English name when there is no Chinese one.
    """
    from paddle_palm.metrics import CLASS_NAMES_EN, CLASS_NAMES_ZH

    classes = list(classes or CLASS_NAMES_EN)
    classes_zh = list(CLASS_NAMES_ZH if classes_zh is None else classes_zh)
    en = classes[label] if label < len(classes) else f"class {label}"
    zh = classes_zh[label] if label < len(classes_zh) else None
    return f"{zh} ({en})" if zh else en


# ----------------------------------------------------------------------------- predictors


class _Predictor:
    """Shared part of the two predictors: settings and the preprocessing of one file."""

    image_size = 224
    preprocess = "A"
    threshold = 0.5
    classes = None
    classes_zh = None
    description = ""

    def load_image(self, path):
        """Read and preprocess one image file -> ``float32`` ``[3, S, S]`` (and the BGR image)."""
        from paddle_palm.data.images import read_image
        from paddle_palm.data.transforms import preprocess_image

        image = read_image(path)
        return preprocess_image(image, self.image_size, self.preprocess), image

    def pm_probability(self, batch):
        """PM probability ``[N]`` (float64) of a preprocessed batch ``float32`` ``[N, C, S, S]``."""
        raise NotImplementedError


class CheckpointPredictor(_Predictor):
    """Predict with a trained network in dynamic mode (the reference numbers).

    Args:
        weights: a ``.pdparams`` file (or prefix, or run folder).
        arch, num_classes, image_size, preprocess, threshold: override the
            values of the run's ``config.yaml`` (see :func:`resolve_model_settings`).
    """

    def __init__(self, weights, arch=None, num_classes=None, image_size=None, preprocess=None, threshold=None):
        self.settings = resolve_model_settings(weights, arch, num_classes, image_size, preprocess, threshold)
        self.model = load_trained_model(self.settings)
        s = self.settings
        if s.num_classes > 2:
            raise ConfigError(
                f"{s.arch} with {s.num_classes} outputs is not a PM classifier (1 logit or 2 classes expected)"
            )
        self.image_size, self.preprocess, self.threshold = s.image_size, s.preprocess, s.threshold
        self.classes, self.classes_zh = s.classes, s.classes_zh
        self.description = f"{s.arch} checkpoint {s.weights}"

    def pm_probability(self, batch):
        import paddle

        from paddle_palm.engine.evaluate import pm_probability_from_logits

        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))
        return pm_probability_from_logits(logits.numpy(), self.settings.loss)


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ExportedPredictor(_Predictor):
    """Predict with an exported model through Paddle Inference (oneDNN on CPU).

    Args:
        model_dir: the folder written by ``tools/export.py`` (``inference.json`` or
            ``inference.pdmodel``, ``inference.pdiparams``, ``preprocess.json``).
        threads: CPU math threads (default: every core this process may use).
        onednn: use oneDNN kernels on CPU (the fast path; False for plain CPU kernels).
        precision: ``"fp32"`` (the same numbers as the checkpoint) or ``"bf16"``
            (oneDNN bfloat16 on CPUs that have it: faster, probabilities within about 1e-2).
        threshold: override the threshold recorded at export.
        device: ``"cpu"`` (the default), or ``"gpu"`` / ``"gpu:N"`` for Paddle Inference on CUDA
            (:func:`paddle_palm.engine.device.select_device` resolves ``auto``); ``threads``,
            ``onednn`` and ``precision`` are CPU settings and do not apply there.
    """

    def __init__(self, model_dir, threads=None, onednn=True, precision="fp32", threshold=None, device="cpu"):
        from paddle import inference

        from paddle_palm.engine.export import check_export_record

        model_dir = Path(model_dir)
        self.record = read_export_record(model_dir)
        # Schema, files inside the folder, digests of export time: checked before Paddle Inference parses them.
        files = check_export_record(model_dir, self.record, model_dir / PREPROCESS_FILE)
        model_file, params_file = files["model"], files["params"]
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got {precision!r}")
        from paddle_palm.runtime import MAX_THREADS

        threads = int(threads or _default_threads())
        if not 1 <= threads <= MAX_THREADS:
            raise ConfigError(f"threads must be from 1 to {MAX_THREADS}, got {threads}")
        config = inference.Config(os.fspath(model_file), os.fspath(params_file))
        on_gpu = str(device).split(":")[0] == "gpu"
        if on_gpu:  # cuDNN kernels; the CPU settings below do not apply
            if precision != "fp32":
                raise ConfigError("--precision bf16 is a CPU (oneDNN) setting; on a GPU the model runs in fp32")
            config.enable_use_gpu(256, int(str(device).partition(":")[2] or 0))  # initial memory pool (MB), card
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
            if precision == "bf16" and not onednn:
                raise ConfigError("precision bf16 needs oneDNN")
            compat.set_inference_onednn(config, onednn, bfloat16=precision == "bf16")
        config.switch_ir_optim(True)
        config.disable_glog_info()
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as exc:  # Paddle raises several types for a damaged model file
            raise DataError(f"{model_dir} does not hold a loadable Paddle Inference model: {_short(exc)}") from None
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output_name = self._predictor.get_output_names()[0]
        pre = self.record["preprocess"]
        self.image_size, self.preprocess = int(pre["image_size"]), pre["method"]
        self.threshold = float(self.record.get("threshold", 0.5) if threshold is None else threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        self.classes = self.record.get("classes")
        self.classes_zh = self.record.get("classes_zh")
        self.threads, self.onednn, self.precision = threads, bool(onednn), precision
        self.device = str(device)
        backend = (f"CUDA {self.device}" if on_gpu else
                   f"{'oneDNN ' + precision if onednn else 'plain CPU'}, {threads} threads")
        self.description = f"{self.record.get('arch', 'model')} exported to {model_dir} (Paddle Inference, {backend})"

    def pm_probability(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self._predictor.run()
        out = self._predictor.get_output_handle(self._output_name).copy_to_cpu()
        return np.asarray(out, dtype=np.float64).reshape(batch.shape[0], -1)[:, 0]


def _short(exc):
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def read_export_record(model_dir):
    """The ``preprocess.json`` of an exported model folder, checked.

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
        if pre["method"] not in ("A", "B"):
            raise ValueError(f"unknown method {pre['method']!r}")
        record["files"]["model"], record["files"]["params"]  # noqa: B018  presence check
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a valid export record ({_short(exc)})") from None
    return record


def load_predictor(weights=None, arch=None, inference_model=None, **kwargs):
    """A :class:`CheckpointPredictor` (``weights``) or an :class:`ExportedPredictor` (``inference_model``).

    Keyword arguments go to the chosen class (``threshold``, ``image_size``, ``threads``, ...).
    """
    if (weights is None) == (inference_model is None):
        raise ConfigError("give either weights (with an architecture) or an exported model folder, not both")
    if inference_model is not None:
        allowed = {k: v for k, v in kwargs.items() if k in ("threads", "onednn", "precision", "threshold", "device")}
        return ExportedPredictor(inference_model, **allowed)
    allowed = {k: v for k, v in kwargs.items() if k in ("num_classes", "image_size", "preprocess", "threshold")}
    return CheckpointPredictor(weights, arch=arch, **allowed)


# ----------------------------------------------------------------------------- files in, records out


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """One image to predict: its path and whether it was named explicitly (not found in a folder)."""

    path: str
    explicit: bool


def collect_images(paths):
    """Expand files and folders into the image files to predict (see the module's input policy).

    Args:
        paths: file and folder paths.

    Returns:
        list of ImageInput, in the order given (folders sorted by name), without duplicates.

    Raises:
        MissingFileError: a path does not exist.
        DataError: no path given, or no image at all in what was given.
    """
    from paddle_palm.data.layout import list_images

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise DataError("no image given: name image files or folders")
    items, seen = [], set()
    for p in paths:
        if os.path.isdir(p):
            found = [ImageInput(os.path.join(p, f.name), False) for f in list_images(p)]
        elif os.path.exists(p):
            found = [ImageInput(p, True)]
        else:
            raise MissingFileError(f"image file or folder not found: {p}")
        for item in found:
            key = os.path.realpath(item.path)
            if key not in seen:
                seen.add(key)
                items.append(item)
    if not items:
        raise DataError(f"no image files (.jpg, .jpeg, .png, .bmp) found in {', '.join(paths)}")
    return items


def true_labels_for(paths, labels_file=None):
    """The known true label of each image, or None.

    A label sheet (``--labels``: csv or xlsx with ``imgName``, ``Label``) gives
    the label of the images it names; otherwise a PALM training file name
    (``H0001.jpg``, ``N0001.jpg``, ``P0001.jpg``) gives it by its first letter
    (SPEC 1.2).  Any other image has no known label.

    Returns:
        list of int or None, one per path.
    """
    from paddle_palm.data.labels import label_from_filename, read_labels

    sheet = {}
    if labels_file is not None:
        table = read_labels(labels_file)
        sheet = dict(zip(table["imgName"].astype(str), table["Label"].astype(int)))
    out = []
    for p in paths:
        name = os.path.basename(os.fspath(p))
        if name in sheet:
            out.append(int(sheet[name]))
        elif _PALM_TRAIN_NAME.match(name):
            try:
                out.append(int(label_from_filename(name)))
            except LabelError:
                out.append(None)
        else:
            out.append(None)
    return out


def predict_images(predictor, paths, batch_size=16, labels_file=None, keep_images=0, skip_bad=False, warn=None):
    """Predict every image of ``paths`` (files and folders).

    Args:
        predictor: a :class:`CheckpointPredictor` or :class:`ExportedPredictor`.
        paths: image files and folders (see the module's input policy).
        batch_size: images per forward pass.
        labels_file: optional label sheet giving true labels (see :func:`true_labels_for`).
        keep_images: for the first ``keep_images`` images, also return the decoded
            BGR image (reduced to at most 256 pixels a side) under ``image``, for a grid.
        skip_bad: skip unreadable images (with a warning) instead of stopping.
        warn: called with a message for each skipped file (default: ignore).

    Returns:
        list of dicts, one per image in order: ``file``, ``pm_probability``,
        ``label`` (1 when ``pm_probability >= threshold``), ``class_name``,
        ``confidence`` (the probability of the predicted class, seed 004),
        ``true_label`` (int or None) and ``seconds`` (model time per image).

    Raises:
        ImageError: an image is not readable (unless ``skip_bad``); the message names it.
        DataError: nothing could be read.
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    items = collect_images(paths)
    records, batch, batch_records = [], [], []
    model_seconds = 0.0

    def flush():
        nonlocal model_seconds
        if not batch:
            return
        start = time.perf_counter()
        probs = predictor.pm_probability(np.stack(batch))
        elapsed = time.perf_counter() - start
        model_seconds += elapsed
        for rec, p in zip(batch_records, probs):
            p = float(p)
            label = int(p >= predictor.threshold)
            rec.update(
                pm_probability=p,
                label=label,
                class_name=class_name(label, predictor.classes, predictor.classes_zh),
                confidence=p if label == 1 else 1.0 - p,
                seconds=elapsed / len(batch),
            )
            records.append(rec)
        batch.clear()
        batch_records.clear()

    for item in items:
        try:
            tensor, image = predictor.load_image(item.path)
        except (ImageError, MissingFileError) as exc:
            if not skip_bad:
                raise
            if warn is not None:
                warn(f"skipped {item.path}: {exc}")
            continue
        batch.append(tensor)
        rec = {"file": item.path}
        if len(records) + len(batch_records) < int(keep_images):
            rec["image"] = _thumbnail(image)
        batch_records.append(rec)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not records:
        raise DataError(f"none of the images in {', '.join(map(str, paths))} could be read")
    truths = true_labels_for([r["file"] for r in records], labels_file)
    for rec, t in zip(records, truths):
        rec["true_label"] = t
    return records


def _thumbnail(image, side=256):
    import cv2

    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


CSV_COLUMNS = ("file", "pm_probability", "label", "class_name")


def write_predictions_csv(records, path):
    """Write the SPEC 5 CSV (``file,pm_probability,label,class_name``, UTF-8) atomically.

    ``pm_probability`` is written with 6 decimals.  Returns the path.
    """
    import csv

    from paddle_palm.fileio import atomic_path, make_parent_dirs, spreadsheet_safe

    path = Path(path)
    make_parent_dirs(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for r in records:
                writer.writerow([spreadsheet_safe(r["file"]), f"{r['pm_probability']:.6f}", r["label"],
                                 spreadsheet_safe(r["class_name"])])
    return path


def _display_width(text):
    return sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)


def _pad(text, width):
    return text + " " * max(0, width - _display_width(text))


def format_predictions_table(records):
    """A readable table of prediction records (Chinese characters count two columns wide)."""
    show_truth = any(r.get("true_label") is not None for r in records)
    header = ["file", "pm_probability", "label", "class_name", "confidence"] + (["true"] if show_truth else [])
    rows = []
    for r in records:
        row = [r["file"], f"{r['pm_probability']:.4f}", str(r["label"]), r["class_name"], f"{r['confidence']:.4f}"]
        if show_truth:
            t = r.get("true_label")
            row.append("?" if t is None else (f"{t} ok" if t == r["label"] else f"{t} WRONG"))
        rows.append(row)
    widths = [max(_display_width(x) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(_pad(x, w) for x, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(_pad(x, w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def measure_latency(predictor, runs=20, warmup=5, batch_size=1, seed=0):
    """Time the model alone on random input of the predictor's size (no file reading).

    Args:
        predictor: a predictor.
        runs: timed forward passes.
        warmup: untimed passes first (oneDNN builds its kernels on the first runs).
        batch_size: images per pass.

    Returns:
        dict: ``median_ms``, ``min_ms``, ``mean_ms`` per pass and ``per_image_ms`` (median / batch size).
    """
    rng = np.random.default_rng(seed)
    channels = getattr(getattr(predictor, "settings", None), "in_channels", 3)
    x = rng.uniform(-1, 1, (batch_size, channels, predictor.image_size, predictor.image_size)).astype(np.float32)
    for _ in range(warmup):
        predictor.pm_probability(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.pm_probability(x)
        times.append((time.perf_counter() - start) * 1000.0)
    median = float(np.median(times))
    return {
        "median_ms": median,
        "min_ms": float(np.min(times)),
        "mean_ms": float(np.mean(times)),
        "per_image_ms": median / batch_size,
        "runs": runs,
        "batch_size": batch_size,
    }


def accuracy_of_known(records):
    """Accuracy on the records whose true label is known: ``(n_known, accuracy or nan)``."""
    known = [r for r in records if r.get("true_label") is not None]
    if not known:
        return 0, math.nan
    return len(known), sum(r["label"] == r["true_label"] for r in known) / len(known)
