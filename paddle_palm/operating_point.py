"""The operating point of a screening model: its decision threshold, how sure the figures at that
threshold are, and the "refer to a specialist" band around it.

A network that ranks PM eyes almost perfectly (validation AUC near 1) can still miss PM eyes at a
fixed threshold of 0.5: its scores for unseen eyes sit a little lower than for the eyes it has
seen.  So the threshold is part of the model: training chooses it on the validation split by a
stated rule, the run and the export record it, and evaluation and prediction use it by default.

Rules (``--threshold-rule``):

* ``fixed:T`` - the threshold ``T`` itself (``fixed:0.5`` is the course's top-1 rule);
* ``youden`` - the largest sensitivity + specificity - 1 (Youden's J);
* ``sensitivity:S`` - the best specificity among thresholds catching at least ``S`` of the PM eyes
  (a screening programme fixes how many PM eyes it may miss);
* ``specificity:S`` - the best sensitivity among thresholds leaving at least ``S`` of the other eyes
  alone.

On the validation split every threshold between two neighbouring scores gives the same counts, so a
rule picks an *interval* of equally good thresholds, not a point.  The edge of that interval (the
score of the last PM eye caught, which is what ``metrics.youden_threshold`` returns) is the worst
choice for unseen eyes: any PM eye scoring a hair lower is missed.  Here the threshold is the middle
of the interval on the log-odds scale (the scale a logit lives on), which keeps the validation
figures and leaves the widest margin on both sides.  Ties between intervals go to the one with the
higher sensitivity (a missed PM eye costs more than a second look).

Figures on a validation split of a hundred eyes are estimates; :func:`wilson_interval` gives the
95% Wilson score interval of each proportion, and the report shows the number of eyes behind it.
"""

import math
from dataclasses import dataclass

import numpy as np

from paddle_palm import calibration, metrics
from paddle_palm.calibration import log_odds
from paddle_palm.errors import ConfigError, DataError

__all__ = [
    "RULE_HELP",
    "ThresholdRule",
    "choose_threshold",
    "coverage_table",
    "decide",
    "describe_operating_point",
    "fit_operating_point",
    "operating_point",
    "operating_point_record",
    "parse_refer_band",
    "parse_threshold_rule",
    "wilson_interval",
]

#: What ``--threshold-rule`` accepts, for help texts and error messages.
RULE_HELP = "youden, sensitivity:S, specificity:S (S in (0, 1]) or fixed:T (T in [0, 1])"

