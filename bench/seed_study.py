#!/usr/bin/env python
"""How much does the recipe's result depend on the seed?  Train it with several seeds and report
the mean and spread of accuracy, AUC, sensitivity and specificity.

One seed is one draw: the shuffling, the augmentation and the initial weights all follow it, and on a
hundred validation images one eye more or less moves accuracy by 0.01.  This script trains the
recipe once per seed exactly as a user does::

    python tools/train.py --config configs/palm_cpu.yaml --data-dir DATA --seed S --output-dir OUT/seedS

then scores each run's ``best_model`` with ``tools/eval.py`` at the run's recorded operating point
(its threshold rule's threshold, and its temperature), on the validation split of ``--data-dir`` and,
when given, on a held-out dataset folder (``--holdout-dir``, the same layout).  Extra evaluation
variants (``--variant tta=--tta``) are scored beside the plain one.  The report also says what the
seeds have in common: the AUC of their ensemble (the mean log-odds of the runs) and the images every
seed decides wrongly.  An ensemble no better than its members means the runs make the same mistakes,
which more seeds, weight averaging or a regulariser will not remove.

Results: a Markdown table on standard output and ``seed_study-<stamp>.json``/``.md`` plus
``seed_study-latest.*`` under ``--out-dir`` (``bench/results``).  With ``--runs-dir`` each evaluation
stays in its run's folder (``seedS/eval-validation-plain/``, with ``predictions.csv``), where
``bench/threshold_rules.py`` cross-validates the threshold rules on its scores.  Training on 2 CPU cores takes about
10 minutes per seed; ``--reuse`` skips seeds whose run folder already holds a finished training.

Examples::

    python bench/seed_study.py --data-dir ../shared/palm                       # seeds 0 1 2
    python bench/seed_study.py --data-dir ../shared/palm --runs-dir runs/seeds --reuse --variant tta=--tta
    python bench/seed_study.py --quick                                         # smoke run, synthetic data
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

FIGURES = ("accuracy", "auc", "sensitivity", "specificity")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="dataset folder to train and validate on (default: ../shared/palm)")
    parser.add_argument("--holdout-dir", help="another dataset folder to score the runs on (its validation split)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "palm_cpu.yaml"), help="the recipe (a train config)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to train (default 0 1 2)")
    parser.add_argument("--runs-dir", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="keep runs that already finished in --runs-dir")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS", type=_variant,
                        help="also score with extra tools/eval.py arguments, e.g. tta=--tta (repeatable)")
    parser.add_argument("--train-args", default="", type=_command_line,
                        help="extra tools/train.py arguments for every seed, split as a shell would (write "
                        "--train-args=--amp when they start with a dash; quote a value with spaces: "
                        "--train-args='-o data.augment=\"{hflip: 0.5}\"')")
    parser.add_argument("--auc-target", type=float, default=0.98,
                        help="report each seed's training time until its validation AUC first reaches this (default 0.98)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 1 epoch on synthetic data")
    parser.add_argument("--out-dir", default=str(RESULTS), help="results folder (default bench/results)")
    return parser.parse_args(argv)


def _command_line(text):
    """argparse type: arguments split as a shell would split them (the text is kept for the report)."""
    try:
        shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {exc}") from None
    return text


def _variant(text):
    """argparse type of ``--variant NAME=ARGS``: ``(NAME, [ARGS split as a shell would])``."""
    name, sep, extra = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=ARGS, e.g. tta=--tta, got {text!r}")
    return name, shlex.split(_command_line(extra))


def run(cmd, log):
    """Run a command, its output appended to ``log``; stop the study with its last lines on failure."""
    with open(log, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(map(str, cmd)) + "\n")
        out.flush()
        proc = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        tail = Path(log).read_text(encoding="utf-8").splitlines()[-5:]
        sys.exit(f"error: {' '.join(map(str, cmd[:3]))} ... failed (exit {proc.returncode}); see {log}:\n"
                 + "\n".join(tail))


def finished(run_dir):
    return (run_dir / "best_model.pdparams").is_file() and (run_dir / "history.csv").is_file() \
        and not (run_dir / "train.lock").exists()


def train_seed(args, seed, run_dir, log):
    """Train one seed (unless ``--reuse`` finds it done); return the wall time in seconds (None if reused)."""
    if args.reuse and finished(run_dir):
        return None
    cmd = [sys.executable, ROOT / "tools" / "train.py", "--config", args.config, "--data-dir", args.data_dir,
           "--seed", seed, "--output-dir", run_dir, "--no-progress", *shlex.split(args.train_args)]
    if args.quick:
        cmd += ["--epochs", "1", "--image-size", "64", "--batch-size", "4"]
    started = time.perf_counter()
    run(cmd, log)
    return time.perf_counter() - started


def time_to_auc(run_dir, target):
    """From a run's ``history.csv``: minutes of training (epochs with their validation) until the
    validation AUC first reached ``target`` (None if it never did), and until its best AUC."""
    import csv

    with open(Path(run_dir) / "history.csv", newline="", encoding="utf-8") as handle:
        epochs = list(csv.DictReader(handle))
    elapsed, to_target, best, to_best = 0.0, None, -1.0, None
    for row in epochs:
        elapsed += float(row["seconds"])
        auc = float(row["val_auc"])
        if to_target is None and auc >= target:
            to_target = elapsed / 60
        if auc > best:
            best, to_best = auc, elapsed / 60
    return {"target": target, "minutes_to_target": to_target, "best_val_auc": best, "minutes_to_best": to_best,
            "minutes_all": elapsed / 60, "epochs": len(epochs)}


def score(run_dir, data_dir, out_dir, extra, log):
    """``tools/eval.py`` of a run's best model on ``data_dir``; its ``metrics.json``."""
    run([sys.executable, ROOT / "tools" / "eval.py", "--weights", run_dir, "--data-dir", data_dir,
         "--output-dir", out_dir, *extra], log)
    return json.loads((Path(out_dir) / "metrics.json").read_text(encoding="utf-8"))


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarise(rows):
    """Mean, standard deviation, min and max of each figure, per (data set, variant)."""
    groups = {}
    for row in rows:
        groups.setdefault((row["data"], row["variant"]), []).append(row)
    return [{"data": data, "variant": variant, "seeds": [r["seed"] for r in members],
             **{f: spread([r[f] for r in members]) for f in (*FIGURES, "threshold")}}
            for (data, variant), members in groups.items()]


