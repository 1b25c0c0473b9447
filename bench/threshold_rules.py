#!/usr/bin/env python
"""Which threshold rule holds up on eyes it has not seen?  Cross-validate the rules of
``--threshold-rule`` on the scores of finished runs.

A rule chosen and scored on the same hundred validation eyes always looks good: the threshold is
fitted to those very scores.  This script asks what the rule does for *other* eyes.  For each run
(an evaluation's ``predictions.csv``, with the true labels) it cross-validates: the eyes are dealt
into ``--folds`` stratified folds, and each fold is decided at the threshold the rule chooses on the
other folds, so every eye is decided by a threshold that never saw it.  The pooled decisions give a
sensitivity, specificity and accuracy on "unseen" eyes; this is repeated ``--repeats`` times with
other deals.  The report has their means, and how often the pooled decisions meet the screening
targets (sensitivity and specificity both at least ``--target``).

The network's scores are the same in every deal, so this measures only the threshold's part of the
error: how far a rule's choice moves with the eyes it sees.  A rule fitted on nine tenths of the
eyes is a little coarser than on all of them (``sensitivity:0.98`` on 52 PM eyes allows one miss,
as on 58), so compare the rules with each other, not with the in-sample figures.

Examples::

    python bench/threshold_rules.py runs/seeds/seed0 runs/seeds/seed1 runs/seeds/seed2
    python bench/threshold_rules.py runs/seed0/eval/predictions.csv --rules youden sensitivity:0.98
    python bench/threshold_rules.py --quick                      # smoke run on made-up scores

A folder argument means its ``predictions.csv``, or the one in its ``eval-validation-plain``
sub-folder (where ``bench/seed_study.py --runs-dir`` leaves it).  Results: a Markdown table on
standard output and ``threshold_rules-<stamp>.json``/``.md`` plus ``threshold_rules-latest.*``
under ``--out-dir`` (``bench/results``).
"""

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_results  # noqa: E402
from paddle_palm import metrics  # noqa: E402
from paddle_palm.operating_point import choose_threshold, parse_threshold_rule  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_RULES = ("fixed:0.5", "youden", "sensitivity:0.95", "sensitivity:0.98", "sensitivity:1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="predictions.csv files of evaluations with labels, or folders holding one")
    parser.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES), metavar="RULE",
                        help="threshold rules to compare (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=10, help="folds of the cross-validation (default 10)")
    parser.add_argument("--repeats", type=int, default=100, help="deals into folds per run (default 100)")
    parser.add_argument("--target", type=float, default=0.97,
                        help="screening target for sensitivity and specificity on the unseen eyes (default 0.97)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the deals into folds (default 0)")
    parser.add_argument("--quick", action="store_true", help="smoke run on made-up scores")
    parser.add_argument("--out-dir", default=str(RESULTS), help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    if not args.runs and not args.quick:
        parser.error("give at least one RUN (or --quick)")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}")
    for rule in args.rules:
        try:
            parse_threshold_rule(rule)
        except ValueError as exc:  # ConfigError
            parser.error(str(exc))
    return args


def predictions_file(path):
    """The ``predictions.csv`` a RUN argument names."""
    path = Path(path)
    for candidate in (path, path / "predictions.csv", path / "eval-validation-plain" / "predictions.csv"):
        if candidate.is_file():
            return candidate
    sys.exit(f"error: {path}: no predictions.csv there (expected an evaluation's predictions.csv with true_label)")


def short_names(paths):
    """The RUN arguments without the folder they share (``runs/seed0``, ``runs/seed1`` -> ``seed0``, ``seed1``)."""
    if len(paths) < 2:
        return [str(p) for p in paths]
    common = os.path.commonpath([os.path.abspath(p) for p in paths])
    return [os.path.relpath(os.path.abspath(p), common) for p in paths]


def read_scores(path):
    """``(labels, probabilities)`` from an evaluation's ``predictions.csv``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "true_label" not in rows[0] or "pm_probability" not in rows[0]:
        sys.exit(f"error: {path}: expected the columns pm_probability and true_label (an evaluation with labels)")
    try:
        labels = np.array([int(r["true_label"]) for r in rows])
        probs = np.array([float(r["pm_probability"]) for r in rows])
    except (TypeError, ValueError) as exc:
        sys.exit(f"error: {path}: expected integer true_label and numeric pm_probability values ({exc})")
    if not set(labels.tolist()) <= {0, 1} or not np.all((probs >= 0) & (probs <= 1)):
        sys.exit(f"error: {path}: expected true_label 0 or 1 and pm_probability in [0, 1]")
    return labels, probs


def score_at(labels, probs, threshold):
    """Sensitivity, specificity and accuracy of the decision ``probs >= threshold`` (one or one per eye)."""
    pred = (probs >= threshold).astype(np.int64)
    return metrics.sensitivity(labels, pred), metrics.specificity(labels, pred), metrics.accuracy(labels, pred)


def deal(labels, folds, rng):
    """A stratified deal of the eyes into ``folds`` folds: each eye's fold number."""
    fold = np.empty(labels.size, dtype=int)
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold[members] = np.arange(members.size) % folds
    return fold


