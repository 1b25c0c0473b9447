"""Threshold rules, Wilson intervals, the refer band and calibration, on small synthetic scores."""

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from paddle_palm import calibration, metrics
from paddle_palm.calibration import log_odds
from paddle_palm.errors import ConfigError, DataError
from paddle_palm.operating_point import (
    ThresholdRule,
    choose_threshold,
    coverage_table,
    decide,
    operating_point,
    parse_refer_band,
    parse_threshold_rule,
    wilson_interval,
)


def scores(n_pm=40, n_other=60, shift=2.5, seed=0):
    """Labels and PM probabilities of two overlapping logit normal groups."""
    rng = np.random.default_rng(seed)
    z = np.r_[rng.normal(shift / 2, 1.0, n_pm), rng.normal(-shift / 2, 1.0, n_other)]
    y = np.r_[np.ones(n_pm, np.int64), np.zeros(n_other, np.int64)]
    return y, 1.0 / (1.0 + np.exp(-z))


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize("text, kind, value", [
    ("youden", "youden", None), ("Youden", "youden", None), ("sensitivity:0.98", "sensitivity", 0.98),
    ("specificity:1", "specificity", 1.0), ("fixed:0.5", "fixed", 0.5), ("fixed:0", "fixed", 0.0),
])
def test_rules_parse(text, kind, value):
    rule = parse_threshold_rule(text)
    assert (rule.kind, rule.value) == (kind, value)
    assert parse_threshold_rule(str(rule)) == rule


@pytest.mark.parametrize("text", ["", "youden:0.5", "sensitivity", "sensitivity:0", "sensitivity:1.2",
                                  "fixed:-0.1", "fixed:nan", "roc", "specificity:abc"])
def test_bad_rules_say_what_is_expected(text):
    with pytest.raises(ConfigError, match="expected youden, sensitivity:S"):
        parse_threshold_rule(text)


def _rates(y, p, t):
    pred = p >= t
    return np.mean(pred[y == 1]), np.mean(~pred[y == 0])


def test_fixed_rule_is_the_number():
    y, p = scores()
    assert choose_threshold("fixed:0.37", y, p) == 0.37


@pytest.mark.parametrize("seed", range(5))
def test_youden_reaches_the_best_j_of_any_threshold(seed):
    y, p = scores(seed=seed)
    t = choose_threshold("youden", y, p)
    best = max(sum(_rates(y, p, c)) for c in np.r_[np.unique(p), 1.0])
    assert sum(_rates(y, p, t)) == pytest.approx(best)
    # the same J as the edge threshold of metrics.youden_threshold, never above it
    edge = metrics.youden_threshold(y, p)
    assert sum(_rates(y, p, edge)) == pytest.approx(best) and t <= edge


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_sensitivity_rule_meets_its_target_with_the_best_specificity(target):
    y, p = scores(seed=3)
    t = choose_threshold(f"sensitivity:{target}", y, p)
    sens, spec = _rates(y, p, t)
    assert sens >= target - 1e-12
    for c in np.r_[np.unique(p), 1.0]:
        s, q = _rates(y, p, c)
        if s >= target - 1e-12:
            assert q <= spec + 1e-12


@pytest.mark.parametrize("target", [0.8, 0.95, 1.0])
def test_specificity_rule_meets_its_target_with_the_best_sensitivity(target):
    y, p = scores(seed=4)
    t = choose_threshold(f"specificity:{target}", y, p)
    sens, spec = _rates(y, p, t)
    assert spec >= target - 1e-12
    assert all(s <= sens + 1e-12 for s, q in (_rates(y, p, c) for c in np.r_[np.unique(p), 1.0]) if q >= target)


def test_separable_scores_get_the_middle_of_the_gap_on_the_log_odds_scale():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.01, 0.02, 0.1, 0.6, 0.9, 0.99])
    t = choose_threshold("youden", y, p)
    assert t == pytest.approx(1 / (1 + math.exp(-(log_odds(0.1) + log_odds(0.6)) / 2)))
    assert 0.1 < t < 0.6
    # the sensitivity rule picks the same gap here: every PM caught, every other eye left alone
    assert choose_threshold("sensitivity:1", y, p) == pytest.approx(t)


def test_ties_go_to_the_higher_sensitivity():
    # a threshold just below the PM eye at 0.4 or just above the other eye at 0.5 give the same J
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.4, 0.5, 0.8, 0.9])
    t = choose_threshold("youden", y, p)
    assert _rates(y, p, t) == (1.0, pytest.approx(2 / 3))


def test_a_rule_needs_both_classes():
    with pytest.raises(DataError, match="both PM and non-PM"):
        choose_threshold("youden", [1, 1, 1], [0.2, 0.5, 0.9])
    assert choose_threshold("fixed:0.5", [1, 1], [0.2, 0.9]) == 0.5


def test_scores_of_exactly_zero_and_one():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.0, 0.0, 1.0, 1.0])
    t = choose_threshold("youden", y, p)
    assert 0.0 < t <= 1.0 and _rates(y, p, t) == (1.0, 1.0)


# ----------------------------------------------------------------------------- intervals


