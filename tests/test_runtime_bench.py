"""Tests of the benchmark harness (bench/): runners, the PyTorch reference, the report and the data helpers.

Small sizes only; the full ``python bench/run.py --quick`` smoke run is marked slow.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import paths, run  # noqa: E402


@pytest.mark.parametrize("metric", ["train", "eval", "latency"])
def test_paddle_dygraph_runner_times_each_metric(metric):
    runner = paths.PaddleDygraph("squeezenet1_1", batch_size=2, image_size=32)
    runner.prepare(metric)
    seconds = runner.run(metric)
    assert 0 < seconds < 60


def test_paddle_matmul_runner_and_unknown_recipe():
    runner = paths.PaddleMatmul("resnet50", 1, 32)
    assert runner.run("gflops") > 0
    with pytest.raises(ValueError, match="no benchmark recipe"):
        paths.recipe("vgg16")


def test_torch_reference_matches_the_paddle_networks_in_shape_and_size():
    torch = pytest.importorskip("torch")
    from bench.torch_reference import build
    from paddle_palm.models import build_model

    for arch, outputs in (("resnet50", 1), ("squeezenet1_1", 2)):
        net = build(arch)
        with torch.no_grad():
            out = net.eval()(torch.zeros(2, 3, 64, 64))
        assert tuple(out.shape) == (2, outputs)
        torch_params = sum(p.numel() for p in net.parameters())
        paddle_params = sum(int(np.prod(p.shape)) for p in build_model(arch).parameters()
                            if not p.stop_gradient)  # Paddle lists batch-norm statistics as parameters too
        assert torch_params == paddle_params, arch
    with pytest.raises(ValueError, match="no PyTorch reference"):
        build("vgg16")


def _item(path, metric, median, arch="squeezenet1_1"):
    return {"path": path, "arch": arch, "metric": metric, "times": [median], "kind": "x"}


def test_report_ratios_are_speed_ratios_against_both_baselines():
    items = [_item(run.BASELINE, "train", 2.0), _item("fast", "train", 1.0), _item(run.TORCH, "train", 0.5),
             _item("broken", "train", 1.0)]
    items[-1]["times"], items[-1]["error"] = [], "RuntimeError: boom"
    items = run.summarise(items, batch_size=10)
    assert items[1]["value"] == pytest.approx(10.0)
    assert run.speed_ratio(items[1], items[0]) == pytest.approx(2.0)
    assert run.speed_ratio(items[1], items[2]) == pytest.approx(0.5)
    meta = {"date": "d", "command": "c", "machine": run.machine_description(), "versions": {"paddle": "3"},
            "archs": ["squeezenet1_1"], "batch_size": 10, "image_size": 224, "iters": 1, "rounds": 1,
            "load_before": "0", "load_after": "0", "data_arch": "squeezenet1_1"}
    text = run.markdown({"meta": meta, "items": items, "data": None})
    assert "| fast | 10.00 | 2.00x | 0.50x |" in text
    assert "RuntimeError: boom" in text


def test_parse_args_quick_and_errors():
    args = run.parse_args(["--quick"])
    assert args.archs == ["squeezenet1_1"] and args.probes is False and args.batch_size == 2
    with pytest.raises(SystemExit):
        run.parse_args(["--archs", "vgg16"])
    with pytest.raises(SystemExit):
        run.parse_args(["--rounds", "0"])


def test_make_originals_enlarges_shared_images(shared_palm, tmp_path):
    import cv2

    from bench.data_pipeline import ORIGINAL_SIZE, make_originals

    folder = make_originals(shared_palm, tmp_path, 3)
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == 3
    height, width = cv2.imread(str(files[0])).shape[:2]
    assert (width, height) == ORIGINAL_SIZE


@pytest.mark.slow
def test_quick_benchmark_run_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "bench/run.py", "--quick", "--out-dir", str(tmp_path)], cwd=str(REPO),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "#### squeezenet1_1" in proc.stdout and (tmp_path / "latest.json").exists()
