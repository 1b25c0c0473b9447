"""bench/threshold_rules.py: cross-validated threshold rules on an evaluation's predictions.csv."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paddle_palm.engine.reports import write_evaluation_csv


@pytest.fixture
def rules_module(repo_root):
    sys.path.insert(0, str(repo_root / "bench"))
    import threshold_rules

    return threshold_rules


def test_the_deal_is_stratified_and_covers_every_eye(rules_module):
    labels = np.r_[np.ones(58, int), np.zeros(42, int)]
    fold = rules_module.deal(labels, 10, np.random.default_rng(3))
    assert sorted(set(fold.tolist())) == list(range(10))
    for k in range(10):  # 58 PM eyes: 5 or 6 a fold; 42 others: 4 or 5
        assert labels[fold == k].sum() in (5, 6) and (fold == k).sum() - labels[fold == k].sum() in (4, 5)


def test_separable_scores_are_perfect_on_unseen_eyes(rules_module):
    labels = np.r_[np.ones(30, int), np.zeros(30, int)]
    probs = np.r_[np.linspace(0.7, 0.99, 30), np.linspace(0.01, 0.3, 30)]
    out = rules_module.cross_validate(labels, probs, ["youden", "fixed:0.5"], folds=5, repeats=10, target=0.97, seed=0)
    for r in out.values():
        assert r["unseen_sensitivity"] == r["unseen_specificity"] == r["unseen_meets_target"] == 1.0


def test_a_threshold_fitted_to_one_low_pm_eye_pays_on_unseen_eyes(rules_module):
    """sensitivity:1 bends to the lowest PM eye: perfect in sample, but on unseen folds the
    threshold fitted without that eye misses it, and with it lets non-PM eyes through."""
    labels = np.r_[np.ones(40, int), np.zeros(40, int)]
    probs = np.r_[0.05, np.linspace(0.8, 0.99, 39), np.linspace(0.01, 0.2, 40)]
    out = rules_module.cross_validate(labels, probs, ["sensitivity:1", "youden"], folds=10, repeats=20,
                                      target=0.97, seed=0)
    strict = out["sensitivity:1"]
    assert strict["sensitivity"] == 1.0 and strict["specificity"] < 0.9  # in sample: every PM eye, at a cost
    assert strict["unseen_sensitivity"] < 1.0  # the low eye is missed whenever it is the one left out
    assert out["youden"]["unseen_specificity"] > strict["unseen_specificity"]


def test_the_script_reads_predictions_and_writes_its_report(repo_root, tmp_path):
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(20, int), np.zeros(20, int)]
    probs = np.clip(np.where(labels == 1, rng.normal(0.8, 0.15, 40), rng.normal(0.2, 0.15, 40)), 0, 1)
    run = tmp_path / "seed0" / "eval-validation-plain"
    run.mkdir(parents=True)
    write_evaluation_csv(run / "predictions.csv", [f"V{i:04d}.jpg" for i in range(40)], probs,
                         (probs >= 0.5).astype(int), labels)
    proc = subprocess.run([sys.executable, "bench/threshold_rules.py", str(tmp_path / "seed0"), "--repeats", "5",
                           "--rules", "youden", "fixed:0.5", "--out-dir", str(tmp_path / "results")],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "results" / "threshold_rules-latest.json").read_text())
    assert set(report["mean"]) == {"youden", "fixed:0.5"} and report["repeats"] == 5
    fixed = report["runs"][str(tmp_path / "seed0")]["fixed:0.5"]  # one run: named as given
    pred = probs >= 0.5
    assert fixed["sensitivity"] == pytest.approx(pred[labels == 1].mean(), abs=1e-9)
    assert fixed["unseen_sensitivity"] == pytest.approx(fixed["sensitivity"], abs=1e-9)  # a fixed rule fits nothing
    assert "| youden |" in proc.stdout


@pytest.mark.parametrize("argv, message", [([], "give at least one RUN"), (["x", "--rules", "median"], "threshold"),
                                           (["x", "--folds", "1"], "--folds must be at least 2")])
def test_bad_arguments_get_one_line(repo_root, argv, message):
    proc = subprocess.run([sys.executable, "bench/threshold_rules.py", *argv], cwd=repo_root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr


def test_runs_are_named_without_their_shared_folder(rules_module, tmp_path):
    names = rules_module.short_names([tmp_path / "runs" / "seed0", tmp_path / "runs" / "seed1" / "eval-validation-plain"])
    assert names == ["seed0", os.path.join("seed1", "eval-validation-plain")]


def test_a_folder_without_predictions_is_named(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, "bench/threshold_rules.py", str(tmp_path)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and str(tmp_path) in proc.stderr and "no predictions.csv" in proc.stderr


@pytest.mark.parametrize("row", ["V1.jpg,abc,1,PM,1", "V1.jpg,1.5,1,PM,1", "V1.jpg,0.5,1,PM,2"])
def test_bad_predictions_get_one_line_naming_the_file(repo_root, tmp_path, row):
    bad = tmp_path / "predictions.csv"
    bad.write_text("file,pm_probability,label,class_name,true_label\nV0.jpg,0.2,0,other,0\n" + row + "\n")
    proc = subprocess.run([sys.executable, "bench/threshold_rules.py", str(bad)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
