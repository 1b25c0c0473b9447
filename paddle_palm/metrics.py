"""Screening metrics for pathologic-myopia classifiers, on scikit-learn.

PaddleClas and ``paddle.metric`` stop at top-1 accuracy; a screening tool is
judged by more than that (issue 5): how many PM eyes it finds (sensitivity),
how many healthy eyes it leaves alone (specificity), how well its scores rank
the two groups (ROC AUC), and at which threshold it should be used.  Every
function here takes plain sequences or numpy arrays, so the same code scores a
training run, a notebook and an exported model.

The generic figures (confusion matrix, ROC curve, ROC AUC) come from
``sklearn.metrics``, the standard of medical machine learning; what is ours is
what a screening tool adds around them: input checks with one-line messages,
``nan`` where a figure is undefined, the choice of a threshold
(:func:`youden_threshold`, :func:`threshold_for_sensitivity`,
:func:`threshold_for_specificity`) and :func:`binary_metrics`, the report.
scikit-learn is imported inside the functions that use it: its import pulls in
scipy and takes one to three seconds, and this module is imported by every
command (``--help`` included) for its class names and loss checks.

Conventions (scikit-learn's, so results can be compared directly):

* ``labels`` are the true classes, 1 = pathologic myopia (PM), 0 = not PM
  (SPEC 1.2).  ``probs`` are PM probabilities (``pm_probability``).
* An image is predicted PM when ``prob >= threshold``.  The course's readers
  (SPEC 2.1) take the top-1 of ``[1 - p, p]``, which calls ``p == 0.5`` "not
  PM"; the two rules differ only for a probability of exactly the threshold.
* A confusion matrix has the true class on the rows and the predicted class on
  the columns: for two classes ``[[TN, FP], [FN, TP]]``.
* A ratio whose denominator is zero is undefined and returned as ``nan``
  (never a silent 0): sensitivity without PM images, specificity without
  non-PM images, precision without PM predictions, F1 without any PM image or
  prediction, and ROC AUC when only one class is present (scikit-learn raises
  ``ValueError`` there; a validation split with one class is a legitimate
  situation on tiny data, and ``nan`` becomes ``null`` in JSON).
* Bad input (different lengths, no samples, a label outside {0, 1}, a
  probability outside [0, 1] or NaN) raises :class:`paddle_palm.errors.DataError`
  naming the bad value.
"""

import math
import warnings

import numpy as np

from paddle_palm.errors import ConfigError, DataError

#: The PALM classes (SPEC 1.2, 2.5), wherever a class is shown to a person or recorded in a
#: run's ``config.yaml``: index 0 = not pathologic myopia, 1 = pathologic myopia (seed 004).
CLASS_NAMES_ZH = ("非病理性近视", "病理性近视")
CLASS_NAMES_EN = ("non-pathologic myopia", "pathologic myopia")

#: The two training losses: ``"bce"`` (sigmoid cross-entropy on one logit), ``"ce"`` (softmax).
LOSSES = ("bce", "ce")

__all__ = [
    "CLASS_NAMES_EN",
    "CLASS_NAMES_ZH",
    "LOSSES",
    "accuracy",
    "binary_counts",
    "binary_metrics",
    "check_binary_labels",
    "check_labels",
    "check_probabilities",
    "check_loss",
    "check_threshold",
    "class_name",
    "confusion_matrix",
    "f1_score",
    "infer_loss",
    "majority_class_baseline",
    "per_class_accuracy",
    "pm_probability_from_logits",
    "precision",
    "predict_labels",
    "roc_auc",
    "roc_curve",
    "sensitivity",
    "sigmoid",
    "softmax",
    "specificity",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "youden_threshold",
]


# ----------------------------------------------------------------------------- input checks


