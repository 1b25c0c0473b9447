"""Are the PM probabilities honest?  Calibration measured and, where it helps, corrected.

A clinician reads "PM probability 0.80" as "eight in ten such eyes have PM".  Networks trained with
cross-entropy are often over-confident, more so on a small data set, so the project measures it:

* :func:`brier_score` - the mean squared distance between probability and outcome (0 is perfect;
  always answering 0.5 scores 0.25);
* :func:`reliability` and :func:`expected_calibration_error` - the probabilities cut into equal-width
  bins; in each, the mean probability against the share of PM eyes, and the images-weighted mean of
  their gaps (ECE; Guo et al., "On Calibration of Modern Neural Networks", ICML 2017);
* :func:`fit_temperature` - temperature scaling (the same paper): every logit divided by one number
  ``T`` fitted on the validation split, ``p = sigmoid(logit / T)``.  It changes no decision order (the
  ranking and so the AUC stay), only how sure the probabilities sound.

With a validation AUC near 1 the split is almost separable, and a plain maximum-likelihood fit then
drives ``T`` towards 0 (ever more confident, never wrong *on those images*).  So the fit is a
maximum a posteriori one with a log-normal prior on ``T`` around 1 (:data:`PRIOR_SIGMA`), and it is
*kept only where it helps*: a two-fold cross-validation on the split compares the held-out
log-likelihood with and without it, and ``kept`` is False (``T`` = 1) unless it is better.
"""

import math

import numpy as np

from paddle_palm import metrics

__all__ = [
    "PRIOR_SIGMA",
    "apply_temperature",
    "brier_score",
    "calibration_error_of",
    "expected_calibration_error",
    "fit_temperature",
    "log_loss",
    "log_odds",
    "reliability",
]

#: Standard deviation of the prior on ``log T`` (a factor of about 2.7 either way is one sigma).
PRIOR_SIGMA = 1.0

#: The range searched for ``T``.
_T_RANGE = (0.05, 20.0)

#: Below this distance from 0 or 1 a probability is treated as 0 or 1 on the log-odds scale.
_EPS = 1e-12


def log_odds(probs):
    """``log(p / (1 - p))`` of PM probabilities, with 0 and 1 clipped to ``1e-12`` of them."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _checked(labels, probs):
    y = metrics.check_binary_labels(labels)
    return y, metrics.check_probabilities(probs, y.size)


def brier_score(labels, probs):
    """Mean of ``(prob - label) ** 2`` over the images."""
    y, p = _checked(labels, probs)
    return float(np.mean((p - y) ** 2))


def log_loss(labels, probs):
    """Mean negative log-likelihood of the labels (probabilities clipped to ``1e-12`` of 0 and 1)."""
    y, p = _checked(labels, probs)
    z = log_odds(p)
    return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -z, z))))


def reliability(labels, probs, bins=10):
    """The reliability diagram's data: ``bins`` equal-width bins of the PM probability.

    Returns:
        list of dicts, one per bin: ``low``, ``high``, ``count``, ``mean_probability`` and
        ``pm_share`` (both nan for an empty bin).  The last bin includes 1.0.
    """
    y, p = _checked(labels, probs)
    if int(bins) < 1:
        raise ValueError(f"bins must be at least 1, got {bins!r}")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, int(bins) - 1)
    rows = []
    for b in range(int(bins)):
        inside = index == b
        count = int(inside.sum())
        rows.append({
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": count,
            "mean_probability": float(p[inside].mean()) if count else float("nan"),
            "pm_share": float(y[inside].mean()) if count else float("nan"),
        })
    return rows


def expected_calibration_error(labels, probs, bins=10):
    """ECE: the images-weighted mean over bins of ``|share of PM - mean probability|``."""
    return calibration_error_of(reliability(labels, probs, bins))


def calibration_error_of(rows):
    """The ECE of :func:`reliability` rows already computed."""
    n = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["pm_share"] - r["mean_probability"]) for r in rows if r["count"]) / n)


def apply_temperature(probs, temperature):
    """PM probabilities with their logits divided by ``temperature`` (1 changes nothing)."""
    t = float(temperature)
    if not t > 0 or not math.isfinite(t):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    p = np.asarray(probs, dtype=np.float64)
    if t == 1.0:
        return p
    return 1.0 / (1.0 + np.exp(-log_odds(p) / t))


def _objective(u, z, y, prior_sigma):
    """Negative log-posterior of ``log T = u`` (sum over images, plus the prior)."""
    scaled = z * math.exp(-u)
    nll = np.sum(np.logaddexp(0.0, np.where(y == 1, -scaled, scaled)))
    return float(nll + 0.5 * (u / prior_sigma) ** 2)


def _fit_log_t(z, y, prior_sigma):
    """``log T`` minimising :func:`_objective`: a grid, then golden-section search around its best."""
    lo, hi = math.log(_T_RANGE[0]), math.log(_T_RANGE[1])
    grid = np.linspace(lo, hi, 121)
    values = [_objective(u, z, y, prior_sigma) for u in grid]
    i = int(np.argmin(values))
    a, b = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _objective(c, z, y, prior_sigma), _objective(d, z, y, prior_sigma)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _objective(c, z, y, prior_sigma)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _objective(d, z, y, prior_sigma)
    return (a + b) / 2.0


def _two_folds(y, seed=0):
    """A stratified split of the indices into two halves (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(y.size, dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold[idx[::2]] = True
    return fold


def fit_temperature(labels, probs, prior_sigma=PRIOR_SIGMA):
    """Fit temperature scaling on a validation split and say whether it helps.

    Args:
        labels: true binary labels (1 = PM).
        probs: the model's PM probabilities on the same images.
        prior_sigma: standard deviation of the normal prior on ``log T``.

    Returns:
        dict: ``temperature`` (the fitted value when ``kept``, else 1.0), ``fitted`` (the fitted
        value either way), ``kept``, ``log_loss_before`` / ``log_loss_after`` (on the whole split)
        and ``cv_log_loss_before`` / ``cv_log_loss_after`` (held-out, two folds).
    """
    y, p = _checked(labels, probs)
    z = log_odds(p)
    fitted = math.exp(_fit_log_t(z, y, prior_sigma))
    fold = _two_folds(y)
    held_out_before, held_out_after = 0.0, 0.0
    if fold.any() and (~fold).any():
        for train in (fold, ~fold):
            t = math.exp(_fit_log_t(z[train], y[train], prior_sigma))
            test = ~train
            held_out_before += log_loss(y[test], p[test]) * test.sum()
            held_out_after += log_loss(y[test], apply_temperature(p[test], t)) * test.sum()
        held_out_before, held_out_after = held_out_before / y.size, held_out_after / y.size
    kept = bool(held_out_after < held_out_before)
    return {
        "temperature": fitted if kept else 1.0,
        "fitted": fitted,
        "kept": kept,
        "log_loss_before": log_loss(y, p),
        "log_loss_after": log_loss(y, apply_temperature(p, fitted)),
        "cv_log_loss_before": float(held_out_before),
        "cv_log_loss_after": float(held_out_after),
    }