#: The bands of :func:`coverage_table` when none are given.
DEFAULT_BANDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed ``--threshold-rule``: ``kind`` is ``fixed``, ``youden``, ``sensitivity`` or
    ``specificity``; ``value`` the number after the colon (None for ``youden``)."""

    kind: str
    value: float = None

    def __str__(self):
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"


def parse_threshold_rule(text):
    """``text`` (``"youden"``, ``"sensitivity:0.98"``, ...) as a :class:`ThresholdRule`.

    Raises:
        ConfigError: a rule that is not one of :data:`RULE_HELP`.
    """
    if isinstance(text, ThresholdRule):
        return text
    raw = str(text).strip().lower()
    kind, _, number = raw.partition(":")
    if kind == "youden" and not number:
        return ThresholdRule("youden")
    if kind in ("fixed", "sensitivity", "specificity") and number:
        try:
            value = float(number)
        except ValueError:
            value = float("nan")
        low_ok = value >= 0.0 if kind == "fixed" else value > 0.0
        if low_ok and value <= 1.0:
            return ThresholdRule(kind, value)
    raise ConfigError(f"threshold rule {text!r} is not valid; expected {RULE_HELP}")


def _sigmoid(z):
    return float(1.0 / (1.0 + math.exp(-z))) if z >= 0 else float(math.exp(z) / (1.0 + math.exp(z)))


def _middle(low, high):
    """The middle of the probability interval ``(low, high]`` on the log-odds scale."""
    if high <= low:
        return float(high)
    z = (float(log_odds(low)) + float(log_odds(high))) / 2.0
    return min(float(high), max(_sigmoid(z), float(np.nextafter(low, 1.0))))


def _candidates(labels, probs):
    """Every distinct decision on these data: ``(low, high, tp, tn)`` per interval of thresholds.

    The distinct scores ``u_0 < ... < u_{m-1}`` cut [0, 1] into intervals; any threshold in
    ``(u_{j-1}, u_j]`` predicts PM for exactly the scores ``>= u_j``.  Row ``j = m`` is "nothing
    is PM" (thresholds above the highest score).
    """
    scores = np.unique(probs)
    highs = np.r_[scores, 1.0]
    lows = np.r_[0.0, scores]
    pos = np.sort(probs[labels == 1])
    neg = np.sort(probs[labels == 0])
    tp = pos.size - np.searchsorted(pos, highs, side="left")  # PM scores >= high
    tn = np.searchsorted(neg, highs, side="left")  # other scores < high
    if scores[-1] >= 1.0:  # a score of exactly 1 leaves no room above it: drop the empty interval
        highs, lows, tp, tn = highs[:-1], lows[:-1], tp[:-1], tn[:-1]
    return lows, highs, tp, tn


def choose_threshold(rule, labels, probs):
    """The threshold ``rule`` picks on ``labels`` / ``probs`` (see the module docstring).

    Args:
        rule: a :class:`ThresholdRule` or its text.
        labels: true binary labels (1 = PM); both classes are needed unless the rule is ``fixed``.
        probs: PM probabilities.

    Returns:
        float: the threshold, in [0, 1].

    Raises:
        ConfigError: a bad rule; DataError: bad labels or probabilities, or a class the rule needs
        is absent.
    """
    rule = parse_threshold_rule(rule)
    if rule.kind == "fixed":
        return rule.value
    y = metrics.check_binary_labels(labels)
    p = metrics.check_probabilities(probs, y.size)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"the threshold rule {rule} needs both PM and non-PM images in the validation split; "
                        f"it has {n_pos} PM and {n_neg} non-PM")
    lows, highs, tp, tn = _candidates(y, p)
    sens, spec = tp / n_pos, tn / n_neg
    if rule.kind == "youden":
        goal, ok = sens + spec, np.ones_like(sens, dtype=bool)
    elif rule.kind == "sensitivity":
        goal, ok = spec, sens >= rule.value - 1e-12
    else:
        goal, ok = sens, spec >= rule.value - 1e-12
    # Best goal among the allowed intervals; ties go to the higher sensitivity, then the lower threshold.
    goal = np.where(ok, np.round(goal, 12), -np.inf)  # rounded: equal ratios of different counts tie
    order = np.lexsort((highs, -sens, -goal))
    best = int(order[0])
    return _middle(lows[best], highs[best])


def wilson_interval(successes, total, z=1.959963984540054):
    """The Wilson score interval of the proportion ``successes / total`` (95% by default).

    Returns:
        (low, high): floats in [0, 1]; ``(nan, nan)`` when ``total`` is 0.
    """
    k, n = int(successes), int(total)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise DataError(f"wilson_interval: {k} successes out of {n} is not a proportion")
    phat = k / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (rounding would leave 1 - 1e-16)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def operating_point(labels, probs, threshold, rule=None):
    """Sensitivity and specificity at ``threshold`` with their Wilson intervals and counts.

    Returns:
        dict: ``rule`` (text or None), ``threshold``, ``n``, ``n_pm``, ``n_non_pm``,
        ``sensitivity`` / ``specificity`` (floats, nan without their class),
        ``sensitivity_ci`` / ``specificity_ci`` (``[low, high]``), ``accuracy``.
    """
    threshold = metrics.check_threshold(threshold)
    y = metrics.check_binary_labels(labels)
    p = metrics.check_probabilities(probs, y.size)
    pred = p >= threshold
    n_pm, n_non = int(y.sum()), int(y.size - y.sum())
    tp, tn = int(np.sum(pred & (y == 1))), int(np.sum(~pred & (y == 0)))
    return {
        "rule": None if rule is None else str(parse_threshold_rule(rule)),
        "threshold": float(threshold),
        "n": int(y.size),
        "n_pm": n_pm,
        "n_non_pm": n_non,
        "sensitivity": tp / n_pm if n_pm else float("nan"),
        "sensitivity_ci": list(wilson_interval(tp, n_pm)),
        "specificity": tn / n_non if n_non else float("nan"),
        "specificity_ci": list(wilson_interval(tn, n_non)),
        "accuracy": (tp + tn) / y.size,
    }


# ----------------------------------------------------------------------------- the refer band


def parse_refer_band(value):
    """``--refer-band W`` as a float in [0, 0.5): half the width of the band around the threshold."""
    try:
        band = float(value)
    except (TypeError, ValueError):
        band = float("nan")
    if not 0.0 <= band < 0.5:
        raise ConfigError(f"--refer-band must be a number in [0, 0.5) (how far from the threshold a PM "
                          f"probability still counts as unsure), got {value!r}")
    return band


def decide(probs, threshold, band=0.0):
    """The decision for each PM probability: 1 (PM), 0 (not PM) or -1 (refer to a specialist).

    An image is referred when its probability lies in ``[threshold - band, threshold + band)``;
    with ``band`` 0 every image is decided, exactly as ``prob >= threshold``.
    """
    threshold = metrics.check_threshold(threshold)
    band = parse_refer_band(band)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    out = (p >= threshold).astype(np.int64)
    if band > 0:
        out[(p >= threshold - band) & (p < threshold + band)] = -1
    return out


def coverage_table(labels, probs, threshold, bands=DEFAULT_BANDS):
    """How accuracy on the decided images grows as a wider band refers more of them.

    Returns:
        list of dicts, one per band: ``band``, ``decided``, ``referred``, ``coverage`` (share
        decided), ``accuracy`` / ``sensitivity`` / ``specificity`` on the decided images (nan when
        none or no image of the class is decided), ``missed_pm`` (PM images decided "not PM").
    """
    y = metrics.check_binary_labels(labels)
    p = metrics.check_probabilities(probs, y.size)
    rows = []
    for band in bands:
        d = decide(p, threshold, band)
        kept = d >= 0
        yk, dk = y[kept], d[kept]
        n_pm, n_non = int(np.sum(yk == 1)), int(np.sum(yk == 0))
        rows.append({
            "band": float(band),
            "decided": int(kept.sum()),
            "referred": int((~kept).sum()),
            "coverage": float(kept.mean()),
            "accuracy": float(np.mean(yk == dk)) if kept.any() else float("nan"),
            "sensitivity": float(np.sum((dk == 1) & (yk == 1)) / n_pm) if n_pm else float("nan"),
            "specificity": float(np.sum((dk == 0) & (yk == 0)) / n_non) if n_non else float("nan"),
            "missed_pm": int(np.sum((dk == 0) & (yk == 1))),
        })
    return rows


def fit_operating_point(labels, probs, rule="youden", calibrate=True):
    """Everything a trained model needs to decide: fitted on its validation split.

    First the temperature (:func:`paddle_palm.calibration.fit_temperature`, kept only where it
    helps; ``calibrate=False`` skips it), then the threshold that ``rule`` picks on the calibrated
    probabilities, then the figures at that threshold with their intervals.

    Returns:
        dict (JSON-ready): ``rule``, ``threshold``, ``temperature`` and the
        :func:`operating_point` figures, plus ``calibration`` (the fit's details, or None) and
        ``brier`` / ``ece`` before and after.
    """
    rule = parse_threshold_rule(rule)
    y = metrics.check_binary_labels(labels)
    p = metrics.check_probabilities(probs, y.size)
    fit = calibration.fit_temperature(y, p) if calibrate else None
    temperature = fit["temperature"] if fit else 1.0
    calibrated = calibration.apply_temperature(p, temperature)
    threshold = choose_threshold(rule, y, calibrated)
    return {
        **operating_point(y, calibrated, threshold, rule=rule),
        "temperature": float(temperature),
        "calibration": fit,
        "brier": calibration.brier_score(y, p),
        "brier_calibrated": calibration.brier_score(y, calibrated),
        "ece": calibration.expected_calibration_error(y, p),
        "ece_calibrated": calibration.expected_calibration_error(y, calibrated),
    }


def operating_point_record(fitted):
    """A :func:`fit_operating_point` result as the flat record a run and an export keep.

    NaN (a figure without its class) becomes None, so the record is valid JSON.
    """
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    keys = ("rule", "threshold", "temperature", "n", "n_pm", "n_non_pm", "sensitivity", "sensitivity_ci",
            "specificity", "specificity_ci", "accuracy", "brier", "brier_calibrated", "ece", "ece_calibrated")
    record = {key: clean(fitted.get(key)) for key in keys}
    fit = fitted.get("calibration")
    record["temperature_fitted"] = None if fit is None else clean(fit["fitted"])
    record["temperature_kept"] = None if fit is None else bool(fit["kept"])
    return record


def _rate(name, value, ci, count, what):
    if value is None:
        return f"{name} - (no {what})"
    return f"{name} {value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({count} {what})"


def describe_operating_point(record):
    """One line for a log: the rule, the threshold, and the figures with their 95% intervals."""
    temperature = record.get("temperature", 1.0)
    if record.get("temperature_kept") is None:
        calibration = "no calibration"
    elif record["temperature_kept"]:
        calibration = f"temperature {temperature:.3g} (fitted; it helped)"
    else:
        calibration = f"temperature 1 (the fitted {record['temperature_fitted']:.3g} did not help)"
    return (f"operating point ({record['rule']} on {record['n']} validation images): threshold "
            f"{record['threshold']:.4f}, " + _rate("sensitivity", record["sensitivity"], record["sensitivity_ci"],
                                                   record["n_pm"], "PM") + ", "
            + _rate("specificity", record["specificity"], record["specificity_ci"], record["n_non_pm"], "other")
            + f"; {calibration}")