def check_labels(labels, name="labels", num_classes=None):
    """``labels`` as a 1-D int64 array of class indices, checked (``[N, 1]`` is accepted).

    Raises:
        DataError: not 1-D, empty, not whole numbers, negative or ``>= num_classes``.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:  # the course readers give labels as [N, 1]
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D sequence of class indices, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name} is empty: at least one sample is needed")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][0]
            raise DataError(f"{name} must be whole class indices, got {bad!r}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise DataError(f"{name} must be class indices >= 0, got {int(arr[arr < 0][0])}")
    if num_classes is not None and np.any(arr >= num_classes):
        raise DataError(f"{name} must be class indices < {num_classes}, got {int(arr[arr >= num_classes][0])}")
    return arr


def check_binary_labels(labels, name="labels"):
    return check_labels(labels, name=name, num_classes=2)


def check_probabilities(probs, n, name="probs"):
    """``probs`` as a 1-D float64 array of length ``n`` with values in [0, 1]."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D sequence of PM probabilities, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} values but there are {n} labels")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains a non-finite value ({arr[~np.isfinite(arr)][0]}); expected values in [0, 1]")
    if np.any((arr < 0) | (arr > 1)):
        raise DataError(f"{name} must lie in [0, 1], got {arr[(arr < 0) | (arr > 1)][0]}")
    return arr


def _scores(scores, n, name="probs"):
    """Like :func:`check_probabilities` but any finite real score is allowed (ROC needs only the order)."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D sequence of scores, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} values but there are {n} labels")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains a non-finite value ({arr[~np.isfinite(arr)][0]})")
    return arr


def _same_length(labels, preds):
    if labels.shape[0] != preds.shape[0]:
        raise DataError(f"predictions has {preds.shape[0]} values but there are {labels.shape[0]} labels")


def _ratio(num, den):
    return float(num) / float(den) if den else float("nan")


def _sklearn_metrics():
    """``sklearn.metrics``, imported on first use (see the module docstring for why)."""
    import sklearn.metrics

    return sklearn.metrics


def check_threshold(threshold):
    """``threshold`` as a float in [0, 1]; ConfigError otherwise."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number in [0, 1], got {threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return value


# ----------------------------------------------------------------------------- hard predictions


def predict_labels(probs, threshold=0.5):
    """Hard PM predictions from PM probabilities: 1 where ``prob >= threshold``.

    Args:
        probs: PM probabilities in [0, 1].
        threshold: decision threshold in [0, 1] (0.5 by default, SPEC 2.1).

    Returns:
        np.ndarray: int64 array of 0/1.
    """
    threshold = check_threshold(threshold)
    flat = np.asarray(probs, dtype=np.float64).reshape(-1)
    arr = check_probabilities(flat, flat.size)
    return (arr >= threshold).astype(np.int64)


def accuracy(labels, preds):
    """Fraction of samples whose predicted class equals the true class.

    Args:
        labels: true class indices.
        preds: predicted class indices (any number of classes).

    Returns:
        float in [0, 1].
    """
    y = check_labels(labels)
    p = check_labels(preds, name="predictions")
    _same_length(y, p)
    return float(np.mean(y == p))


def confusion_matrix(labels, preds, num_classes=None):
    """Counts of (true class, predicted class) pairs.

    Args:
        labels: true class indices.
        preds: predicted class indices.
        num_classes: size of the matrix; default ``max(label, pred) + 1`` but at
            least 2, so a binary matrix is always 2x2 even when one class is absent.

    Returns:
        np.ndarray: int64 ``[num_classes, num_classes]``, rows = true, columns =
        predicted; for two classes ``[[TN, FP], [FN, TP]]``.
    """
    y = check_labels(labels, num_classes=num_classes)
    p = check_labels(preds, name="predictions", num_classes=num_classes)
    _same_length(y, p)
    if num_classes is None:
        num_classes = max(2, int(max(y.max(), p.max())) + 1)
    return _sklearn_metrics().confusion_matrix(y, p, labels=np.arange(num_classes)).astype(np.int64)


def binary_counts(labels, preds):
    """``(tn, fp, fn, tp)`` of binary labels and predictions (1 = PM)."""
    cm = confusion_matrix(check_binary_labels(labels), check_binary_labels(preds, name="predictions"), num_classes=2)
    return _counts_of(cm)


