"""Device selection, mixed-precision settings and pinned memory: the decisions, tested on a CPU.

The GPU tests at the end run only with a CUDA build of Paddle and a visible GPU
(``python -m pytest -m gpu``); here they skip with the reason.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from paddle_palm.engine import device as dev
from paddle_palm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, expected", [
    ("auto", ("auto", None)), ("cpu", ("cpu", None)), ("gpu", ("gpu", None)), ("gpu:1", ("gpu", 1)), ("GPU:0", ("gpu", 0)),
])
def test_parse_device(text, expected):
    assert dev.parse_device(text) == expected


@pytest.mark.parametrize("text", ["tpu", "gpu:x", "cpu:0", "", None, 3, "gpu:-1"])
def test_parse_device_refuses_others(text):
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, gpu"):
        dev.parse_device(text)


@pytest.mark.parametrize("requested, cuda, count, expected", [
    ("auto", False, 0, "cpu"),   # the CPU wheel
    ("auto", True, 0, "cpu"),    # a GPU wheel on a machine without a card (AI Studio's CPU image)
    ("auto", True, 2, "gpu"),
    ("cpu", True, 2, "cpu"),
    ("gpu", True, 1, "gpu"),
    ("gpu:1", True, 2, "gpu:1"),
])
def test_choose_device(requested, cuda, count, expected):
    assert dev.choose_device(requested, cuda, count) == expected


@pytest.mark.parametrize("requested, cuda, count, message", [
    ("gpu", False, 0, "no CUDA support"),
    ("gpu", True, 0, "sees no GPU"),
    ("gpu:2", True, 2, "sees 2 GPU"),
])
def test_choose_device_explains_a_missing_gpu(requested, cuda, count, message):
    with pytest.raises(ConfigError, match=message):
        dev.choose_device(requested, cuda, count)


def test_cpu_runtime_only_on_the_cpu():
    assert dev.uses_cpu_runtime("cpu")
    assert not dev.uses_cpu_runtime("gpu") and not dev.uses_cpu_runtime("gpu:1")


def test_amp_off_is_none():
    assert dev.amp_plan(False, "auto", "gpu", (8, 6)) is None


@pytest.mark.parametrize("dtype, capability, expected", [
    ("auto", (7, 0), dev.AmpPlan("float16", "O1", True)),      # V100: float16 with loss scaling
    ("auto", (8, 0), dev.AmpPlan("float16", "O1", True)),      # auto stays float16 everywhere
    ("auto", None, dev.AmpPlan("float16", "O1", True)),
    ("float16", (6, 1), dev.AmpPlan("float16", "O1", True)),
    ("bfloat16", (8, 0), dev.AmpPlan("bfloat16", "O1", False)),  # A100: no scaling needed
    ("bfloat16", (9, 0), dev.AmpPlan("bfloat16", "O1", False)),
])
def test_amp_on_gpu(dtype, capability, expected):
    assert dev.amp_plan(True, dtype, "gpu", capability) == expected


@pytest.mark.parametrize("capability", [(7, 5), (6, 0), None])
def test_bfloat16_needs_ampere(capability):
    with pytest.raises(ConfigError, match="compute capability 8.0 or newer"):
        dev.amp_plan(True, "bfloat16", "gpu:0", capability)


def test_amp_on_cpu_is_bfloat16_without_scaling():
    assert dev.amp_plan(True, "auto", "cpu") == dev.AmpPlan("bfloat16", "O1", False)
    assert dev.amp_plan(True, "bfloat16", "cpu") == dev.AmpPlan("bfloat16", "O1", False)
    with pytest.raises(ConfigError, match="float16 is for GPUs"):
        dev.amp_plan(True, "float16", "cpu")
    with pytest.raises(ConfigError, match="amp dtype must be one of"):
        dev.amp_plan(True, "fp8", "cpu")


def test_pin_memory_only_for_gpu_loader_workers():
    assert dev.pin_memory("gpu", 2) and dev.pin_memory("gpu:1", 1)
    assert not dev.pin_memory("gpu", 0) and not dev.pin_memory("cpu", 4)


def test_select_device_on_this_machine():
    import paddle

    found = dev.probe()
    assert dev.select_device("auto") == ("gpu" if found["cuda_build"] and found["gpu_count"] else "cpu")
    assert dev.select_device("cpu") == "cpu" and paddle.get_device() == "cpu"
    if not found["cuda_build"]:
        with pytest.raises(ConfigError, match="no CUDA support"):
            dev.select_device("gpu")


def test_runtime_leaves_cpu_settings_alone_off_the_cpu(monkeypatch):
    """setup_runtime applies threads/MKL/denormal settings on the CPU only (the device decides)."""
    from paddle_palm import runtime

    info = runtime.setup_runtime(device="cpu", fast=True, threads=1)
    assert info["device"] == "cpu" and info["threads"] == 1
    runtime.set_flush_denormal(False)


def test_train_cli_refuses_gpu_without_cuda(tmp_path):
    import paddle

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this Paddle has CUDA")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--arch", "squeezenet1_1", "--epochs", "1",
                           "--device", "gpu", "--output-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: device 'gpu' asked for, but this Paddle build has no CUDA support; use --device cpu, or install a "
        "GPU build of Paddle (see the README, 'CUDA GPU')"]


def test_train_cli_refuses_float16_amp_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--arch", "squeezenet1_1", "--epochs", "1",
                           "--device", "cpu", "--amp", "--amp-dtype", "float16", "--image-size", "64",
                           "--output-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: --amp-dtype float16 is for GPUs; on a CPU use bfloat16 (or auto)"


# --------------------------------------------------------------------------- on a GPU only


def _gpu_reason():
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        return "needs a CUDA build of Paddle (paddlepaddle-gpu); this one is CPU-only"
    if paddle.device.cuda.device_count() < 1:
        return "needs a visible CUDA GPU; Paddle sees none"
    return None


gpu_only = pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")


@pytest.mark.gpu
@gpu_only
def test_gpu_training_with_and_without_amp(tmp_path):
    """Two short trainings on the GPU (float32, then float16 AMP): finite losses, best_model written."""
    import json

    for name, extra in (("fp32", []), ("amp", ["--amp"])):
        proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--arch", "se_resnet18",
                               "--epochs", "2", "--image-size", "64", "--device", "gpu", "--num-workers", "2",
                               "--output-dir", str(tmp_path / name)] + extra,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "device gpu" in (tmp_path / name / "train.log").read_text()
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["best_value"] is not None
        assert (tmp_path / name / "best_model.pdparams").is_file()


@pytest.mark.gpu
@gpu_only
def test_gpu_inference_matches_cpu(tmp_path):
    """Export on the GPU machine, then Paddle Inference on CUDA and on the CPU give the same probabilities."""
    import numpy as np
    import paddle

    from paddle_palm.engine.export import export_model
    from paddle_palm.engine.model_settings import ModelSettings
    from paddle_palm.engine.predictors import ExportedPredictor
    from paddle_palm.models import build_model

    paddle.seed(0)
    model = build_model("squeezenet1_1", num_classes=2)
    settings = ModelSettings(arch="squeezenet1_1", num_classes=2, image_size=64, preprocess="B", in_channels=3,
                             threshold=0.5, classes=["n", "p"], classes_zh=["n", "p"], loss="ce", weights=None)
    export_model(model, tmp_path / "exp", settings, verify=False)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    on_gpu = ExportedPredictor(tmp_path / "exp", device="gpu").pm_probability(x)
    on_cpu = ExportedPredictor(tmp_path / "exp", device="cpu").pm_probability(x)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
