"""The version rules of :mod:`paddle_palm.compat`: supported ranges, the start-up check, the switches.

The functions that take versions as arguments are tested with every supported
and refused combination; the ones that touch Paddle run on the installed one
(CI runs this file on Paddle 2.6.2, 3.0.0 and 3.3.1).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddle_palm import compat
from paddle_palm.errors import PalmError, UnsupportedVersionError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, expected", [
    ("2.6.2", (2, 6, 2)), ("3.0.0", (3, 0, 0)), ("3.3.1", (3, 3, 1)), ("3.0.0rc1", (3, 0, 0)),
    ("3.1.0.post112", (3, 1, 0)), ("1.26.4", (1, 26, 4)), ("2", (2, 0, 0)), ("0.0.0", (0, 0, 0)),
])
def test_version_tuple(text, expected):
    assert compat.version_tuple(text) == expected


@pytest.mark.parametrize("paddle, numpy", [
    ("2.6.2", "1.26.4"), ("2.6.2", "1.24.0"), ("3.0.0", "1.26.4"), ("3.0.0", "2.4.6"), ("3.3.1", "2.4.6"),
    ("3.4.0", "2.5.0"), ("0.0.0", "2.4.0"),  # a build from source
])
def test_supported_pairs(paddle, numpy):
    assert compat.version_problem(paddle, numpy, (3, 11)) is None


def test_paddle_26_with_numpy_2_is_refused_in_one_line():
    problem = compat.version_problem("2.6.2", "2.4.6", (3, 11))
    assert problem.startswith("Paddle 2.6.2 cannot use numpy 2.4.6: it needs numpy >= 1.0, < 2")
    assert 'pip install "numpy<2"' in problem and compat.SUPPORTED in problem and "\n" not in problem


@pytest.mark.parametrize("paddle", ["2.5.2", "2.4.0", "1.8.5", "2.6.1"])
def test_old_paddle_is_refused(paddle):
    problem = compat.version_problem(paddle, "1.26.4", (3, 11))
    assert problem == f"Paddle {paddle} is older than supported; supported: {compat.SUPPORTED}"


def test_old_numpy_with_paddle_3_is_refused():
    assert compat.version_problem("3.3.1", "1.24.4", (3, 11)).startswith("Paddle 3.3.1 cannot use numpy 1.24.4")


def test_missing_paddle_and_old_python():
    assert compat.version_problem(None, "2.4.6").startswith("PaddlePaddle is not installed")
    assert compat.version_problem("3.3.1", "2.4.6", (3, 8)).startswith("Python 3.8 is older than supported")


def test_check_environment_accepts_this_installation():
    import paddle

    found = compat.check_environment()
    assert compat.version_tuple(found["paddle"]) == compat.version_tuple(paddle.__version__)
    assert found["numpy"] == np.__version__


def test_the_error_is_ours():
    assert issubclass(UnsupportedVersionError, PalmError)


def test_a_tool_refuses_a_broken_pair_in_one_line(tmp_path):
    """An installation whose numpy is too new for its Paddle: the tool stops before importing Paddle."""
    fake = tmp_path / "site"
    for name, version in (("paddlepaddle", "2.6.2"), ("numpy", "2.4.6")):
        info = fake / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "summary.py"), "--arch", "squeezenet1_1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        'error: Paddle 2.6.2 cannot use numpy 2.4.6: it needs numpy >= 1.0, < 2 (pip install "numpy<2"); '
        f"supported: {compat.SUPPORTED}"]


def test_inference_onednn_switch_on_this_paddle(tmp_path):
    """The oneDNN switch works whatever this Paddle calls it (enable_mkldnn up to 3.0, enable_onednn from 3.1)."""
    from paddle import inference

    from paddle_palm.engine.export import export_model
    from paddle_palm.engine.model_settings import ModelSettings
    from paddle_palm.engine.predictors import ExportedPredictor
    from paddle_palm.models import build_model

    config = inference.Config()
    compat.set_inference_onednn(config, True)
    assert config.mkldnn_enabled()
    compat.set_inference_onednn(config, False)
    assert not config.mkldnn_enabled()

    import paddle

    paddle.seed(1)
    model = build_model("squeezenet1_1", num_classes=2)
    settings = ModelSettings(arch="squeezenet1_1", num_classes=2, loss="ce", image_size=64, preprocess="B",
                             in_channels=3, threshold=0.5, classes=["a", "b"], classes_zh=["a", "b"])
    export_model(model, tmp_path / "exp", settings, verify=False)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    with_onednn = ExportedPredictor(tmp_path / "exp", onednn=True, threads=1).pm_probability(x)
    plain = ExportedPredictor(tmp_path / "exp", onednn=False, threads=1).pm_probability(x)
    np.testing.assert_allclose(with_onednn, plain, atol=1e-5)


def test_zlib_users_after_paddle_do_not_crash():
    """Paddle 2.6 then OpenCV PNG and Python zlib in one process (crashed in inflateReset2 before)."""
    code = ("import paddle_palm, paddle, cv2, zlib, numpy as np\n"
            "ok, buf = cv2.imencode('.png', np.zeros((32, 32, 3), np.uint8))\n"
            "assert ok and cv2.imdecode(buf, 1).shape == (32, 32, 3)\n"
            "assert zlib.decompress(zlib.compress(b'x' * 1000)) == b'x' * 1000\n"
            "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-1000:]


def test_cpu_math_threads_and_pin_memory_switches():
    compat.set_cpu_math_threads(1)
    assert compat.set_dataloader_pin_memory(False) is True
    from paddle.io import reader

    assert reader.use_pinned_memory() is False
    reader.use_pinned_memory(True)


def test_numpy_float_limits_cached_before_flushing():
    import warnings

    from paddle_palm import runtime

    compat.cache_numpy_float_limits()
    try:
        if runtime.set_flush_denormal(True):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                np.finfo(np.float64).smallest_subnormal  # noqa: B018  (numpy 1.x warned here)
    finally:
        runtime.set_flush_denormal(False)


def test_export_conversion_of_the_probability_wrapper(tmp_path):
    """The exported wrapper converts to a static program on this Paddle (2.6 failed on enclosing-function names)."""
    import paddle

    from paddle_palm.engine.export import PMProbabilityModel
    from paddle_palm.models import build_model

    for classes in (1, 2):
        wrapped = PMProbabilityModel(build_model("squeezenet1_1", num_classes=classes), classes)
        wrapped.eval()
        spec = paddle.static.InputSpec([None, 3, 64, 64], "float32", "image")
        paddle.jit.save(wrapped, str(tmp_path / f"m{classes}" / "inference"), input_spec=[spec])
        assert any((tmp_path / f"m{classes}").glob("inference.pd*"))


@pytest.mark.parametrize("paddle_version, converter, ok", [
    ("3.3.1", "2.1.0", True), ("3.0.0", "2.0.1", True), ("2.6.2", "1.3.1", True), ("0.0.0", "2.1.0", True),
    ("2.6.2", "2.1.0", False), ("3.3.1", "1.3.1", False), (None, "2.1.0", True),
])
def test_paddle2onnx_must_match_the_paddle_major_version(paddle_version, converter, ok):
    problem = compat.paddle2onnx_problem(paddle_version, converter)
    assert (problem is None) == ok
    if not ok:
        assert "pip install" in problem and converter in problem
