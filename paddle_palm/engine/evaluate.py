"""Evaluate a classifier on a data loader: loss, accuracy, AUC, sensitivity, specificity.

One function, :func:`evaluate`, serves the training loop (validation after each
epoch), ``tools/eval.py`` and the notebooks.  It runs the network in eval mode
without gradients, turns its outputs into PM probabilities and hands them to
:mod:`paddle_palm.metrics`.  :func:`evaluate_checkpoint` does the whole of
``tools/eval.py`` (rebuild a trained network from its weights and
``config.yaml``, score it on a dataset folder, write ``metrics.json``,
``confusion_matrix.png``, ``roc.png`` and ``predictions.csv``; SPEC 5) and
:func:`paddle_palm.engine.reports.format_report` prints the result next to the
majority-class baseline.

Two output layouts are accepted (issue 5, SPEC 2):

* one logit per image, ``[N, 1]`` (``loss="bce"``: sigmoid cross-entropy, the
  course's SENet18 and ResNet recipes); ``pm_probability = sigmoid(logit)``;
* two logits per image, ``[N, 2]`` (``loss="ce"``: softmax cross-entropy, the
  SqueezeNet recipe of seed 004); ``pm_probability = softmax(logits)[:, 1]``.

More than two logits (the CIFAR-10 / MNIST variants, SPEC 2.2-2.3) are scored
as a multi-class problem: loss, top-1 accuracy, confusion matrix and per-class
accuracy; the binary figures are then ``nan``.

Paddle, and the data set and loader modules that import it, are imported inside the
functions that run a model (importing Paddle takes seconds; the tools install
their signal handlers first).
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from paddle_palm import calibration, metrics
from paddle_palm.engine.losses import compute_loss
from paddle_palm.engine.model_settings import load_trained_model, resolve_model_settings
from paddle_palm.engine.reports import write_evaluation_csv
from paddle_palm.errors import ConfigError, DataError
from paddle_palm.fileio import write_text_atomic
from paddle_palm.operating_point import DEFAULT_BANDS, coverage_table, operating_point, parse_refer_band
from paddle_palm.viz.plots import plot_confusion_matrix, plot_coverage, plot_reliability, plot_roc

__all__ = [
    "evaluate",
    "evaluate_checkpoint",
    "json_safe",
    "screening_thresholds",
]


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


def _forward_all(model, loader, loss, tta=False):
    """Run ``model`` over ``loader`` without gradients.

    Returns:
        ``(logits [N, C] float64, labels [N], loss sum, loss, mirrored)``: ``mirrored`` holds the
        logits of the horizontally flipped images when ``tta``, else None.
    """
    import paddle

    all_logits, all_labels, all_mirrored = [], [], []
    loss_sum = 0.0
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
            loss = metrics.check_loss(loss, out.shape[1])
            y_int = metrics.check_labels(y, num_classes=out.shape[1] if loss == "ce" else 2)
            loss_sum += float(compute_loss(out, paddle.to_tensor(y_int), loss, reduction="sum"))
            all_logits.append(out.astype("float32").numpy())
            all_labels.append(y_int)
            if tta:
                all_mirrored.append(model(paddle.flip(x, axis=[3])).astype("float32").numpy().reshape(out.shape))
    if not all_labels:
        raise DataError("the evaluation loader gave no batches: is the validation set empty?")
    mirrored = np.concatenate(all_mirrored).astype(np.float64) if tta else None
    return np.concatenate(all_logits).astype(np.float64), np.concatenate(all_labels), loss_sum, loss, mirrored


def _multiclass_metrics(labels, probs, threshold):
    """The figures of more than two classes: accuracy, confusion matrix, per-class accuracy; binary ones ``nan``."""
    preds = probs.argmax(axis=1)
    num_classes = probs.shape[1]
    nan = float("nan")
    result = {
        "n": int(labels.size),
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
    return result, preds


def evaluate(model, loader, loss="bce", threshold=0.5, temperature=1.0, tta=False):
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
        temperature: the calibration temperature the logits are divided by (1: none).
        tta: average each image's probabilities with its mirror image's (test-time augmentation).

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
    threshold = metrics.check_threshold(threshold)
    if loss is not None and loss not in metrics.LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(metrics.LOSSES)}, got {loss!r}")

    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        logits, labels, loss_sum, loss, mirrored = _forward_all(model, loader, loss, tta)
    finally:
        if was_training:
            model.train()
    seconds = time.perf_counter() - start
    n = int(labels.size)

    views = [logits] if mirrored is None else [logits, mirrored]
    if logits.shape[1] <= 2:
        probs = np.mean([metrics.pm_probability_from_logits(v / temperature, loss) for v in views], axis=0)
        result = metrics.binary_metrics(labels, probs, threshold=threshold)
        preds = (probs >= threshold).astype(np.int64)
    else:
        probs = np.mean([metrics.softmax(v / temperature) for v in views], axis=0)
        result, preds = _multiclass_metrics(labels, probs, threshold)
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
                        num_workers=0, write_files=True, tta=False, refer_band=None):
    """Evaluate trained weights on a PALM dataset folder and write the SPEC 5 outputs.

    The network is rebuilt from the run's ``config.yaml`` beside ``weights``
    (any argument given here overrides it; see
    :func:`paddle_palm.engine.model_settings.resolve_model_settings`).

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
        tta: average each image's probability with its mirror image's.
        refer_band: also report the images a "refer to a specialist" band of this half-width
            around the threshold would refer (the coverage table has several bands either way).

    Returns:
        dict: the JSON-safe summary written to ``metrics.json`` (see :func:`evaluate`
        for the figures, plus ``arch``, ``weights``, ``data_dir``, ``split``,
        ``image_size``, ``preprocess``, ``classes``, ``thresholds``, ``temperature``, ``tta``,
        ``operating_point`` (sensitivity and specificity at the threshold with 95% Wilson
        intervals and their counts), ``recorded_operating_point`` (what training chose on its
        validation split), ``calibration`` (Brier score, ECE), ``refer`` (the coverage table,
        and ``refer_band``'s row) and ``files``).
    """
    settings = resolve_model_settings(weights, arch, num_classes, image_size, preprocess, threshold)
    if settings.num_classes > 2:
        raise ConfigError(f"{settings.arch} has {settings.num_classes} outputs: PALM evaluation needs 1 or 2")
    model = load_trained_model(settings)
    dataset, loader = _palm_loader(data_dir, split, settings, labels_file, batch_size, num_workers)
    band = None if refer_band is None else parse_refer_band(refer_band)
    result = evaluate(model, loader, loss=settings.loss, threshold=settings.threshold,
                      temperature=settings.temperature, tta=tta)

    summary = {k: v for k, v in result.items() if k not in ("probabilities", "labels", "predictions")}
    summary.update(_screening_figures(result["labels"], result["probabilities"], settings, band, threshold))
    summary.update(tta=bool(tta))
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


def _screening_figures(labels, probs, settings, band, threshold_flag):
    """The operating point with its intervals, the calibration and the refer table of one evaluation."""
    recorded = settings.operating_point
    rule = recorded.get("rule") if recorded and threshold_flag is None else f"fixed:{settings.threshold:g}"
    bands = sorted(set(DEFAULT_BANDS) | ({band} if band is not None else set()))
    table = coverage_table(labels, probs, settings.threshold, bands)
    return {
        "temperature": settings.temperature,
        "operating_point": operating_point(labels, probs, settings.threshold, rule=rule),
        "recorded_operating_point": recorded,
        "calibration": {"brier": calibration.brier_score(labels, probs),
                        "ece": calibration.expected_calibration_error(labels, probs), "bins": 10},
        "refer": {"band": band, "table": table,
                  "at_band": next((row for row in table if row["band"] == band), None)},
    }


def _palm_loader(data_dir, split, settings, labels_file, batch_size, num_workers):
    """The ``split`` of a PALM dataset folder, preprocessed for ``settings``, and its loader (in order)."""
    import paddle

    from paddle_palm.data.dataset import PalmDataset
    from paddle_palm.engine.loaders import check_num_workers, worker_init_function

    dataset = PalmDataset(data_dir, split, image_size=settings.image_size, preprocess=settings.preprocess,
                          labels_file=labels_file)
    if len(dataset) == 0:
        raise DataError(f"no {split} images in {data_dir}")
    loader = paddle.io.DataLoader(dataset, batch_size=int(batch_size), shuffle=False, drop_last=False,
                                  num_workers=check_num_workers(int(num_workers)),
                                  worker_init_fn=worker_init_function() if int(num_workers) else None)
    return dataset, loader


def _write_outputs(out, summary, result, files, settings):
    names = {
        "metrics": out / "metrics.json",
        "confusion_matrix": out / "confusion_matrix.png",
        "roc": out / "roc.png",
        "predictions": out / "predictions.csv",
        "reliability": out / "reliability.png",
        "coverage": out / "coverage.png",
    }
    summary = dict(summary, files={k: os.fspath(v) for k, v in names.items()})
    plot_confusion_matrix(result["confusion_matrix"], settings.classes_zh or settings.classes, names["confusion_matrix"],
                          title=f"{settings.arch}, threshold {settings.threshold:g}")
    plot_roc(result["labels"], result["probabilities"], names["roc"], threshold=settings.threshold,
             title=f"ROC of {settings.arch}")
    plot_reliability(result["labels"], result["probabilities"], names["reliability"],
                     title=f"Reliability of {settings.arch}")
    plot_coverage(summary["refer"]["table"], names["coverage"],
                  title=f"{settings.arch}: refer band around threshold {settings.threshold:.3g}")
    write_evaluation_csv(names["predictions"], files, result["probabilities"], result["predictions"],
                         result["labels"], settings.classes, settings.classes_zh)
    write_text_atomic(names["metrics"], json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary["files"]