def _counts_of(cm):
    return int(cm[0, 0]), int(cm[0, 1]), int(cm[1, 0]), int(cm[1, 1])


# The ratios of a 2x2 matrix's counts.  scikit-learn's recall_score / precision_score / f1_score
# answer an undefined ratio with 0 and a warning (or a chosen constant); a screening report says
# ``nan`` instead, so these four stay a line each over the counts.
def _sensitivity(tn, fp, fn, tp):
    return _ratio(tp, tp + fn)


def _specificity(tn, fp, fn, tp):
    return _ratio(tn, tn + fp)


def _precision(tn, fp, fn, tp):
    return _ratio(tp, tp + fp)


def _f1(tn, fp, fn, tp):
    return _ratio(2 * tp, 2 * tp + fp + fn)


def sensitivity(labels, preds):
    """Recall of the PM class, TP / (TP + FN); ``nan`` when there is no PM image."""
    return _sensitivity(*binary_counts(labels, preds))


def specificity(labels, preds):
    """Recall of the non-PM class, TN / (TN + FP); ``nan`` when there is no non-PM image."""
    return _specificity(*binary_counts(labels, preds))


def precision(labels, preds):
    """Positive predictive value, TP / (TP + FP); ``nan`` when nothing is predicted PM."""
    return _precision(*binary_counts(labels, preds))


def f1_score(labels, preds):
    """Harmonic mean of precision and sensitivity, 2TP / (2TP + FP + FN).

    ``nan`` when there is no PM image and no PM prediction (2TP + FP + FN = 0).
    """
    return _f1(*binary_counts(labels, preds))


def per_class_accuracy(labels, preds, num_classes=None):
    """Accuracy within each true class (the recall of each class, seed 003's table).

    Args:
        labels: true class indices.
        preds: predicted class indices.
        num_classes: number of classes (default: as in :func:`confusion_matrix`).

    Returns:
        np.ndarray: float64 ``[num_classes]``; ``nan`` for a class with no sample.
    """
    return _per_class_accuracy_of(confusion_matrix(labels, preds, num_classes=num_classes))


def _per_class_accuracy_of(cm):
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def majority_class_baseline(labels, num_classes=None):
    """What always answering the most frequent class would score: the floor any model must beat.

    Args:
        labels: true class indices.
        num_classes: number of classes (default: as in :func:`confusion_matrix`).

    Returns:
        dict: ``class`` (the majority class; the smaller index on a tie),
        ``accuracy`` (its share of the samples), ``sensitivity`` and
        ``specificity`` of that constant answer for binary labels, and ``auc``
        0.5 (a constant score does not rank; ``nan`` if one class only).
    """
    y = check_labels(labels, num_classes=num_classes)
    counts = np.bincount(y, minlength=num_classes or 2)
    majority = int(np.argmax(counts))
    result = {"class": majority, "accuracy": float(counts[majority] / y.size)}
    if counts.size == 2:
        # The constant answer's counts: every image lands in the majority's column.
        tn, fp = (counts[0], 0) if majority == 0 else (0, counts[0])
        fn, tp = (counts[1], 0) if majority == 0 else (0, counts[1])
        result["sensitivity"] = _sensitivity(tn, fp, fn, tp)
        result["specificity"] = _specificity(tn, fp, fn, tp)
        result["auc"] = 0.5 if np.all(counts > 0) else float("nan")
    return result


# ----------------------------------------------------------------------------- ranking metrics


def roc_auc(labels, probs):
    """Area under the ROC curve of PM scores (scikit-learn's ``roc_auc_score``).

    The trapezoidal area, so a tie between a PM and a non-PM score counts one
    half (the Mann-Whitney U statistic over the number of pairs).

    Args:
        labels: true binary labels (1 = PM).
        probs: PM scores (probabilities, or any finite real scores).

    Returns:
        float in [0, 1]; ``nan`` when only one class is present (undefined;
        scikit-learn raises ``ValueError`` there).
    """
    y = check_binary_labels(labels)
    s = _scores(probs, y.size)
    if y.min() == y.max():
        return float("nan")
    return float(_sklearn_metrics().roc_auc_score(y, s))


