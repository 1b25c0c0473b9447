"""Tests of paddle_palm.metrics: hand-computed cases, then agreement with scikit-learn.

The hand-computed cases say what each number means on a screening example;
the scikit-learn comparisons (fixed and hypothesis-generated inputs, ties
included) show the figures are the ones every other tool reports.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paddle_palm import metrics
from paddle_palm.errors import ConfigError, DataError

sk = pytest.importorskip("sklearn.metrics")

# Five eyes: two normal, three PM.  At threshold 0.5: TN 1 (0.1), FP 1 (0.6), FN 1 (0.4), TP 2 (0.8, 0.9).
LABELS = [0, 0, 1, 1, 1]
PROBS = [0.1, 0.6, 0.4, 0.8, 0.9]


# ----------------------------------------------------------------------------- hand-computed


def test_counts_and_ratios_by_hand():
    pred = metrics.predict_labels(PROBS, 0.5)
    assert pred.tolist() == [0, 1, 0, 1, 1]
    assert metrics.binary_counts(LABELS, pred) == (1, 1, 1, 2)
    assert metrics.confusion_matrix(LABELS, pred).tolist() == [[1, 1], [1, 2]]
    assert metrics.accuracy(LABELS, pred) == pytest.approx(3 / 5)
    assert metrics.sensitivity(LABELS, pred) == pytest.approx(2 / 3)
    assert metrics.specificity(LABELS, pred) == pytest.approx(1 / 2)
    assert metrics.precision(LABELS, pred) == pytest.approx(2 / 3)
    assert metrics.f1_score(LABELS, pred) == pytest.approx(2 / 3)
    assert metrics.per_class_accuracy(LABELS, pred).tolist() == pytest.approx([1 / 2, 2 / 3])


def test_auc_by_hand_counts_pairs_and_half_ties():
    # 6 (PM, normal) pairs: PM scores 0.4, 0.8, 0.9 vs normal 0.1, 0.6 -> 5 of 6 ranked right.
    assert metrics.roc_auc(LABELS, PROBS) == pytest.approx(5 / 6)
    # A tie between a PM and a normal eye counts one half.
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.roc_auc([0, 0, 1], [0.2, 0.7, 0.7]) == pytest.approx((1 + 0.5) / 2)
    assert metrics.roc_auc([1, 0], [0.9, 0.1]) == 1.0
    assert metrics.roc_auc([1, 0], [0.1, 0.9]) == 0.0


def test_threshold_is_inclusive():
    assert metrics.predict_labels([0.5, 0.49999], 0.5).tolist() == [1, 0]
    assert metrics.binary_metrics([1, 0], [0.5, 0.5], threshold=0.5)["confusion_matrix"] == [[0, 1], [0, 1]]


def test_undefined_ratios_are_nan():
    only_normal = [0, 0, 0]
    assert math.isnan(metrics.sensitivity(only_normal, [0, 1, 0]))
    assert metrics.specificity(only_normal, [0, 1, 0]) == pytest.approx(2 / 3)
    assert math.isnan(metrics.precision([0, 1], [0, 0]))
    assert math.isnan(metrics.f1_score([0, 0], [0, 0]))
    assert math.isnan(metrics.roc_auc(only_normal, [0.1, 0.5, 0.9]))
    assert math.isnan(metrics.roc_auc([1, 1], [0.1, 0.5]))
    assert np.isnan(metrics.per_class_accuracy([1, 1], [1, 0])[0])


def test_binary_confusion_matrix_is_2x2_with_one_class():
    assert metrics.confusion_matrix([1, 1], [1, 1]).tolist() == [[0, 0], [0, 2]]
    assert metrics.confusion_matrix([0, 2, 1], [0, 1, 1]).shape == (3, 3)


def test_majority_class_baseline():
    base = metrics.majority_class_baseline([1, 1, 1, 0])
    assert base == {"class": 1, "accuracy": 0.75, "sensitivity": 1.0, "specificity": 0.0, "auc": 0.5}
    assert metrics.majority_class_baseline([0, 1])["class"] == 0  # a tie goes to the smaller index
    assert metrics.majority_class_baseline([2, 2, 0], num_classes=3) == {"class": 2, "accuracy": pytest.approx(2 / 3)}


def test_threshold_for_sensitivity():
    labels = [1] * 10 + [0] * 4
    probs = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.35, 0.55, 0.05]
    t = metrics.threshold_for_sensitivity(labels, probs, 0.9)
    assert t == pytest.approx(0.3)  # the 9th highest PM score: 9 of 10 caught
    pred = metrics.predict_labels(probs, t)
    assert metrics.sensitivity(labels, pred) >= 0.9
    # It is the highest such threshold: the next PM score up loses the target.
    assert metrics.sensitivity(labels, metrics.predict_labels(probs, np.nextafter(t, 1))) < 0.9
    assert metrics.threshold_for_sensitivity(labels, probs, 1.0) == pytest.approx(0.2)


def test_threshold_for_specificity_and_youden():
    labels = [0, 0, 0, 0, 1, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.9]
    t = metrics.threshold_for_specificity(labels, probs, 0.75)
    pred = metrics.predict_labels(probs, t)
    assert metrics.specificity(labels, pred) == pytest.approx(0.75)
    assert metrics.sensitivity(labels, pred) == 1.0
    assert 0.3 < t <= 0.5
    # Youden: at 0.5 sens 1, spec 0.75 (J 0.75); at 0.7 sens 2/3, spec 1 (J 0.667).
    assert metrics.youden_threshold(labels, probs) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.accuracy([0, 1], [0]), "1 values but there are 2 labels"),
        (lambda: metrics.roc_auc([], []), "empty"),
        (lambda: metrics.roc_auc([0, 2], [0.1, 0.2]), "< 2, got 2"),
        (lambda: metrics.binary_metrics([0, 1], [0.1, 1.5]), "[0, 1], got 1.5"),
        (lambda: metrics.binary_metrics([0, 1], [0.1, float("nan")]), "non-finite"),
        (lambda: metrics.accuracy([0, -1], [0, 1]), ">= 0, got -1"),
        (lambda: metrics.accuracy([0, 0.5], [0, 1]), "whole class indices"),
        (lambda: metrics.threshold_for_sensitivity([0, 0], [0.1, 0.2], 0.9), "at least one PM image"),
        (lambda: metrics.youden_threshold([1, 1], [0.1, 0.2]), "both"),
    ],
)
def test_bad_input_is_a_data_error_naming_the_value(call, message):
    with pytest.raises(DataError, match=None) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize("threshold", [-0.1, 1.1, "high"])
def test_bad_threshold_or_target(threshold):
    with pytest.raises(ConfigError):
        metrics.predict_labels([0.5], threshold)
    with pytest.raises(ConfigError):
        metrics.threshold_for_sensitivity([1, 0], [0.5, 0.2], threshold if threshold != -0.1 else 0)


def test_labels_as_course_column_vectors():
    # The course readers yield float32 labels of shape [N, 1] (SPEC 1.3).
    labels = np.array([[0.0], [1.0], [1.0]], dtype=np.float32)
    assert metrics.binary_metrics(labels, [0.2, 0.7, 0.4])["accuracy"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- against scikit-learn


def _compare_with_sklearn(labels, probs, threshold):
    labels, probs = np.asarray(labels), np.asarray(probs)
    ours = metrics.binary_metrics(labels, probs, threshold)
    pred = (probs >= threshold).astype(int)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(labels, pred))
    assert ours["confusion_matrix"] == sk.confusion_matrix(labels, pred, labels=[0, 1]).tolist()
    has_pos, has_neg = labels.max() == 1, labels.min() == 0
    if has_pos:
        assert ours["sensitivity"] == pytest.approx(sk.recall_score(labels, pred, zero_division=0))
    else:
        assert math.isnan(ours["sensitivity"])
    if has_neg:
        assert ours["specificity"] == pytest.approx(sk.recall_score(labels, pred, pos_label=0, zero_division=0))
    if pred.max() == 1:
        assert ours["precision"] == pytest.approx(sk.precision_score(labels, pred, zero_division=0))
    else:
        assert math.isnan(ours["precision"])
    if has_pos or pred.max() == 1:
        assert ours["f1"] == pytest.approx(sk.f1_score(labels, pred, zero_division=0))
    if has_pos and has_neg:
        assert ours["auc"] == pytest.approx(sk.roc_auc_score(labels, probs), abs=1e-12)
        fpr, tpr, thr = metrics.roc_curve(labels, probs)
        sk_fpr, sk_tpr, sk_thr = sk.roc_curve(labels, probs, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)
        np.testing.assert_allclose(thr[1:], sk_thr[1:])
    else:
        assert math.isnan(ours["auc"])


def test_matches_sklearn_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 200))
        labels = rng.integers(0, 2, n)
        probs = np.round(rng.random(n), int(rng.integers(1, 4)))  # coarse rounding makes ties
        _compare_with_sklearn(labels, probs, float(rng.choice([0.3, 0.5, 0.7])))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]) | st.floats(0, 1)),
        min_size=1,
        max_size=60,
    ),
    st.floats(0, 1),
)
def test_matches_sklearn_hypothesis(pairs, threshold):
    labels = [a for a, _ in pairs]
    probs = [b for _, b in pairs]
    _compare_with_sklearn(labels, probs, threshold)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=50))
def test_multiclass_confusion_and_per_class_accuracy_match_sklearn(pairs):
    labels = np.array([a for a, _ in pairs])
    preds = np.array([b for _, b in pairs])
    cm = metrics.confusion_matrix(labels, preds, num_classes=5)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(labels, preds, labels=range(5)))
    per_class = metrics.per_class_accuracy(labels, preds, num_classes=5)
    for k in range(5):
        mask = labels == k
        if mask.any():
            assert per_class[k] == pytest.approx(np.mean(preds[mask] == k))
        else:
            assert np.isnan(per_class[k])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=40),
    st.integers(0, 2**31 - 1),
    st.floats(0.05, 1.0),
)
def test_threshold_for_sensitivity_is_the_best_feasible(probs, seed, target):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, len(probs))
    labels[0] = 1
    probs = np.asarray(probs)
    t = metrics.threshold_for_sensitivity(labels, probs, target)
    sens = metrics.sensitivity(labels, probs >= t)
    assert sens >= target - 1e-12
    higher = probs[probs > t]
    if higher.size:  # any higher candidate threshold misses the target
        assert metrics.sensitivity(labels, probs >= higher.min()) < target - 1e-12
