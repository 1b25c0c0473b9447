"""What the screening app tells about its model, read from the training run's records.

A run folder written by ``tools/train.py`` (SPEC 5) records who the model is:

* ``config.yaml``: the architecture, image size, preprocessing, classes, threshold;
* ``best_model.pdstates``: the epoch of the best weights and the metric that chose them;
* ``latest.pdstates``: the time the last epoch ended (the training date);
* ``history.csv``: per epoch the validation AUC, accuracy, and the sensitivity and
  specificity at the run's threshold;
* ``train.log``: how many validation images there were.

``tools/eval.py`` adds, beside the weights, ``metrics.json`` and ``predictions.csv``
with the PM probability and the true label of every validation image; with those
(or with ``--valid-data``, scored when the app starts) the threshold slider shows
the sensitivity and specificity at any threshold.  A run that has neither still
has the one operating point of ``history.csv`` (its threshold), and the app says
what is missing.

Every file here comes from outside: each is parsed defensively (JSON, CSV, YAML
with ``safe_load``), a missing or damaged one only leaves its fields out.
"""

import csv
import dataclasses
import json
import math
import os
import re
import time

import numpy as np

__all__ = ["ModelCard", "ValidationScores", "read_model_card", "scores_from_eval_outputs", "score_validation_split"]

#: Largest record file read (history.csv of a long run is a few kB; predictions.csv of 400 images 40 kB).
_MAX_RECORD_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass
class ValidationScores:
    """PM probabilities and true labels of the model's validation images (for the threshold slider).

    Attributes:
        probabilities: float64 ``[N]``.
        labels: int ``[N]`` (1 = PM).
        source: where they come from (a sentence for the page).
    """

    probabilities: np.ndarray
    labels: np.ndarray
    source: str

    def operating_point(self, threshold):
        """Sensitivity and specificity when PM means ``pm_probability >= threshold``.

        Returns:
            dict: ``threshold``, ``sensitivity``, ``specificity`` (None when a class is
            absent), ``true_positives``, ``positives``, ``true_negatives``, ``negatives``, ``n``.
        """
        t = float(threshold)
        predicted = self.probabilities >= t
        pos, neg = self.labels == 1, self.labels == 0
        tp, tn = int(np.sum(predicted & pos)), int(np.sum(~predicted & neg))
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        return {
            "threshold": t,
            "sensitivity": tp / n_pos if n_pos else None,
            "specificity": tn / n_neg if n_neg else None,
            "true_positives": tp, "positives": n_pos, "true_negatives": tn, "negatives": n_neg,
            "n": int(self.labels.size), "source": self.source,
        }