def read_predictions(eval_dir):
    """``{file name: (PM probability, decided label, true label)}`` from an evaluation's ``predictions.csv``."""
    import csv

    with open(Path(eval_dir) / "predictions.csv", newline="", encoding="utf-8") as handle:
        return {Path(r["file"]).name: (float(r["pm_probability"]), r["label"], r["true_label"])
                for r in csv.DictReader(handle)}


def shared_errors(predictions):
    """What the seeds have in common, from each seed's predictions on the same images.

    Args:
        predictions: ``{seed: read_predictions(...)}`` of one data set and variant (two seeds or more).

    Returns:
        dict: ``ensemble_auc``, the AUC of the seeds' mean log-odds (an ensemble of the runs: when
        it is no better than the single runs, their mistakes are the same ones and more seeds or
        averaging cannot fix them), and ``missed_by_all``, the images every seed decides wrongly at its
        own threshold, each with its true label and the range of its probabilities.
    """
    import numpy as np

    from paddle_palm.calibration import log_odds
    from paddle_palm.metrics import roc_auc

    names = sorted(set.intersection(*(set(p) for p in predictions.values())))
    probs = np.array([[p[n][0] for n in names] for p in predictions.values()], np.float64)
    labels = [int(next(iter(predictions.values()))[n][2]) for n in names]
    missed = [{"image": n, "true_label": labels[i], "min_probability": float(probs[:, i].min()),
               "max_probability": float(probs[:, i].max())}
              for i, n in enumerate(names) if all(p[n][1] != p[n][2] for p in predictions.values())]
    return {"seeds": list(predictions), "images": len(names),
            "ensemble_auc": roc_auc(labels, log_odds(probs).mean(axis=0)), "missed_by_all": missed}


