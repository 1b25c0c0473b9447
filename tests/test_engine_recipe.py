"""The real-data recipe ``configs/palm_cpu.yaml`` trains a screening model on CPU (slow: about 20 minutes).

Run with ``pytest -m slow tests/test_engine_recipe.py``.  It trains on all of
``../shared/palm/PALM-Training400`` and checks the best model on V0001-V0100
against the floor of issue 5 (accuracy >= 0.95, AUC >= 0.98).
"""

import csv
import json
import subprocess
import sys

import pytest

from paddle_palm.engine import config as cfg


def test_recipe_file_is_a_valid_configuration(repo_root):
    c = cfg.resolve({}, config_file=repo_root / "configs" / "palm_cpu.yaml")
    assert c["dataset"] == "palm" and c["arch"]


@pytest.mark.slow
def test_palm_cpu_recipe_reaches_the_floor(repo_root, shared_palm, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "train.py"), "--config", str(repo_root / "configs" / "palm_cpu.yaml"),
         "--data-dir", str(shared_palm), "--output-dir", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=3600, cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    with open(out / "history.csv", newline="") as fh:
        rows = {int(r["epoch"]): r for r in csv.DictReader(fh)}
    best = rows[summary["best_epoch"]]
    assert float(best["val_acc"]) >= 0.95, best
    assert float(best["val_auc"]) >= 0.98, best