@dataclasses.dataclass
class ModelCard:
    """The identity of the model a screening app serves.

    Attributes:
        arch: architecture name.
        source: what was loaded (checkpoint file or exported folder), as a sentence.
        run_dir: the training run's folder, or None when unknown.
        trained: the training date (``YYYY-MM-DD HH:MM:SS``) and where it was read, or None.
        best_epoch: epoch of the best weights, or None.
        epochs: epochs trained, or None.
        val_auc, val_accuracy, val_sensitivity, val_specificity: the run's validation
            figures for the best epoch (None when not recorded).
        val_images: number of validation images, or None.
        val_source: where the validation figures come from.
        threshold: the model's PM threshold.
        image_size, preprocess: the input the model expects.
        classes, classes_zh: English and Chinese class names (index 0, 1).
        missing: what the records did not say (sentences for the page).
    """

    arch: str
    source: str
    threshold: float
    image_size: int
    preprocess: str
    classes: list
    classes_zh: list
    run_dir: str = None
    trained: str = None
    trained_from: str = None
    best_epoch: int = None
    epochs: int = None
    val_auc: float = None
    val_accuracy: float = None
    val_sensitivity: float = None
    val_specificity: float = None
    val_images: int = None
    val_source: str = None
    missing: list = dataclasses.field(default_factory=list)

    def as_dict(self):
        """The card as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _read_small_text(path):
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > _MAX_RECORD_BYTES:
            return None
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _read_json(path):
    text = _read_small_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read_csv_rows(path):
    text = _read_small_text(path)
    if text is None:
        return []
    try:
        return list(csv.DictReader(text.splitlines()))
    except csv.Error:
        return []


def _number(value, kind=float):
    try:
        x = kind(value)
    except (TypeError, ValueError):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _timestamp(text):
    text = str(text or "").strip()
    return text if re.fullmatch(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?", text) else None


def read_model_card(run_dir, arch, source, threshold, image_size, preprocess, classes, classes_zh,
                    weights_file=None):
    """Read the identity of a model from its training run's folder.

    Args:
        run_dir: the run folder (may be None or lack any of its records).
        arch, source, threshold, image_size, preprocess, classes, classes_zh: what the loaded model says.
        weights_file: the weights file; its ``.pdstates`` gives the best epoch (``best_model.pdstates``).

    Returns:
        ModelCard
    """
    card = ModelCard(arch=arch, source=source, threshold=float(threshold), image_size=int(image_size),
                     preprocess=str(preprocess), classes=list(classes or []), classes_zh=list(classes_zh or []),
                     run_dir=os.fspath(run_dir) if run_dir else None)
    if not run_dir or not os.path.isdir(run_dir):
        card.missing.append("the training run's folder is unknown (give --run-dir): no training date, "
                            "no validation figures")
        return card
    run_dir = os.fspath(run_dir)

    # Best epoch: the weights' own state file, else best_model.pdstates.
    states = None
    if weights_file and str(weights_file).endswith(".pdparams"):
        states = _read_json(str(weights_file)[: -len(".pdparams")] + ".pdstates")
    states = states or _read_json(os.path.join(run_dir, "best_model.pdstates"))
    if states:
        best = states.get("best") if isinstance(states.get("best"), dict) else {}
        card.best_epoch = _number(best.get("epoch"), int) or _number(states.get("epoch"), int)

    latest = _read_json(os.path.join(run_dir, "latest.pdstates")) or {}
    card.epochs = _number(latest.get("epoch"), int)
    card.trained = _timestamp(latest.get("time"))
    if card.trained:
        card.trained_from = "end of the last epoch (latest.pdstates)"
    else:
        log = _read_small_text(os.path.join(run_dir, "train.log")) or ""
        match = re.match(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) ", log)
        if match:
            card.trained, card.trained_from = match.group(1), "start of the training (train.log)"
        elif weights_file and os.path.isfile(weights_file):
            card.trained = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(weights_file)))
            card.trained_from = "date of the weights file (the run records none)"
        else:
            card.missing.append("the training date (no latest.pdstates or train.log in the run folder)")

    log = _read_small_text(os.path.join(run_dir, "train.log")) or ""
    match = re.search(r"on (\d+) training / (\d+) validation images", log)
    if match:
        card.val_images = int(match.group(2))

    rows = _read_csv_rows(os.path.join(run_dir, "history.csv"))
    row = None
    if rows:
        if card.best_epoch is not None:
            row = next((r for r in rows if _number(r.get("epoch"), int) == card.best_epoch), None)
        if row is None:
            row = next((r for r in reversed(rows) if str(r.get("best", "")).strip() == "1"), rows[-1])
            card.best_epoch = card.best_epoch or _number(row.get("epoch"), int)
        card.epochs = card.epochs or _number(rows[-1].get("epoch"), int)
        card.val_auc = _number(row.get("val_auc"))
        card.val_accuracy = _number(row.get("val_acc"))
        card.val_sensitivity = _number(row.get("val_sensitivity"))
        card.val_specificity = _number(row.get("val_specificity"))
        card.val_source = f"history.csv, epoch {card.best_epoch}"
    else:
        card.missing.append("validation figures (no history.csv in the run folder)")
    return card


def scores_from_eval_outputs(folder, weights_file=None):
    """Per-image validation scores written by ``tools/eval.py`` beside the weights, or None.

    ``predictions.csv`` (``file,pm_probability,label,class_name,true_label``) is used
    when ``metrics.json`` beside it says it was computed from ``weights_file`` on the
    validation split.

    Returns:
        ValidationScores or None.
    """
    if not folder:
        return None
    metrics = _read_json(os.path.join(folder, "metrics.json"))
    if not metrics or metrics.get("split", "valid") != "valid":
        return None
    if weights_file and metrics.get("weights"):
        if os.path.basename(str(metrics["weights"])) != os.path.basename(os.fspath(weights_file)):
            return None
    rows = _read_csv_rows(os.path.join(folder, "predictions.csv"))
    probs, labels = [], []
    for r in rows:
        p, y = _number(r.get("pm_probability")), _number(r.get("true_label"), int)
        if p is None or y not in (0, 1) or not 0.0 <= p <= 1.0:
            return None
        probs.append(p)
        labels.append(y)
    if not probs:
        return None
    return ValidationScores(np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64),
                            f"{len(probs)} validation images scored by tools/eval.py (predictions.csv)")


def score_validation_split(predictor, data_dir, batch_size=16):
    """Score the validation split of a PALM dataset folder with ``predictor``.

    Args:
        predictor: an object with ``load_image(path)`` and ``pm_probability(batch)``
            (:mod:`paddle_palm.engine.predictors`).
        data_dir: a dataset folder (SPEC 5 layout: ``PALM-Validation400`` and its labels).
        batch_size: images per forward pass.

    Returns:
        ValidationScores
    """
    from paddle_palm.data.dataset import validation_samples

    samples = validation_samples(data_dir)
    paths = [p for p, _ in samples]
    labels = np.asarray([int(y) for _, y in samples], dtype=np.int64)
    probs = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack([predictor.load_image(p)[0] for p in paths[start:start + batch_size]])
        probs.append(predictor.pm_probability(batch))
    return ValidationScores(np.concatenate(probs), labels,
                            f"{len(paths)} validation images of {os.fspath(data_dir)}, scored when the app started")
