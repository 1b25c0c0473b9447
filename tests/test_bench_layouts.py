"""bench/layouts.py: every way the operator can run each network, timed in one process (smoke run)."""

import json
import subprocess
import sys

import pytest

from paddle_palm import ops


def test_quick_run_times_every_way_of_each_network(repo_root, tmp_path):
    if ops.load() is None:
        pytest.skip(f"oneDNN operator unavailable here: {ops.unavailable_reason()}")
    proc = subprocess.run([sys.executable, "bench/layouts.py", "--quick", "--out-dir", str(tmp_path)], cwd=repo_root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "layouts-latest.json").read_text())
    results = report["results"]
    assert set(results) == {"squeezenet1_1", "se_resnet18"}
    bf16 = ["nchw bf16"] if ops.bf16_convolution_supported() else []
    assert list(results["squeezenet1_1"]["ways"]) == ["nchw fp32", *bf16]  # no batch norm, no channels-last
    assert list(results["se_resnet18"]["ways"]) == ["nchw fp32", "nhwc fp32", *[w for w in ("nchw bf16", "nhwc bf16") if bf16]]
    assert results["se_resnet18"]["channels_last_pays"] is False and results["squeezenet1_1"]["channels_last_pays"] is False
    for entry in results.values():
        assert entry["image_size"] == 64 and entry["batch_size"] == 4
        for way in entry["ways"].values():
            assert len(way["steps_ms"]) == 2 and all(t > 0 for t in way["steps_ms"])
        assert entry["ways"]["nchw fp32"]["speed_vs_nchw_fp32"] == 1.0
    assert "| se_resnet18 | 64 px, 4 | nchw fp32 (tools/train.py) |" in proc.stdout
    assert (tmp_path / "layouts-latest.md").read_text() == proc.stdout
