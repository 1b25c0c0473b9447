"""Evaluate a classifier on a data loader: loss, accuracy, AUC, sensitivity, specificity.

One function, :func:`evaluate`, serves the training loop (validation after each
epoch), ``tools/eval.py`` and the notebooks.  It runs the network in eval mode
without gradients, turns its outputs into PM probabilities and hands them to
:mod:`paddle_palm.metrics`.  :func:`evaluate_checkpoint` does the whole of
``tools/eval.py`` (rebuild a trained network from its weights and
``config.yaml``, score it on a dataset folder, write ``metrics.json``,
``confusion_matrix.png``, ``roc.png`` and ``predictions.csv``; SPEC 5) and
:func:`format_report` prints the result next to the majority-class baseline.

Two output layouts are accepted (issue 5, SPEC 2):

* one logit per image, ``[N, 1]`` (``loss="bce"``: sigmoid cross-entropy, the
  course's SENet18 and ResNet recipes); ``pm_probability = sigmoid(logit)``;
* two logits per image, ``[N, 2]`` (``loss="ce"``: softmax cross-entropy, the
  SqueezeNet recipe of seed 004); ``pm_probability = softmax(logits)[:, 1]``.

More than two logits (the CIFAR-10 / MNIST variants, SPEC 2.2-2.3) are scored
as a multi-class problem: loss, top-1 accuracy, confusion matrix and per-class
accuracy; the binary figures are then ``nan``.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from paddle_palm import metrics
from paddle_palm.errors import ConfigError, DataError

LOSSES = ("bce", "ce")

__all__ = [
    "LOSSES",
    "evaluate",
    "evaluate_checkpoint",
    "format_report",
    "infer_loss",
    "json_safe",
    "pm_probability_from_logits",
    "screening_thresholds",
]


def infer_loss(num_outputs):
    """The loss an output width implies: ``"bce"`` for one logit, ``"ce"`` otherwise."""
    return "bce" if int(num_outputs) == 1 else "ce"


def _check_loss(loss, num_outputs):
    if loss is None:
        return infer_loss(num_outputs)
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "bce" and num_outputs != 1:
        raise ConfigError(f"loss 'bce' needs a model with one output (a PM logit), but it has {num_outputs} outputs")
    if loss == "ce" and num_outputs < 2:
        raise ConfigError("loss 'ce' needs a model with at least two outputs, but it has one; use loss 'bce'")
    return loss


def _sigmoid(x):
    # Two branches so a large negative logit does not overflow exp().
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def pm_probability_from_logits(logits, loss=None):
    """PM probability of each image from raw network outputs.

    Args:
        logits: array ``[N, 1]`` / ``[N]`` (one logit) or ``[N, 2]`` (two logits).
        loss: ``"bce"`` (sigmoid), ``"ce"`` (softmax, class 1 is PM) or None to
            infer it from the width.

    Returns:
        np.ndarray: float64 ``[N]`` in [0, 1].
    """
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"expected logits of shape [N, 1] or [N, 2], got {x.shape}")
    loss = _check_loss(loss, x.shape[1])
    if loss == "bce":
        return _sigmoid(x[:, 0])
    if x.shape[1] != 2:
        raise DataError(f"a PM probability needs one or two logits per image, got {x.shape[1]}")
    return _softmax(x)[:, 1]


def _to_tensor(batch, dtype=None):
    import paddle

    if isinstance(batch, paddle.Tensor):
        return batch if dtype is None else batch.astype(dtype)
    arr = np.asarray(batch)
    return paddle.to_tensor(arr if dtype is None else arr.astype(dtype))


def _split_batch(batch):
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise DataError("each batch of the loader must be (images, labels)")
    return batch[0], batch[1]


def evaluate(model, loader, loss="bce", threshold=0.5):
    """Score ``model`` on every batch of ``loader``.

    Args:
        model: a ``paddle.nn.Layer`` giving ``[N, 1]`` or ``[N, C]`` logits.  It is
            put in eval mode for the pass and restored to its previous mode after.
        loader: an iterable of ``(images, labels)`` batches: a ``paddle.io.DataLoader``
            over :class:`paddle_palm.data.PalmDataset`, or the course's readers
            (float32 labels ``[N, 1]`` are accepted).
        loss: ``"bce"`` (one logit), ``"ce"`` (two or more logits) or None to
            infer it from the model's output width.
        threshold: PM decision threshold (``pm_probability >= threshold``), SPEC 2.1's 0.5.

    Returns:
        dict with ``n``; ``loss`` (mean per image of the training loss:
        sigmoid cross-entropy with logits, or softmax cross-entropy);
        ``accuracy``, ``auc``, ``sensitivity``, ``specificity``, ``precision``,
        ``f1``, ``confusion_matrix`` (list of lists, rows true, columns
        predicted), ``per_class_accuracy``, ``baseline`` (the majority-class
        answer, :func:`paddle_palm.metrics.majority_class_baseline`),
        ``threshold``, ``seconds``, ``images_per_second``; and numpy arrays
        ``probabilities`` (PM probability per image, ``[N]``; ``[N, C]`` class
        probabilities for C > 2), ``labels`` ``[N]`` and ``predictions`` ``[N]``.
        Metrics that are undefined on these data are ``nan``.

    Raises:
        DataError: the loader is empty or gives malformed batches.
        ConfigError: ``loss`` does not fit the model's output width.
    """
    import paddle
    import paddle.nn.functional as F

    threshold = metrics._check_threshold(threshold)
    if loss is not None and loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")

    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    loss_sum = 0.0
    start = time.perf_counter()
    try:
        with paddle.no_grad():
            for batch in loader:
                images, labels = _split_batch(batch)
                x = _to_tensor(images, "float32")
                y = np.asarray(labels.numpy() if isinstance(labels, paddle.Tensor) else labels).reshape(-1)
                out = model(x)
                if out.ndim == 1:
                    out = out.unsqueeze(1)
                if out.ndim != 2 or out.shape[0] != y.shape[0]:
                    raise DataError(
                        f"model output of shape {list(out.shape)} does not match a batch of {y.shape[0]} labels"
                    )
                loss = _check_loss(loss, out.shape[1])
                y_int = metrics._labels(y, num_classes=out.shape[1] if loss == "ce" else 2)
                if loss == "bce":
                    target = paddle.to_tensor(y_int.astype("float32")[:, None])
                    batch_loss = F.binary_cross_entropy_with_logits(out.astype("float32"), target, reduction="sum")
                else:
                    target = paddle.to_tensor(y_int)
                    batch_loss = F.cross_entropy(out.astype("float32"), target, reduction="sum")
                loss_sum += float(batch_loss)
                all_logits.append(out.astype("float32").numpy())
                all_labels.append(y_int)
    finally:
        if was_training:
            model.train()
    seconds = time.perf_counter() - start

    if not all_labels:
        raise DataError("the evaluation loader gave no batches: is the validation set empty?")
    logits = np.concatenate(all_logits).astype(np.float64)
    labels = np.concatenate(all_labels)
    n = int(labels.size)

    if logits.shape[1] <= 2:
        probs = pm_probability_from_logits(logits, loss)
        result = metrics.binary_metrics(labels, probs, threshold=threshold)
        preds = (probs >= threshold).astype(np.int64)
    else:
        probs = _softmax(logits)
        preds = probs.argmax(axis=1)
        num_classes = logits.shape[1]
        nan = float("nan")
        result = {
            "n": n,
            "threshold": threshold,
            "accuracy": metrics.accuracy(labels, preds),
            "auc": nan,
            "sensitivity": nan,
            "specificity": nan,
            "precision": nan,
            "f1": nan,
            "confusion_matrix": metrics.confusion_matrix(labels, preds, num_classes=num_classes).tolist(),
            "per_class_accuracy": metrics.per_class_accuracy(labels, preds, num_classes=num_classes).tolist(),
            "baseline": metrics.majority_class_baseline(labels, num_classes=num_classes),
        }
    result["loss"] = loss_sum / n
    result["seconds"] = seconds
    result["images_per_second"] = n / seconds if seconds > 0 else float("nan")
    result["probabilities"] = probs
    result["labels"] = labels
    result["predictions"] = preds
    return result


# ----------------------------------------------------------------------------- a trained run on a data set


#: Sensitivities for which :func:`evaluate_checkpoint` reports the best threshold (screening use).
SENSITIVITY_TARGETS = (0.9, 0.95, 0.99)


def json_safe(value):
    """``value`` with numpy types turned into Python ones and NaN/inf into None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if np.isfinite(value) else None
    return value