def test_wilson_interval_matches_the_formula_and_edge_cases():
    low, high = wilson_interval(45, 50)
    # reference values of the 95% Wilson score interval for 45/50
    assert (low, high) == (pytest.approx(0.7864, abs=1e-4), pytest.approx(0.9565, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(DataError):
        wilson_interval(5, 4)


def test_operating_point_counts_and_intervals():
    y, p = scores(n_pm=30, n_other=20, seed=1)
    op = operating_point(y, p, 0.5, rule="youden")
    sens, spec = _rates(y, p, 0.5)
    assert (op["n"], op["n_pm"], op["n_non_pm"], op["rule"]) == (50, 30, 20, "youden")
    assert op["sensitivity"] == pytest.approx(sens) and op["specificity"] == pytest.approx(spec)
    assert op["sensitivity_ci"][0] <= sens <= op["sensitivity_ci"][1]
    assert op["accuracy"] == pytest.approx(metrics.accuracy(y, (p >= 0.5).astype(int)))


# ----------------------------------------------------------------------------- refer band


def test_decide_refers_inside_the_band_only():
    p = np.array([0.1, 0.25, 0.29, 0.3, 0.34, 0.36, 0.9])
    assert decide(p, 0.3).tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert decide(p, 0.3, 0.05).tolist() == [0, -1, -1, -1, -1, 1, 1]


@pytest.mark.parametrize("value", [-0.1, 0.5, "wide", None])
def test_bad_refer_band(value):
    with pytest.raises(ConfigError, match="--refer-band"):
        parse_refer_band(value)


def test_coverage_table_trades_coverage_for_accuracy():
    y, p = scores(seed=2, shift=2.0)
    t = choose_threshold("youden", y, p)
    rows = coverage_table(y, p, t, bands=(0.0, 0.05, 0.1, 0.2, 0.3))
    assert rows[0]["coverage"] == 1.0 and rows[0]["referred"] == 0
    assert rows[0]["accuracy"] == pytest.approx(np.mean((p >= t) == y))
    coverage = [r["coverage"] for r in rows]
    assert coverage == sorted(coverage, reverse=True) and coverage[-1] < 1.0
    assert rows[-1]["accuracy"] > rows[0]["accuracy"]
    assert all(r["decided"] + r["referred"] == y.size for r in rows)


# ----------------------------------------------------------------------------- calibration


def test_brier_and_log_loss_agree_with_scikit_learn():
    y, p = scores(seed=5)
    assert calibration.brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    assert calibration.log_loss(y, p) == pytest.approx(log_loss(y, p))


def test_reliability_bins_and_ece():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.85, 0.95, 1.0, 0.9])
    rows = calibration.reliability(y, p, bins=10)
    assert sum(r["count"] for r in rows) == 6
    assert rows[0]["count"] == 1 and rows[9]["count"] == 3 and rows[8]["count"] == 1
    assert rows[9]["pm_share"] == pytest.approx(2 / 3)
    expected = (0.05 + 0.15 + 0.15 + abs(2 / 3 - (0.95 + 1.0 + 0.9) / 3) * 3) / 6
    assert calibration.expected_calibration_error(y, p, bins=10) == pytest.approx(expected)


def test_temperature_scaling_recovers_an_overconfident_model():
    rng = np.random.default_rng(7)
    z = rng.normal(0, 2.0, 600)
    y = (rng.random(600) < 1 / (1 + np.exp(-z))).astype(np.int64)
    overconfident = 1 / (1 + np.exp(-3.0 * z))  # logits three times too large
    fit = calibration.fit_temperature(y, overconfident)
    assert fit["kept"] and fit["temperature"] == pytest.approx(3.0, rel=0.25)
    calibrated = calibration.apply_temperature(overconfident, fit["temperature"])
    assert calibration.expected_calibration_error(y, calibrated) < calibration.expected_calibration_error(y, overconfident)
    assert metrics.roc_auc(y, calibrated) == pytest.approx(metrics.roc_auc(y, overconfident))


def test_temperature_is_not_kept_when_it_does_not_help():
    rng = np.random.default_rng(8)
    z = rng.normal(0, 2.0, 400)
    y = (rng.random(400) < 1 / (1 + np.exp(-z))).astype(np.int64)
    fit = calibration.fit_temperature(y, 1 / (1 + np.exp(-z)))  # already calibrated
    assert fit["fitted"] == pytest.approx(1.0, abs=0.25)
    if not fit["kept"]:
        assert fit["temperature"] == 1.0


def test_separable_scores_do_not_drive_the_temperature_to_zero():
    y = np.array([0] * 20 + [1] * 20)
    p = np.r_[np.linspace(0.01, 0.3, 20), np.linspace(0.7, 0.99, 20)]
    fit = calibration.fit_temperature(y, p)
    assert 0.05 < fit["fitted"] < 1.0  # sharper, but bounded by the prior


def test_apply_temperature_rejects_nonsense():
    with pytest.raises(ValueError, match="temperature"):
        calibration.apply_temperature([0.5], 0.0)
    assert calibration.apply_temperature([0.2, 0.8], 1.0).tolist() == [0.2, 0.8]
    assert isinstance(ThresholdRule("youden"), ThresholdRule)


def test_fit_operating_point_calibrates_then_chooses_the_threshold():
    rng = np.random.default_rng(9)
    z = rng.normal(0, 2.0, 300)
    y = (rng.random(300) < 1 / (1 + np.exp(-z))).astype(np.int64)
    p = 1 / (1 + np.exp(-3.0 * z))
    from paddle_palm.operating_point import fit_operating_point

    op = fit_operating_point(y, p, "sensitivity:0.9")
    assert op["rule"] == "sensitivity:0.9" and op["temperature"] > 1.5 and op["calibration"]["kept"]
    calibrated = calibration.apply_temperature(p, op["temperature"])
    assert op["threshold"] == pytest.approx(choose_threshold("sensitivity:0.9", y, calibrated))
    assert op["sensitivity"] >= 0.9 and op["ece_calibrated"] < op["ece"]
    plain = fit_operating_point(y, p, "fixed:0.5", calibrate=False)
    assert (plain["temperature"], plain["calibration"], plain["threshold"]) == (1.0, None, 0.5)