def roc_curve(labels, probs):
    """Points of the ROC curve, one per distinct score (no points dropped).

    Args:
        labels: true binary labels (1 = PM).
        probs: PM scores.

    Returns:
        (fpr, tpr, thresholds): float64 arrays, scikit-learn's
        ``roc_curve(..., drop_intermediate=False)``.  ``thresholds`` are the
        distinct scores in decreasing order preceded by ``inf`` (nothing
        predicted PM; scikit-learn before 1.3 put ``max + 1`` there); point
        ``i`` is the rate obtained by predicting PM for ``score >= thresholds[i]``.
        A rate whose class is absent is ``nan`` (scikit-learn warns there; the
        warning is not repeated).
    """
    y = check_binary_labels(labels)
    s = _scores(probs, y.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning: one class only, answered by nan
        fpr, tpr, thresholds = _sklearn_metrics().roc_curve(y, s, pos_label=1, drop_intermediate=False)
    thresholds = np.asarray(thresholds, dtype=np.float64).copy()
    thresholds[0] = np.inf
    return np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64), thresholds


def _check_target(target, what):
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"target {what} must be a number in (0, 1], got {target!r}") from None
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"target {what} must be a number in (0, 1], got {target!r}")
    return value


def threshold_for_sensitivity(labels, probs, target):
    """The highest threshold whose sensitivity is at least ``target``.

    A screening programme usually fixes how many PM eyes it may miss (e.g.
    sensitivity 0.95) and then wants as few false alarms as possible: the
    highest such threshold gives the best specificity.

    Args:
        labels: true binary labels (1 = PM); at least one PM image is needed.
        probs: PM probabilities.
        target: wanted sensitivity in (0, 1].

    Returns:
        float: a threshold ``t`` (one of the PM images' probabilities) such that
        predicting PM for ``prob >= t`` reaches the target on these data.

    Raises:
        DataError: no PM image in ``labels``; ConfigError: target out of range.
    """
    target = _check_target(target, "sensitivity")
    y = check_binary_labels(labels)
    p = check_probabilities(probs, y.size)
    pos = np.sort(p[y == 1])[::-1]
    if pos.size == 0:
        raise DataError("threshold_for_sensitivity needs at least one PM image (label 1) in labels")
    # Smallest number k of PM images to catch; the small epsilon keeps 0.9 * 10 from becoming 10.
    k = max(1, math.ceil(target * pos.size - 1e-9))
    return float(pos[k - 1])


def threshold_for_specificity(labels, probs, target):
    """The lowest threshold whose specificity is at least ``target`` (best sensitivity then).

    Args:
        labels: true binary labels; at least one non-PM image (label 0) is needed.
        probs: PM probabilities.
        target: wanted specificity in (0, 1].

    Returns:
        float: a threshold ``t`` such that predicting PM for ``prob >= t`` leaves
        at least ``target`` of the non-PM images negative.  It is the smallest
        probability above the non-PM images that would otherwise be flagged
        (``np.nextafter`` of one of them), or 1.0 beyond every score.
    """
    target = _check_target(target, "specificity")
    y = check_binary_labels(labels)
    p = check_probabilities(probs, y.size)
    neg = np.sort(p[y == 0])
    if neg.size == 0:
        raise DataError("threshold_for_specificity needs at least one non-PM image (label 0) in labels")
    k = max(1, math.ceil(target * neg.size - 1e-9))  # non-PM images that must stay below t
    # Everything up to neg[k-1] must be < t; ties above it may stay below too.
    return float(min(1.0, np.nextafter(neg[k - 1], np.inf)))


def youden_threshold(labels, probs):
    """The threshold maximising Youden's J = sensitivity + specificity - 1.

    Args:
        labels: true binary labels with both classes present.
        probs: PM probabilities.

    Returns:
        float: the best threshold among the observed probabilities (the highest
        one when several tie).
    """
    y = check_binary_labels(labels)
    p = check_probabilities(probs, y.size)
    if y.min() == y.max():
        raise DataError("youden_threshold needs both PM (1) and non-PM (0) images in labels")
    fpr, tpr, thresholds = roc_curve(y, p)
    j = tpr[1:] - fpr[1:]  # skip the 'inf' point
    return float(thresholds[1:][int(np.argmax(j))])


