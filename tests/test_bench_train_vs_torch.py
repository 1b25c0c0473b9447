"""Tests of ``bench/train_vs_torch.py`` (tools/train.py against a PyTorch loop) and of the
oneDNN-convolution path of ``bench/run.py`` (the path tools/train.py takes).

Small sizes only: the end-to-end test is the script's own ``--quick`` smoke run
(SqueezeNet 1.1, 64 px, 8 images, about 15-20 s), skipped when PyTorch is not installed.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import run, train_vs_torch  # noqa: E402


def _torch_installed():
    # In a child process: PyTorch's OpenMP runtime stays out of the test process, which runs Paddle.
    return subprocess.call([sys.executable, "-c", "import torch"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


# --------------------------------------------------------------------------- train_vs_torch.py


def test_quick_run_times_both_and_reports_the_ratio(tmp_path):
    if not _torch_installed():
        pytest.skip("PyTorch is not installed: train_vs_torch.py has nothing to compare with")
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, "bench/train_vs_torch.py", "--quick", "--out-dir", str(out),
                           "--work-dir", str(work)], cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "**tools/train.py / PyTorch:" in proc.stdout
    report = json.loads((out / "train_vs_torch-latest.json").read_text())
    assert (out / "train_vs_torch-latest.md").read_text() == proc.stdout
    assert len(list(out.glob("train_vs_torch-2*.json"))) == 1
    summary = report["summary"]
    assert set(summary) == {train_vs_torch.TRAIN_PY, train_vs_torch.TORCH}
    fast, torch = summary[train_vs_torch.TRAIN_PY], summary[train_vs_torch.TORCH]
    assert fast["median"] > 0 and torch["median"] > 0
    assert fast["vs_torch"] == pytest.approx(fast["median"] / torch["median"])
    assert fast["execution"].startswith("fast path")  # the trainer's default, as a user runs it
    assert report["meta"]["load_before"] and report["meta"]["load_after"]
    assert report["meta"]["versions"]["torch"] and report["meta"]["versions"]["paddlepaddle"]
    # The reported rate is the trainer's own history.csv figure for the epoch after the warm-up.
    with open(work / "runs" / "round1-fast" / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == train_vs_torch.QUICK["epochs"]
    assert fast["rates"][0] == pytest.approx(float(rows[-1]["images_per_second"]), rel=1e-6)
    torch_run = next(r for r in report["runs"] if r["name"] == train_vs_torch.TORCH)
    assert [e["images"] for e in torch_run["epochs"]] == [train_vs_torch.QUICK["train_images"]] * 2
    assert report["meta"]["torch_loop"]["optimizer"] == report["meta"]["trainer_config"]["optimizer"]


def test_build_data_copies_shared_images_in_the_palm_layout(shared_palm, tmp_path):
    from paddle_palm.data.layout import describe_dataset

    folder, description = train_vs_torch.build_data(tmp_path / "d", shared_palm, 6, 3, 224)
    summary = describe_dataset(folder)
    assert summary["train"] == 6 and summary["valid"] == 3 and summary["label_rows"] == 3
    assert set(summary["train_by_prefix"]) >= {"H", "N", "P"} and summary["train_by_prefix"]["P"] > 0
    assert "copied" in description
    with pytest.raises(ValueError, match="--train-images"):
        train_vs_torch.build_data(tmp_path / "e", shared_palm, 100000, 3, 224)


def test_build_data_falls_back_to_synthetic_images(tmp_path):
    from paddle_palm.data.layout import describe_dataset

    folder, description = train_vs_torch.build_data(tmp_path / "d", tmp_path / "absent", 4, 2, 32)
    summary = describe_dataset(folder)
    assert (summary["train"], summary["valid"]) == (4, 2)
    assert "synthetic" in description and train_vs_torch.count_training_images(folder) == 4


def test_parse_args_quick_and_bad_values():
    args = train_vs_torch.parse_args(["--quick"])
    assert (args.arch, args.image_size, args.rounds) == ("squeezenet1_1", 64, 1)
    default = train_vs_torch.parse_args([])
    assert (default.arch, default.image_size, default.batch_size) == ("resnet50", 224, 10)
    with pytest.raises(SystemExit):
        train_vs_torch.parse_args(["--epochs", "1"])  # the only epoch would be the warm-up
    with pytest.raises(SystemExit):
        train_vs_torch.parse_args(["--rounds", "0"])


def test_help_explains_the_comparison():
    proc = subprocess.run([sys.executable, "bench/train_vs_torch.py", "--help"], cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for words in ("tools/train.py", "PyTorch", "--warmup-epochs", "--quick", "images_per_second"):
        assert words in proc.stdout
    assert "--torch-loop" not in proc.stdout


def test_summary_ratios_are_against_the_torch_loop_of_the_same_run():
    runs = [
        {"name": train_vs_torch.TRAIN_PY, "round": 1, "ok": True, "rate": 9.0, "execution": "fast path"},
        {"name": train_vs_torch.TORCH, "round": 1, "ok": True, "rate": 6.0, "execution": "torch"},
        {"name": train_vs_torch.TRAIN_PY, "round": 2, "ok": True, "rate": 8.0, "execution": "fast path"},
        {"name": train_vs_torch.TORCH, "round": 2, "ok": True, "rate": 8.0, "execution": "torch"},
        {"name": train_vs_torch.TRAIN_PY_NO_FAST, "round": 1, "ok": False, "error": "exit code 1: boom"},
    ]
    contenders = [train_vs_torch.TRAIN_PY, train_vs_torch.TORCH, train_vs_torch.TRAIN_PY_NO_FAST]
    summary = train_vs_torch.summarise(runs, contenders)
    assert summary[train_vs_torch.TRAIN_PY]["median"] == pytest.approx(8.5)
    assert summary[train_vs_torch.TRAIN_PY]["vs_torch"] == pytest.approx(8.5 / 7.0)
    assert summary[train_vs_torch.TRAIN_PY]["vs_torch_per_round"] == pytest.approx([1.5, 1.0])
    assert summary[train_vs_torch.TRAIN_PY_NO_FAST]["median"] is None
    assert summary[train_vs_torch.TRAIN_PY_NO_FAST]["failed"] == ["round 1: exit code 1: boom"]


def test_the_amp_contender_runs_tools_train_with_amp_and_is_reported_against_float32():
    args = train_vs_torch.parse_args(["--with-amp"])
    assert args.with_amp
    command = train_vs_torch.train_py_command(args, Path("data"), Path("run"), amp=True)
    assert "--amp" in command and "--no-fast" not in command
    assert "--amp" not in train_vs_torch.train_py_command(args, Path("data"), Path("run"))
    runs = [
        {"name": train_vs_torch.TRAIN_PY, "round": 1, "ok": True, "rate": 8.0, "execution": "fast path"},
        {"name": train_vs_torch.TORCH, "round": 1, "ok": True, "rate": 8.0, "execution": "torch"},
        {"name": train_vs_torch.TRAIN_PY_AMP, "round": 1, "ok": True, "rate": 12.0,
         "execution": "fast path: 2 threads, oneDNN bf16 convolutions"},
    ]
    contenders = [train_vs_torch.TRAIN_PY, train_vs_torch.TORCH, train_vs_torch.TRAIN_PY_AMP]
    report = {"meta": {"date": "d", "machine": {"cpu": "c", "cores": 2, "flags": []}, "versions": {"python": "3"},
                       "command": "c", "arch": "resnet50", "image_size": 224, "batch_size": 10, "epochs": 3,
                       "train_images": 100, "warmup_epochs": 1, "rounds": 1, "threads": 2, "data": "d",
                       "load_before": "0", "load_after": "0"},
              "summary": train_vs_torch.summarise(runs, contenders), "runs": runs}
    for run_ in runs:
        run_["load_1min_before"] = 0.0
    text = train_vs_torch.markdown(report)
    assert "**tools/train.py --amp / tools/train.py: 1.50x** (fast path: 2 threads, oneDNN bf16 convolutions)" in text
    assert "| tools/train.py --amp | fast path: 2 threads, oneDNN bf16 convolutions | 12.00 | 12.00 | 1.50x |" in text


# --------------------------------------------------------------------------- bench/run.py's trainer path


def test_run_plan_has_the_trainer_path_in_its_own_worker():
    items = [i for i in run.plan(run.parse_args(["--quick"])) if i["path"] == run.TRAINER]
    assert {i["metric"] for i in items} == set(run.MODEL_METRICS)
    assert {i["kind"] for i in items} == {"paddle-fast-conv"}
    assert all(i["spec"] == {"runner": "PaddleDygraph", "options": {"onednn_conv": True}} for i in items)


def test_report_marks_the_trainer_path():
    def item(path, median):
        return {"path": path, "arch": "squeezenet1_1", "metric": "train", "times": [median], "kind": "x"}

    items = run.summarise([item(run.BASELINE, 2.0), item(run.TRAINER, 0.5), item(run.TORCH, 1.0)], batch_size=10)
    meta = {"date": "d", "command": "c", "machine": run.machine_description(),
            "versions": {"paddle": "3", "onednn_conv": "oneDNN 3.6.2"}, "archs": ["squeezenet1_1"],
            "batch_size": 10, "image_size": 224, "iters": 1, "rounds": 1, "load_before": "0", "load_after": "0",
            "data_arch": "squeezenet1_1"}
    text = run.markdown({"meta": meta, "items": items, "data": None})
    assert f"| {run.TRAINER}{run.TRAINER_MARK} | 20.00 | 4.00x | 2.00x |" in text
    assert "oneDNN 3.6.2" in text


@pytest.mark.filterwarnings("ignore:No ccache found")  # Paddle's cpp_extension import, irrelevant here
def test_onednn_conv_runner_switches_the_network_and_times_each_metric():
    from paddle_palm import ops

    if ops.load() is None:
        pytest.skip(f"oneDNN operator unavailable here: {ops.unavailable_reason()}")
    from bench import paths

    runner = paths.PaddleDygraph("squeezenet1_1", batch_size=2, image_size=32, onednn_conv=True)
    assert ops.is_accelerated(runner.model)
    for metric in ("train", "eval", "latency"):
        runner.prepare(metric)
        assert 0 < runner.run(metric) < 60
