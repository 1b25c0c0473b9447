"""The prediction loop: image files and folders in, one record per image out.

:func:`predict_images` turns a list of files and folders into one record per
image: ``file``, ``pm_probability``, ``label``, ``class_name`` (the columns of
the CSV of SPEC 5, :func:`paddle_palm.engine.reports.write_predictions_csv`), plus
the confidence of the predicted class and the true label when it is known.  The
predictor is either one of :mod:`paddle_palm.engine.predictors`.

Class names are written ``"<Chinese> (<English>)"``: ``"病理性近视 (pathologic
myopia)"`` for label 1 and ``"非病理性近视 (non-pathologic myopia)"`` for label 0
(seed 004's names with their English meaning; :func:`paddle_palm.metrics.class_name`).

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
import math
import os
import re
import time

import cv2
import numpy as np

from paddle_palm.data.labels import label_from_filename, read_labels
from paddle_palm.data.layout import list_images
from paddle_palm.errors import ConfigError, DataError, ImageError, LabelError, MissingFileError
from paddle_palm.metrics import class_name
from paddle_palm.operating_point import decide, parse_refer_band

#: A PALM training file name such as ``P0001.jpg``: its first letter is its label (SPEC 1.2).
_PALM_TRAIN_NAME = re.compile(r"^[HNP]\d{4}\.[A-Za-z]+$")

__all__ = [
    "ImageInput",
    "accuracy_of_known",
    "collect_images",
    "measure_latency",
    "predict_images",
    "true_labels_for",
]


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


class _Batches:
    """Preprocessed images waiting for one forward pass, and the records they become."""

    def __init__(self, predictor, refer_band=0.0):
        self.predictor = predictor
        self.refer_band = refer_band
        self.tensors, self.pending, self.records = [], [], []

    def add(self, tensor, record):
        self.tensors.append(tensor)
        self.pending.append(record)

    def flush(self):
        """Run the waiting images through the predictor and complete their records."""
        if not self.tensors:
            return
        predictor = self.predictor
        start = time.perf_counter()
        probs = predictor.pm_probability(np.stack(self.tensors))
        elapsed = time.perf_counter() - start
        for rec, p in zip(self.pending, probs):
            p = float(p)
            label = int(p >= predictor.threshold)
            rec.update(
                pm_probability=p,
                label=label,
                class_name=class_name(label, predictor.classes, predictor.classes_zh),
                confidence=p if label == 1 else 1.0 - p,
                seconds=elapsed / len(self.tensors),
            )
            if self.refer_band:
                refer = decide([p], predictor.threshold, self.refer_band)[0] == -1
                rec["decision"] = "refer" if refer else ("PM" if label else "not PM")
            self.records.append(rec)
        self.tensors.clear()
        self.pending.clear()


def predict_images(predictor, paths, batch_size=16, labels_file=None, keep_images=0, skip_bad=False, warn=None,
                   refer_band=0.0):
    """Predict every image of ``paths`` (files and folders).

    Args:
        predictor: a :class:`~paddle_palm.engine.predictors.CheckpointPredictor` or
            :class:`~paddle_palm.engine.predictors.ExportedPredictor`.
        paths: image files and folders (see the module's input policy).
        batch_size: images per forward pass.
        labels_file: optional label sheet giving true labels (see :func:`true_labels_for`).
        keep_images: for the first ``keep_images`` images, also return the decoded
            BGR image (reduced to at most 256 pixels a side) under ``image``, for a grid.
        skip_bad: skip unreadable images (with a warning) instead of stopping.
        warn: called with a message for each skipped file (default: ignore).
        refer_band: with a band W > 0, each record also gets ``decision``: ``"refer"`` (to a
            specialist) when the probability lies within W of the threshold, else ``"PM"`` / ``"not PM"``.

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
    batches = _Batches(predictor, parse_refer_band(refer_band or 0.0))
    for item in items:
        try:
            tensor, image = predictor.load_image(item.path)
        except (ImageError, MissingFileError) as exc:
            if not skip_bad:
                raise
            if warn is not None:
                warn(f"skipped {item.path}: {exc}")
            continue
        rec = {"file": item.path}
        if len(batches.records) + len(batches.pending) < int(keep_images):
            rec["image"] = _thumbnail(image)
        batches.add(tensor, rec)
        if len(batches.tensors) >= batch_size:
            batches.flush()
    batches.flush()
    records = batches.records
    if not records:
        raise DataError(f"none of the images in {', '.join(map(str, paths))} could be read")
    truths = true_labels_for([r["file"] for r in records], labels_file)
    for rec, t in zip(records, truths):
        rec["true_label"] = t
    return records


def _thumbnail(image, side=256):
    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


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