# ----------------------------------------------------------------------------- all at once


def binary_metrics(labels, probs, threshold=0.5):
    """Every screening figure of PM probabilities at one threshold.

    Args:
        labels: true binary labels (1 = PM).
        probs: PM probabilities in [0, 1].
        threshold: decision threshold (``prob >= threshold`` means PM).

    Returns:
        dict: ``n``, ``threshold``, ``accuracy``, ``auc``, ``sensitivity``,
        ``specificity``, ``precision``, ``f1``, ``confusion_matrix`` (a list of
        lists, ``[[TN, FP], [FN, TP]]``), ``per_class_accuracy`` (list) and
        ``baseline`` (:func:`majority_class_baseline`).  Undefined ratios are ``nan``.
    """
    threshold = check_threshold(threshold)
    y = check_binary_labels(labels)
    p = check_probabilities(probs, y.size)
    pred = (p >= threshold).astype(np.int64)
    cm = confusion_matrix(y, pred, num_classes=2)
    counts = _counts_of(cm)
    return {
        "n": int(y.size),
        "threshold": threshold,
        "accuracy": accuracy(y, pred),
        "auc": roc_auc(y, p),
        "sensitivity": _sensitivity(*counts),
        "specificity": _specificity(*counts),
        "precision": _precision(*counts),
        "f1": _f1(*counts),
        "confusion_matrix": cm.tolist(),
        "per_class_accuracy": _per_class_accuracy_of(cm).tolist(),
        "baseline": majority_class_baseline(y, num_classes=2),
    }


# ----------------------------------------------------------------------------- from network outputs to probabilities


def infer_loss(num_outputs):
    """The loss an output width implies: ``"bce"`` for one logit, ``"ce"`` otherwise."""
    return "bce" if int(num_outputs) == 1 else "ce"


def check_loss(loss, num_outputs):
    """``loss`` checked against a network's output width; None gives :func:`infer_loss`'s answer.

    Raises:
        ConfigError: an unknown loss, ``"bce"`` on more than one output or ``"ce"`` on one.
    """
    if loss is None:
        return infer_loss(num_outputs)
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "bce" and num_outputs != 1:
        raise ConfigError(f"loss 'bce' needs a model with one output (a PM logit), but it has {num_outputs} outputs")
    if loss == "ce" and num_outputs < 2:
        raise ConfigError("loss 'ce' needs a model with at least two outputs, but it has one; use loss 'bce'")
    return loss


def sigmoid(x):
    """The logistic function of an array, float64, without overflow for large negative values."""
    x = np.asarray(x, dtype=np.float64)
    # Two branches so a large negative logit does not overflow exp().
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def softmax(x):
    """Row-wise softmax of ``[N, C]`` scores."""
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
    loss = check_loss(loss, x.shape[1])
    if loss == "bce":
        return sigmoid(x[:, 0])
    if x.shape[1] != 2:
        raise DataError(f"a PM probability needs one or two logits per image, got {x.shape[1]}")
    return softmax(x)[:, 1]


def class_name(label, classes=None, classes_zh=None):
    """The display name of a class: ``"病理性近视 (pathologic myopia)"`` for PALM's 1.

    Args:
        label: the class index (0 or 1 for PALM).
        classes: English names (default: :data:`CLASS_NAMES_EN`).
        classes_zh: Chinese names (default: :data:`CLASS_NAMES_ZH`).

    Returns:
        str: ``"<Chinese> (<English>)"``, or just the English name when there is no Chinese one.
    """
    classes = list(classes or CLASS_NAMES_EN)
    classes_zh = list(CLASS_NAMES_ZH if classes_zh is None else classes_zh)
    en = classes[label] if label < len(classes) else f"class {label}"
    zh = classes_zh[label] if label < len(classes_zh) else None
    return f"{zh} ({en})" if zh else en
