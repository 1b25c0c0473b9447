"""bf16 convolutions of the oneDNN operator: ``--amp`` training on CPUs with AVX-512 BF16 or AMX.

The operator rounds the input, the weights and the output gradient to bfloat16 and
accumulates in float32, so its results must equal Paddle's float32 convolution of the
rounded numbers (up to the order of float32 sums), and differ from the float32
convolution of the unrounded ones by bf16's rounding.  On a CPU without a bf16
convolution the tests of the arithmetic skip with the reason; the fallback is tested
there instead.
"""

import os
import subprocess
import sys
import zlib

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_palm import ops
from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.models import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: float32 sums of the same products in another order: |difference| / max |value|.
RTOL = 2e-5


@pytest.fixture(scope="module")
def bf16(onednn):
    if not ops.bf16_convolution_supported():
        pytest.skip("this CPU has no bf16 convolution in oneDNN (it needs AVX-512 or AMX)")
    return onednn


def to_bf16(array):
    """``array`` rounded to bfloat16 (to nearest, ties to even), as float32."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def test_to_bf16_rounds_to_nearest_even():
    values = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -9, -2.5, 3.0e-3], dtype=np.float32)
    assert to_bf16(values).tolist() == pytest.approx([1.0, 1.0, 1.0 + 2 ** -6, 1.0, -2.5, 197 / 128 * 2 ** -9], rel=0, abs=0)


def assert_close(got, want, rtol, what):
    scale = float(np.abs(want).max())
    error = float(np.abs(got - want).max())
    assert error <= rtol * scale, f"{what}: max |difference| {error:.3g} vs max |value| {scale:.3g}"


def conv_and_grads(conv, x, w, r, **kwargs):
    xt, wt = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
    out = conv(xt, wt, **kwargs)
    (out * paddle.to_tensor(r)).sum().backward()
    return out.numpy(), xt.grad.numpy(), wt.grad.numpy()


# name: (input shape NCHW, weight shape, stride, padding, groups): the networks' kinds of layers
CASES = {
    "3x3": ((2, 32, 9, 9), (64, 32, 3, 3), 1, 1, 1),
    "1x1_stride2": ((2, 64, 8, 8), (128, 64, 1, 1), 2, 0, 1),
    "7x7_stride2_stem": ((2, 3, 33, 33), (16, 3, 7, 7), 2, 3, 1),
    "channels_not_multiple_of_16": ((2, 24, 7, 7), (40, 24, 3, 3), 1, 1, 1),
    "groups2": ((2, 16, 8, 8), (32, 8, 3, 3), 1, 1, 2),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name", list(CASES))
def test_bf16_convolution_is_float32_arithmetic_on_rounded_numbers(bf16, name, data_format):
    xs, ws, stride, padding, groups = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(xs).astype("float32")
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype("float32")
    kwargs = dict(stride=stride, padding=padding, groups=groups, data_format=data_format)
    shape = F.conv2d(paddle.to_tensor(x), paddle.to_tensor(w), **kwargs).shape
    r = rng.standard_normal(shape).astype("float32")

    got = conv_and_grads(ops.conv2d, x, w, r, bf16=True, **kwargs)
    rounded = conv_and_grads(F.conv2d, to_bf16(x), to_bf16(w), to_bf16(r), **kwargs)
    exact = conv_and_grads(F.conv2d, x, w, r, **kwargs)
    for label, g, want, full in zip(("output", "input gradient", "weight gradient"), got, rounded, exact):
        assert g.dtype == np.float32 and g.shape == want.shape
        assert_close(g, want, RTOL, f"{name} {data_format} {label}")
        # bf16 keeps 8 significant bits: visibly different from float32, within its rounding.
        difference = float(np.abs(g - full).max() / np.abs(full).max())
        assert 1e-4 < difference < 2e-2, f"{name} {data_format} {label}: {difference:.3g} from float32"


def test_bf16_calls_are_bit_identical(bf16):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 14, 14, 32)).astype("float32")
    w = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype("float32")
    r = rng.standard_normal((4, 14, 14, 32)).astype("float32")
    first = conv_and_grads(ops.conv2d, x, w, r, padding=1, data_format="NHWC", bf16=True)
    second = conv_and_grads(ops.conv2d, x, w, r, padding=1, data_format="NHWC", bf16=True)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_accelerate_in_bf16_and_restore(bf16):
    paddle.seed(0)
    model = build_model("se_resnet18", num_classes=1)
    model.eval()
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32"))
    with paddle.no_grad():
        plain = model(x).numpy()
        assert ops.accelerate(model, bf16=True) > 0
        assert ops.is_accelerated(model) and ops.is_bf16(model)
        low = model(x).numpy()
        ops.restore(model)
        assert not ops.is_accelerated(model) and not ops.is_bf16(model)
        again = model(x).numpy()
    assert np.array_equal(again, plain)
    assert not np.array_equal(low, plain)
    assert_close(low, plain, 5e-2, "se_resnet18 logits in bf16")
    # Parameters and their dtype are untouched: float32 master weights.
    assert all(p.dtype == paddle.float32 for p in model.parameters())


def test_bf16_is_refused_where_the_cpu_has_none(onednn):
    if ops.bf16_convolution_supported():
        pytest.skip("this CPU has a bf16 convolution: the refusal cannot happen here")
    model = build_model("squeezenet1_1", num_classes=1)
    with pytest.raises(ops.OpsUnavailable, match="no bf16 convolution"):
        ops.accelerate(model, bf16=True)


def test_train_with_amp_on_the_cpu_says_what_runs_in_bf16(onednn, tmp_path):
    data = make_synthetic_palm(tmp_path / "data", n_train=8, n_valid=4, image_size=40, seed=2)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--arch", "squeezenet1_1",
                           "--data-dir", str(data), "--epochs", "1", "--image-size", "32", "--batch-size", "4",
                           "--amp", "--no-progress", "--output-dir", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    log = (out / "train.log").read_text()
    if ops.bf16_convolution_supported():
        assert "oneDNN bf16 convolutions" in log
        assert "convolutions multiply in bf16" in log
    else:
        assert "oneDNN convolutions" in log and "bf16 convolutions" not in log
        assert "no bf16 convolution in oneDNN" in log and "training runs in float32" in log
    assert "Traceback" not in proc.stderr
