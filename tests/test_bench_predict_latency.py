"""Smoke test of ``bench/predict_latency.py`` (prediction time per image, every path of tools/predict.py).

Only the script's ``--quick`` mode on SqueezeNet 1.1 (3 timed passes, 4 images): what it
checks is that every path runs, that the report holds a row per path with ratios against
the same run's plain-dygraph baseline, and that the fp32 paths give the checkpoint's
probabilities.  The timings themselves are not asserted (they belong to the benchmark).
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_run_reports_every_path_with_ratios_and_equal_probabilities(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "bench/predict_latency.py", "--arch", "squeezenet1_1", "--quick",
                           "--no-torch", "--out", str(out)], cwd=str(REPO), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / "predict-latest.json").read_text())
    assert (out / "predict-latest.md").read_text() in proc.stdout
    rows = {row["path"]: row for row in record["rows"]}
    plain = rows["dygraph, Paddle conv (plain)"]
    assert plain["vs_plain_dygraph"] == 1.0
    assert "Paddle Inference oneDNN fp32 (--inference-model)" in rows
    assert "Paddle Inference, no oneDNN (--no-onednn)" in rows
    for name, row in rows.items():
        assert row["latency_ms"] > 0 and row["end_to_end_ms_per_image"] > 0, name
        assert row["end_to_end_batched_ms_per_image"] > 0, name
        assert abs(row["vs_plain_dygraph"] - plain["latency_ms"] / row["latency_ms"]) < 1e-9, name
        if "bf16" not in name:  # fp32 paths compute the checkpoint's numbers
            assert row["max_abs_probability_difference"] < 1e-4, (name, row["max_abs_probability_difference"])
    assert record["images"] == 4 and record["batch_size"] == 2 and len(record["rows"][0]["latency_rounds_ms"]) == 1
