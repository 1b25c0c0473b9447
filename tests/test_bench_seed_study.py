"""bench/seed_study.py: a smoke run on synthetic data, and the real study (slow, minutes per seed)."""

import json
import subprocess
import sys

import pytest


def test_quick_study_trains_two_seeds_and_reports_their_spread(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, "bench/seed_study.py", "--quick", "--runs-dir", str(tmp_path / "runs"),
                           "--out-dir", str(tmp_path / "results")], cwd=repo_root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "results" / "seed_study-latest.json").read_text())
    assert report["seeds"] == [0, 1] and len(report["runs"]) == 2
    assert all((tmp_path / "runs" / f"seed{s}" / "best_model.pdparams").is_file() for s in (0, 1))
    (summary,) = report["summary"]
    for figure in ("accuracy", "auc", "sensitivity", "specificity"):
        values = [r[figure] for r in report["runs"]]
        assert summary[figure]["min"] == min(values) and summary[figure]["max"] == max(values)
        assert summary[figure]["mean"] == pytest.approx(sum(values) / 2)
    assert "| validation | plain | accuracy |" in proc.stdout


@pytest.mark.slow
def test_the_recipe_with_three_seeds(repo_root, shared_palm, tmp_path):
    """The recipe on the real data, seeds 0, 1, 2 (about 10 minutes each on 2 cores)."""
    proc = subprocess.run([sys.executable, "bench/seed_study.py", "--data-dir", str(shared_palm),
                           "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "results")],
                          cwd=repo_root, capture_output=True, text=True, timeout=3 * 3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (summary,) = json.loads((tmp_path / "results" / "seed_study-latest.json").read_text())["summary"]
    assert summary["auc"]["min"] > 0.95 and summary["accuracy"]["min"] > 0.9