def cross_validate(labels, probs, rules, folds, repeats, target, seed):
    """Per rule: the in-sample figures and the mean figures on unseen eyes (see the docstring)."""
    rng = np.random.default_rng(seed)
    deals = [deal(labels, folds, rng) for _ in range(repeats)]
    out = {}
    for rule in rules:
        threshold = choose_threshold(rule, labels, probs)
        sens, spec, acc = score_at(labels, probs, threshold)
        unseen = []
        for fold in deals:
            thresholds = np.empty(labels.size)
            for k in range(folds):
                fit = fold != k
                thresholds[~fit] = choose_threshold(rule, labels[fit], probs[fit])
            unseen.append(score_at(labels, probs, thresholds))
        unseen = np.array(unseen)
        out[rule] = {"threshold": threshold, "sensitivity": sens, "specificity": spec, "accuracy": acc,
                     "unseen_sensitivity": float(unseen[:, 0].mean()),
                     "unseen_specificity": float(unseen[:, 1].mean()),
                     "unseen_accuracy": float(unseen[:, 2].mean()),
                     "unseen_meets_target": float(((unseen[:, 0] >= target) & (unseen[:, 1] >= target)).mean())}
    return out


def made_up_runs(count=3, seed=0):
    """Scores like a good screening network's: 58 PM and 42 other eyes, a few PM eyes scoring low."""
    rng = np.random.default_rng(seed)
    runs = {}
    for k in range(count):
        labels = np.r_[np.ones(58, int), np.zeros(42, int)]
        logits = np.where(labels == 1, rng.normal(3.0, 1.6, labels.size), rng.normal(-3.5, 1.4, labels.size))
        runs[f"made-up {k}"] = (labels, 1.0 / (1.0 + np.exp(-logits)))
    return runs


FIGURES = ("unseen_sensitivity", "unseen_specificity", "unseen_accuracy", "unseen_meets_target")


def markdown(report):
    target = report["target"]
    lines = [f"Threshold rules cross-validated on the validation eyes ({report['folds']} folds, {report['repeats']} "
             f"deals per run; {report['when']})", "",
             "| run | rule | threshold | sensitivity | specificity | accuracy | unseen sensitivity | "
             f"unseen specificity | unseen accuracy | unseen meets {target:g}/{target:g} |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, rules in report["runs"].items():
        for rule, r in rules.items():
            lines.append(f"| {name} | {rule} | {r['threshold']:.4f} | {r['sensitivity']:.4f} | {r['specificity']:.4f} | "
                         f"{r['accuracy']:.4f} | {r['unseen_sensitivity']:.4f} | {r['unseen_specificity']:.4f} | "
                         f"{r['unseen_accuracy']:.4f} | {r['unseen_meets_target']:.2f} |")
    lines += ["", "Mean over runs:", "",
              f"| rule | unseen sensitivity | unseen specificity | unseen accuracy | meets {target:g}/{target:g} |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for rule, m in report["mean"].items():
        lines.append(f"| {rule} | " + " | ".join(f"{m[f]:.4f}" for f in FIGURES[:3]) + f" | {m[FIGURES[3]]:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        runs = made_up_runs()
        args.repeats = min(args.repeats, 20)
    else:
        runs = {name: read_scores(predictions_file(p)) for name, p in zip(short_names(args.runs), args.runs)}
    results = {name: cross_validate(labels, probs, args.rules, args.folds, args.repeats, args.target, args.seed)
               for name, (labels, probs) in runs.items()}
    mean = {rule: {f: statistics.fmean(results[name][rule][f] for name in results) for f in FIGURES}
            for rule in args.rules}
    report = {"runs": results, "mean": mean, "rules": args.rules, "folds": args.folds, "repeats": args.repeats, "target": args.target,
              "seed": args.seed, "when": time.strftime("%Y-%m-%d %H:%M")}
    written = write_results(args.out_dir, "threshold_rules-", report, markdown(report), indent=2)
    print(markdown(report) + f"\n\nwrote {written}")


if __name__ == "__main__":
    main()