def markdown(report):
    extra = f" {report['train_args']}" if report.get("train_args") else ""
    lines = [f"Seed study: {report['config']}{extra}, seeds {report['seeds']} ({report['when']})", "",
             "| data | variant | seed | threshold | accuracy | AUC | sensitivity | specificity |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["runs"]:
        lines.append(f"| {r['data']} | {r['variant']} | {r['seed']} | {r['threshold']:.4f} | {r['accuracy']:.4f} | "
                     f"{r['auc']:.4f} | {r['sensitivity']:.4f} | {r['specificity']:.4f} |")
    lines += ["", "| data | variant | figure | mean | sd | min | max |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for s in report["summary"]:
        for f in FIGURES:
            v = s[f]
            lines.append(f"| {s['data']} | {s['variant']} | {f} | {v['mean']:.4f} | {v['sd']:.4f} | "
                         f"{v['min']:.4f} | {v['max']:.4f} |")
    for key, shared in (report.get("shared") or {}).items():
        data, variant = key.split("/")
        missed = ", ".join(f"{m['image']} (PM {m['true_label']}, {m['min_probability']:.3f}-{m['max_probability']:.3f})"
                           for m in shared["missed_by_all"]) or "none"
        lines += ["", f"{data} {variant}: the seeds' ensemble (mean log-odds of {len(shared['seeds'])} runs) has AUC "
                  f"{shared['ensemble_auc']:.4f}; wrong for every seed: {missed}"]
    times = [t for t in report["train_seconds"].values() if t]
    if times:
        lines += ["", f"training time per seed: {', '.join(f'{t / 60:.1f}' for t in times)} min"]
    curves = report.get("time_to_auc") or {}
    if curves:
        lines += ["", "| seed | epochs | minutes of training (with validation) | validation AUC >= target after | "
                  "best validation AUC | reached after |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for seed, c in curves.items():
            reached = "never" if c["minutes_to_target"] is None else f"{c['minutes_to_target']:.1f} min"
            lines.append(f"| {seed} | {c['epochs']} | {c['minutes_all']:.1f} | {reached} (target {c['target']:g}) | "
                         f"{c['best_val_auc']:.4f} | {c['minutes_to_best']:.1f} min |")
    return "\n".join(lines)


def write_report(report, out_dir):
    from bench.report import write_results

    return write_results(out_dir, "seed_study-", report, markdown(report), indent=2)


def quick_data(folder):
    from paddle_palm.data.synthetic import make_synthetic_palm

    make_synthetic_palm(folder, n_train=16, n_valid=8, image_size=64)
    return folder


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="seed_study-"))
    if args.quick:
        args.seeds = args.seeds[:2]
        args.data_dir = args.data_dir or str(quick_data(work / "data"))
    args.data_dir = args.data_dir or str(ROOT.parent / "shared" / "palm")
    if not Path(args.data_dir).is_dir():
        sys.exit(f"error: no dataset folder at {args.data_dir}; give --data-dir (or --quick)")
    runs_dir = Path(args.runs_dir) if args.runs_dir else work / "runs"
    variants = [("plain", [])] + args.variant
    datasets = [("validation", args.data_dir)] + ([("holdout", args.holdout_dir)] if args.holdout_dir else [])
    log = work / "seed_study.log"
    rows, train_seconds, curves, predictions = [], {}, {}, {}
    for seed in args.seeds:
        run_dir = runs_dir / f"seed{seed}"
        print(f"seed {seed}: training in {run_dir} ...", flush=True)
        train_seconds[str(seed)] = train_seed(args, seed, run_dir, log)
        curves[str(seed)] = time_to_auc(run_dir, args.auc_target)
        for data_name, data_dir in datasets:
            for variant, extra in variants:
                # Beside the run when the runs are kept, so bench/threshold_rules.py can read its predictions.
                evals = run_dir if args.runs_dir else work / "eval" / f"seed{seed}"
                m = score(run_dir, data_dir, evals / f"eval-{data_name}-{variant}", extra, log)
                predictions.setdefault(f"{data_name}/{variant}", {})[str(seed)] = read_predictions(
                    evals / f"eval-{data_name}-{variant}")
                rows.append({"seed": seed, "data": data_name, "variant": variant,
                             **{f: m.get(f) for f in (*FIGURES, "threshold")}})
                print(f"  {data_name:10s} {variant:8s} threshold {m['threshold']:.4f}  " +
                      "  ".join(f"{f} {m[f]:.4f}" for f in FIGURES), flush=True)
    report = {"config": os.path.relpath(args.config, ROOT), "train_args": args.train_args, "seeds": args.seeds, "data_dir": args.data_dir,
              "holdout_dir": args.holdout_dir, "when": time.strftime("%Y-%m-%d %H:%M"), "runs": rows,
              "summary": summarise(rows), "shared": {k: shared_errors(v) for k, v in predictions.items() if len(v) > 1},
              "train_seconds": train_seconds, "time_to_auc": curves, "log": str(log)}
    path = write_report(report, args.out_dir)
    print("\n" + markdown(report) + f"\n\nwrote {path}")


if __name__ == "__main__":
    main()