def screening_thresholds(labels, probs):
    """Suggested thresholds: Youden's, and the highest one reaching each of :data:`SENSITIVITY_TARGETS`.

    Returns:
        dict: ``youden`` and ``sensitivity_0.9`` ... each ``{"threshold", "sensitivity",
        "specificity"}``; empty when both classes are not present.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.min() == labels.max():
        return {}
    out = {}
    choices = [("youden", metrics.youden_threshold(labels, probs))]
    choices += [(f"sensitivity_{t:g}", metrics.threshold_for_sensitivity(labels, probs, t)) for t in SENSITIVITY_TARGETS]
    for name, t in choices:
        pred = (probs >= t).astype(np.int64)
        out[name] = {
            "threshold": t,
            "sensitivity": metrics.sensitivity(labels, pred),
            "specificity": metrics.specificity(labels, pred),
        }
    return out


def evaluate_checkpoint(weights, data_dir, arch=None, labels_file=None, split="valid", output_dir=None,
                        image_size=None, preprocess=None, num_classes=None, batch_size=32, threshold=None,
                        num_workers=0, write_files=True):
    """Evaluate trained weights on a PALM dataset folder and write the SPEC 5 outputs.

    The network is rebuilt from the run's ``config.yaml`` beside ``weights``
    (any argument given here overrides it; see
    :func:`paddle_palm.engine.inference.resolve_model_settings`).

    Args:
        weights: a ``.pdparams`` file (or prefix, or run folder).
        data_dir: a dataset folder (SPEC 5 layout).
        arch: architecture name (default: from ``config.yaml``).
        labels_file: a label sheet choosing the validation rows (default: the folder's own).
        split: ``"valid"`` (default) or ``"train"``.
        output_dir: where to write ``metrics.json``, ``confusion_matrix.png``,
            ``roc.png`` and ``predictions.csv`` (default: the folder of the weights).
        image_size, preprocess, num_classes, threshold: overrides.
        batch_size: images per forward pass.
        num_workers: data-loading worker processes.
        write_files: False to only compute the figures.

    Returns:
        dict: the JSON-safe summary written to ``metrics.json`` (see :func:`evaluate`
        for the figures, plus ``arch``, ``weights``, ``data_dir``, ``split``,
        ``image_size``, ``preprocess``, ``classes``, ``thresholds`` and ``files``).
    """
    import paddle

    from paddle_palm.data import PalmDataset
    from paddle_palm.engine.inference import load_trained_model, resolve_model_settings

    settings = resolve_model_settings(weights, arch, num_classes, image_size, preprocess, threshold)
    if settings.num_classes > 2:
        raise ConfigError(f"{settings.arch} has {settings.num_classes} outputs: PALM evaluation needs 1 or 2")
    model = load_trained_model(settings)
    dataset = PalmDataset(data_dir, split, image_size=settings.image_size, preprocess=settings.preprocess,
                          labels_file=labels_file)
    if len(dataset) == 0:
        raise DataError(f"no {split} images in {data_dir}")
    from paddle_palm.engine.loaders import check_num_workers, worker_init_function

    loader = paddle.io.DataLoader(dataset, batch_size=int(batch_size), shuffle=False, drop_last=False,
                                  num_workers=check_num_workers(int(num_workers)),
                                  worker_init_fn=worker_init_function() if int(num_workers) else None)
    result = evaluate(model, loader, loss=settings.loss, threshold=settings.threshold)

    summary = {k: v for k, v in result.items() if k not in ("probabilities", "labels", "predictions")}
    summary.update(
        arch=settings.arch,
        weights=os.fspath(settings.weights),
        data_dir=os.fspath(data_dir),
        split=split,
        labels_file=os.fspath(labels_file) if labels_file else None,
        image_size=settings.image_size,
        preprocess=settings.preprocess,
        classes=settings.classes,
        classes_zh=settings.classes_zh,
        thresholds=screening_thresholds(result["labels"], result["probabilities"]),
    )
    summary = json_safe(summary)
    if write_files:
        out = Path(output_dir) if output_dir else Path(settings.weights).resolve().parent
        out.mkdir(parents=True, exist_ok=True)
        summary["files"] = _write_outputs(out, summary, result, [p for p, _ in dataset.samples], settings)
    return summary


def _write_outputs(out, summary, result, files, settings):
    import csv

    from paddle_palm.engine.inference import class_name
    from paddle_palm.fileio import atomic_path, spreadsheet_safe, write_text_atomic
    from paddle_palm.viz.plots import plot_confusion_matrix, plot_roc

    names = {
        "metrics": out / "metrics.json",
        "confusion_matrix": out / "confusion_matrix.png",
        "roc": out / "roc.png",
        "predictions": out / "predictions.csv",
    }
    summary = dict(summary, files={k: os.fspath(v) for k, v in names.items()})
    plot_confusion_matrix(result["confusion_matrix"], settings.classes_zh or settings.classes, names["confusion_matrix"],
                          title=f"{settings.arch}, threshold {settings.threshold:g}")
    plot_roc(result["labels"], result["probabilities"], names["roc"], threshold=settings.threshold,
             title=f"ROC of {settings.arch}")
    with atomic_path(names["predictions"]) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "pm_probability", "label", "class_name", "true_label"])
            for path, p, pred, true in zip(files, result["probabilities"], result["predictions"], result["labels"]):
                writer.writerow([spreadsheet_safe(os.fspath(path)), f"{p:.6f}", int(pred),
                                 spreadsheet_safe(class_name(int(pred), settings.classes, settings.classes_zh)),
                                 int(true)])
    write_text_atomic(names["metrics"], json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary["files"]


def _display_width(text):
    # A Chinese character takes two columns in a terminal.
    return sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)


def _fmt(value, digits=4):
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def format_report(summary):
    """A readable report of an :func:`evaluate_checkpoint` summary (what ``tools/eval.py`` prints)."""
    from paddle_palm.engine.inference import class_name

    classes, classes_zh = summary.get("classes"), summary.get("classes_zh")
    base = summary.get("baseline") or {}
    majority = base.get("class")
    head = (f"{summary.get('arch', 'model')} ({summary.get('weights', '')}) on {summary['n']} "
            f"{summary.get('split', 'valid')} images of {summary.get('data_dir', '')}, "
            f"image size {summary.get('image_size')}, preprocessing {summary.get('preprocess')}, "
            f"threshold {summary['threshold']:g}")
    majority_name = class_name(majority, classes, classes_zh) if majority is not None else "?"
    lines = [head, "", f"{'metric':<13}{'model':>10}   majority-class baseline (always {majority_name})"]
    rows = [("loss", summary.get("loss"), None), ("accuracy", summary["accuracy"], base.get("accuracy")),
            ("AUC", summary["auc"], base.get("auc")), ("sensitivity", summary["sensitivity"], base.get("sensitivity")),
            ("specificity", summary["specificity"], base.get("specificity")),
            ("precision", summary["precision"], None), ("F1", summary["f1"], None)]
    for name, value, baseline in rows:
        lines.append(f"{name:<13}{_fmt(value):>10}   {_fmt(baseline) if baseline is not None else '':>}")
    cm = summary["confusion_matrix"]
    labels = [class_name(k, classes, classes_zh) for k in range(len(cm))]
    row_names = [f"true {k} {labels[k]}" for k in range(len(cm))]
    width = max(_display_width(s) for s in row_names) + 2
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * width + "".join(f"{'pred ' + str(k):>10}" for k in range(len(cm))))
    for name, row in zip(row_names, cm):
        lines.append(name + " " * (width - _display_width(name)) + "".join(f"{v:>10}" for v in row))
    lines += ["", "per-class accuracy"]
    for k, acc in enumerate(summary.get("per_class_accuracy", [])):
        total = sum(cm[k])
        lines.append(f"  {labels[k]}: {_fmt(None if acc is None else 100 * acc, 2)} % ({cm[k][k]} of {total})")
    thresholds = summary.get("thresholds") or {}
    if thresholds:
        lines += ["", "other thresholds on these images (for choosing an operating point, not a held-out estimate)"]
        for name, t in thresholds.items():
            lines.append(f"  {name:<17} threshold {_fmt(t['threshold'])}  sensitivity {_fmt(t['sensitivity'])}  "
                         f"specificity {_fmt(t['specificity'])}")
    files = summary.get("files") or {}
    if files:
        lines += ["", "wrote " + ", ".join(files.values())]
    return "\n".join(lines)
