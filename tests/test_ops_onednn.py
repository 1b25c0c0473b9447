"""The oneDNN convolution operator of ``paddle_palm.ops`` computes what Paddle's convolution computes.

``ops.conv2d`` is checked against ``paddle.nn.functional.conv2d`` (forward output and
the gradients of input, weight and bias) over the geometries the project's networks
use; ``ops.accelerate`` / ``ops.restore`` are checked on real project models (eval
and train mode, gradients, state dicts, ``paddle.jit`` export); and the ways it can be
unavailable (``PADDLE_PALM_ONEDNN=0``, no compiler, no headers) are checked in
subprocesses: training then keeps Paddle's convolution and says why in one line.

Tests that need the operator skip with :func:`paddle_palm.ops.unavailable_reason`
when it cannot be built here (e.g. no C++ compiler).  The operator is built once
per machine into the cache (``python -m paddle_palm.ops``); these tests never
download its headers themselves.
"""

import copy
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_palm import ops, runtime
from paddle_palm.models import build_model

F = paddle.nn.functional
REPO = Path(__file__).resolve().parents[1]

#: A single convolution: largest |difference| over the largest |value| of Paddle's result.
RTOL = 1e-5
#: A whole network (dozens of layers, batch norm on a small batch): same measure.
MODEL_RTOL = 2e-4
#: A whole network's parameter gradient: |difference| / |Paddle's gradient| (2-norms); catches
#: a wrong layer, not rounding (see the model test for why it cannot be tighter).
GRAD_NORM_RTOL = 0.1


def assert_close(got, want, rtol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    scale = float(np.abs(want).max())
    error = float(np.abs(got - want).max())
    assert error <= rtol * max(scale, 1e-30), f"{what}: max |difference| {error:.3g} vs max |value| {scale:.3g}"


def tensor(array, grad=True):
    t = paddle.to_tensor(array)
    t.stop_gradient = not grad
    return t


def conv_and_grads(conv, x, w, b, r, x_grad=True, **kwargs):
    """Output of ``conv`` and the gradients of sum(out * r) with respect to x, w and b (fresh leaves)."""
    xt, wt = tensor(x, x_grad), tensor(w)
    bt = tensor(b) if b is not None else None
    out = conv(xt, wt, bt, **kwargs)
    (out * paddle.to_tensor(r)).sum().backward()
    grads = [None if t is None or t.grad is None else t.grad.numpy() for t in (xt, wt, bt)]
    return out.numpy(), grads


# --------------------------------------------------------------------------- ops.conv2d


# name: (input shape, weight shape, stride, padding, dilation, groups, bias)
CASES = {
    "1x1": ((2, 8, 6, 6), (5, 8, 1, 1), 1, 0, 1, 1, True),
    "1x1_stride2_downsample": ((2, 16, 8, 8), (32, 16, 1, 1), 2, 0, 1, 1, False),
    "3x3": ((2, 4, 8, 8), (6, 4, 3, 3), 1, 1, 1, 1, True),
    "3x3_wide_channels": ((2, 32, 7, 7), (64, 32, 3, 3), 1, 1, 1, 1, True),
    "3x3_channels_not_multiple_of_16": ((2, 24, 7, 7), (40, 24, 3, 3), 1, 1, 1, 1, True),
    "7x7_stride2_pad3": ((2, 3, 17, 17), (8, 3, 7, 7), 2, 3, 1, 1, False),
    "stride2": ((2, 4, 9, 9), (6, 4, 3, 3), 2, 1, 1, 1, True),
    "asymmetric_padding": ((2, 4, 7, 8), (5, 4, 3, 3), 1, [1, 0, 2, 1], 1, 1, True),
    "padding_hw": ((2, 4, 7, 7), (5, 4, 3, 3), 1, [0, 2], 1, 1, True),
    "dilation2": ((2, 4, 11, 11), (5, 4, 3, 3), 1, 2, 2, 1, True),
    "groups2": ((2, 6, 8, 8), (8, 3, 3, 3), 1, 1, 1, 2, True),
    "depthwise": ((2, 6, 9, 9), (6, 1, 3, 3), 1, 1, 1, 6, True),
    "depthwise_multiplier2_stride2": ((2, 4, 9, 9), (8, 1, 3, 3), 2, 1, 1, 4, False),
    "batch1": ((1, 4, 8, 8), (6, 4, 3, 3), 1, 1, 1, 1, True),
    "odd_sizes": ((3, 5, 13, 11), (7, 5, 3, 3), 2, 1, 1, 1, True),
    "non_square": ((2, 4, 6, 15), (5, 4, 3, 5), [1, 2], [1, 2], 1, 1, True),
    "first_layer_3_channels": ((2, 3, 32, 32), (16, 3, 3, 3), 2, 1, 1, 1, True),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name", list(CASES))
def test_conv2d_matches_paddle_forward_and_gradients(onednn, name, data_format):
    xs, ws, stride, padding, dilation, groups, has_bias = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(xs).astype("float32")
    if data_format == "NHWC":  # the same numbers, stored channels last
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype("float32")
    b = rng.standard_normal(ws[0]).astype("float32") if has_bias else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, data_format=data_format)
    # The weighted sum needs the output's shape: take it from Paddle's own result first.
    shape = F.conv2d(paddle.to_tensor(x), paddle.to_tensor(w), **kwargs).shape
    r = rng.standard_normal(shape).astype("float32")
    want, want_grads = conv_and_grads(F.conv2d, x, w, b, r, **kwargs)
    got, got_grads = conv_and_grads(ops.conv2d, x, w, b, r, **kwargs)
    assert_close(got, want, RTOL, f"{name}: output")
    for label, g, h in zip(("input", "weight", "bias"), got_grads, want_grads):
        if h is None:
            assert g is None, f"{name}: a {label} gradient where Paddle has none"
        else:
            assert g is not None, f"{name}: no {label} gradient"
            assert_close(g, h, RTOL, f"{name}: {label} gradient")


def test_weight_gradient_is_right_when_the_input_needs_none(onednn):
    """Images entering the first layer: the op skips the input gradient (input_grad=False)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 15, 15)).astype("float32")
    w = rng.standard_normal((8, 3, 3, 3)).astype("float32")
    b = rng.standard_normal(8).astype("float32")
    r = rng.standard_normal((2, 8, 8, 8)).astype("float32")
    kwargs = dict(stride=2, padding=1)
    want, (_, want_w, want_b) = conv_and_grads(F.conv2d, x, w, b, r, x_grad=False, **kwargs)
    got, (got_x, got_w, got_b) = conv_and_grads(ops.conv2d, x, w, b, r, x_grad=False, **kwargs)
    assert got_x is None
    assert_close(got, want, RTOL, "output")
    assert_close(got_w, want_w, RTOL, "weight gradient")
    assert_close(got_b, want_b, RTOL, "bias gradient")
    # The same geometry with an input that needs its gradient: now computed, and right.
    want, want_grads = conv_and_grads(F.conv2d, x, w, b, r, **kwargs)
    got, got_grads = conv_and_grads(ops.conv2d, x, w, b, r, **kwargs)
    for label, g, h in zip(("input", "weight", "bias"), got_grads, want_grads):
        assert_close(g, h, RTOL, f"{label} gradient after a call without it")


def test_inputs_that_are_views_are_read_in_their_logical_layout(onednn):
    """Channel slices, transposes and strided slices are views in Paddle 3; the op must see NCHW values."""
    rng = np.random.default_rng(2)
    big = paddle.to_tensor(rng.standard_normal((2, 6, 9, 11)).astype("float32"))
    w = paddle.to_tensor(rng.standard_normal((4, 3, 3, 3)).astype("float32"))
    for label, x in (("channel slice", big[:, 1:4]), ("transpose", big[:, :3].transpose([0, 1, 3, 2])),
                     ("strided slice", big[:, :3, ::2, :])):
        assert_close(ops.conv2d(x, w, padding=1).numpy(), F.conv2d(x, w, padding=1).numpy(), RTOL, label)


def test_conv2d_refuses_padding_it_cannot_express(onednn):
    x = paddle.ones([1, 2, 5, 5])
    w = paddle.ones([3, 2, 3, 3])
    with pytest.raises(ValueError, match="SAME"):
        ops.conv2d(x, w, padding="SAME")
    with pytest.raises(ValueError, match="stride"):
        ops.conv2d(x, w, stride=[1, 2, 3])


def test_repeated_calls_are_bit_identical(onednn):
    """Determinism is set: the same inputs give the same bits, also after other geometries ran."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 32, 16, 16)).astype("float32")
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype("float32")
    b = rng.standard_normal(32).astype("float32")
    r = rng.standard_normal((4, 32, 16, 16)).astype("float32")
    first, first_grads = conv_and_grads(ops.conv2d, x, w, b, r, padding=1)
    for round_ in range(3):
        other = rng.standard_normal((2, 32, 9, 9)).astype("float32")  # another geometry in between
        conv_and_grads(ops.conv2d, other, w, b, rng.standard_normal((2, 32, 5, 5)).astype("float32"), stride=2,
                       padding=1)
        again, again_grads = conv_and_grads(ops.conv2d, x, w, b, r, padding=1)
        assert np.array_equal(again, first), f"output changed on repetition {round_ + 1}"
        for label, g, h in zip(("input", "weight", "bias"), again_grads, first_grads):
            assert np.array_equal(g, h), f"{label} gradient changed on repetition {round_ + 1}"


def test_two_layers_of_the_same_geometry_keep_their_own_weights(onednn):
    """Primitives are cached by shape; the weights must still be each layer's own."""
    paddle.seed(4)
    first, second = paddle.nn.Conv2D(8, 8, 3, padding=1), paddle.nn.Conv2D(8, 8, 3, padding=1)
    model = paddle.nn.Sequential(first, paddle.nn.ReLU(), second)
    x = paddle.randn([2, 8, 10, 10])
    plain_mid = F.relu(first(x))
    plain_out = second(plain_mid)
    assert ops.accelerate(model) == 2
    fast_mid = F.relu(first(x))
    assert_close(fast_mid.numpy(), plain_mid.numpy(), RTOL, "first layer")
    assert_close(second(fast_mid).numpy(), plain_out.numpy(), RTOL, "second layer")
    assert_close(model(x).numpy(), plain_out.numpy(), RTOL, "both")
    assert not np.allclose(first(x).numpy(), second(x).numpy(), atol=1e-3)  # really different layers


def test_set_threads_reports_the_count_and_keeps_results(onednn):
    """Primitives made with one thread count and run with another still compute the same convolution."""
    before = ops.set_threads(0)  # 0: ask without changing
    assert before >= 1
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 48, 14, 14)).astype("float32")
    w = (rng.standard_normal((48, 48, 3, 3)) / 20).astype("float32")
    r = rng.standard_normal((4, 48, 14, 14)).astype("float32")
    want, want_grads = conv_and_grads(F.conv2d, x, w, None, r, padding=1)
    try:
        assert ops.set_threads(1) == 1
        one, one_grads = conv_and_grads(ops.conv2d, x, w, None, r, padding=1)  # first use: made with 1 thread
        assert ops.set_threads(2) == 2
        two, two_grads = conv_and_grads(ops.conv2d, x, w, None, r, padding=1)
    finally:
        assert ops.set_threads(before) == before
    for label, got, grads in (("1 thread", one, one_grads), ("2 threads", two, two_grads)):
        assert_close(got, want, RTOL, f"output with {label}")
        assert_close(grads[0], want_grads[0], RTOL, f"input gradient with {label}")
        assert_close(grads[1], want_grads[1], RTOL, f"weight gradient with {label}")


def test_more_geometries_than_the_cache_holds(onednn):
    """The primitive cache is emptied past 512 shapes; a backward after that rebuilds what it needs."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 4, 9, 9)).astype("float32")
    w = rng.standard_normal((5, 4, 3, 3)).astype("float32")
    r = rng.standard_normal((2, 5, 9, 9)).astype("float32")
    xt, wt = tensor(x), tensor(w)
    out = ops.conv2d(xt, wt, padding=1)
    one = paddle.ones([1, 1, 1, 1])
    for width in range(1, 530):  # 529 other shapes between this forward and its backward
        ops.conv2d(paddle.ones([1, 1, 1, width]), one)
    (out * paddle.to_tensor(r)).sum().backward()
    want, (want_x, want_w, _) = conv_and_grads(F.conv2d, x, w, None, r, padding=1)
    assert_close(out.numpy(), want, RTOL, "output")
    assert_close(xt.grad.numpy(), want_x, RTOL, "input gradient")
    assert_close(wt.grad.numpy(), want_w, RTOL, "weight gradient")


def test_shape_errors_name_the_operator_and_the_numbers(onednn):
    cases = [
        (paddle.ones([1, 4, 5, 5]), paddle.ones([2, 3, 3, 3]), {}, ["4 channels", "[2, 3, 3, 3]", "expects 3"]),
        (paddle.ones([1, 3, 2, 2]), paddle.ones([2, 3, 3, 3]), {}, ["larger"]),
        (paddle.ones([3, 5, 5]), paddle.ones([2, 3, 3, 3]), {}, ["4-D"]),
        (paddle.ones([1, 3, 5, 5], dtype="float64"), paddle.ones([2, 3, 3, 3], dtype="float64"), {}, ["float32"]),
    ]
    for x, w, kwargs, words in cases:
        with pytest.raises((ValueError, RuntimeError, OSError)) as info:
            ops.conv2d(x, w, **kwargs)
        first = str(info.value).strip().splitlines()[0]
        assert first.startswith("palm_conv2d") and all(word in first for word in words), first


def test_runtime_accelerate_model_switches_and_sets_threads(onednn):
    before = ops.set_threads(0)
    paddle.seed(15)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1), paddle.nn.ReLU(), paddle.nn.Conv2D(4, 2, 1))
    lines = []
    try:
        assert runtime.accelerate_model(model, threads=1, log=lines.append) == "onednn"
        assert ops.set_threads(0) == 1
    finally:
        ops.set_threads(before)
    assert ops.is_accelerated(model) and lines == []
    assert runtime.accelerate_model(paddle.nn.Linear(2, 2)) == "paddle"  # nothing to switch
    single = paddle.nn.Conv2D(2, 2, 1)
    assert ops.accelerate(single) == 1 and ops.is_accelerated(single) and ops.restore(single) == 1


# --------------------------------------------------------------------------- accelerate / restore


def conv_layers(model):
    return [layer for layer in model.sublayers(include_self=True) if type(layer) is paddle.nn.Conv2D]


def conv_layers_named(model):
    return [(name, layer) for name, layer in model.named_sublayers() if type(layer) is paddle.nn.Conv2D]


def record_conv_io(model):
    """Record, per Conv2D of ``model``, its next input, whether it needs a gradient, and its output gradient.

    Returns:
        dict: name -> [input array, input needs a gradient, output gradient array (after backward)].
    """
    records = {}

    def hook(name):
        def on_forward(layer, inputs, output):
            on_forward.handle.remove()  # the first call only
            entry = records[name] = [inputs[0].numpy().copy(), not inputs[0].stop_gradient, None]
            output.register_hook(lambda grad: entry.__setitem__(2, grad.numpy().copy()))
        return on_forward

    for name, layer in conv_layers_named(model):
        function = hook(name)
        function.handle = layer.register_forward_post_hook(function)
    return records


def twins(arch, **kwargs):
    """Two copies of the same project model with the same weights."""
    paddle.seed(0)
    plain = build_model(arch, **kwargs)
    fast = build_model(arch, **kwargs)
    fast.set_state_dict(plain.state_dict())
    return plain, fast


def snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


# arch, input side, batch
MODELS = [("squeezenet1_1", 64, 2), ("senet18_cifar", 32, 2), ("se_resnet18", 64, 4), ("resnet50", 64, 4)]


@pytest.mark.parametrize("arch, size, batch", MODELS)
def test_accelerate_a_project_model_changes_nothing_but_the_kernel(onednn, arch, size, batch):
    plain, fast = twins(arch)
    count = len(conv_layers(fast))
    assert count > 0
    before = snapshot(fast)

    assert ops.accelerate(fast) == count
    assert ops.is_accelerated(fast) and not ops.is_accelerated(plain)
    methods = [vars(layer)["forward"] for layer in conv_layers(fast)]
    assert ops.accelerate(fast) == 0, "a second accelerate switched layers again"
    assert all(vars(layer)["forward"] is m for layer, m in zip(conv_layers(fast), methods))
    after = snapshot(fast)
    assert list(after) == list(before)
    assert all(np.array_equal(after[k], before[k]) for k in before)

    rng = np.random.default_rng(6)
    x = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype("float32"))

    # Evaluation mode.
    plain.eval()
    fast.eval()
    with paddle.no_grad():
        want_eval = plain(x).numpy()
        assert_close(fast(x).numpy(), want_eval, MODEL_RTOL, f"{arch} eval output")

    # Training mode: same dropout masks (same seed), same output, same BN statistics, and
    # gradients that agree as a whole.  Whole-network gradients can only be compared loosely:
    # a ReLU input within ~1e-7 of zero flips with any change of summation order (one such
    # element changes senet18_cifar's upstream gradients by ~1%, batch norm over a 2x2 map
    # in resnet50 at 64 px by ~2%), so each layer's gradients are checked tightly below,
    # with the input and output gradient that layer really sees inside the network.
    plain.train()
    fast.train()
    outputs, grads, seen = [], [], []
    for model in (plain, fast):
        record = record_conv_io(model)
        paddle.seed(7)
        out = model(x)
        weights = paddle.to_tensor(np.random.default_rng(8).standard_normal(out.shape).astype("float32"))
        (out * weights).sum().backward()
        outputs.append(out.numpy())
        grads.append([None if p.grad is None else p.grad.numpy() for p in model.parameters()])
        seen.append(record)
    assert_close(outputs[1], outputs[0], MODEL_RTOL, f"{arch} train output")
    names = [name for name, _ in plain.named_parameters()]
    assert [g is None for g in grads[1]] == [g is None for g in grads[0]]
    assert sum(g is not None for g in grads[0]) > 0
    for name, g, h in zip(names, grads[1], grads[0]):
        if h is not None:
            error = float(np.linalg.norm(g - h) / max(np.linalg.norm(h), 1e-30))
            assert error <= GRAD_NORM_RTOL, f"{arch} gradient of {name}: relative difference {error:.3g}"
    stats_plain, stats_fast = snapshot(plain), snapshot(fast)
    for key in stats_plain:
        assert_close(stats_fast[key], stats_plain[key], MODEL_RTOL, f"{arch} {key} after a training forward")

    # Layer by layer: each switched Conv2D, fed the input and output gradient the plain network's
    # layer saw in that training step, gives Paddle's output and gradients.
    records, fast_convs = seen[0], dict(conv_layers_named(fast))
    assert len(records) == count
    for name, (inp, needs_grad, dy) in records.items():
        assert dy is not None, f"{arch} {name}: no output gradient recorded"
        results = []
        for layer in (dict(conv_layers_named(plain))[name], fast_convs[name]):
            layer.clear_gradients(set_to_zero=False)
            xt = tensor(inp, needs_grad)
            out = layer(xt)
            (out * paddle.to_tensor(dy)).sum().backward()
            results.append([out.numpy(), None if xt.grad is None else xt.grad.numpy(), layer.weight.grad.numpy(),
                            None if layer.bias is None else layer.bias.grad.numpy()])
        for label, g, h in zip(("output", "input gradient", "weight gradient", "bias gradient"), *results[::-1]):
            if h is None:
                assert g is None, f"{arch} {name}: {label} where Paddle has none"
            else:
                assert_close(g, h, RTOL, f"{arch} {name} {label}")

    # Restore: plain again, bit for bit.
    assert ops.restore(fast) == count
    assert not ops.is_accelerated(fast)
    assert all("forward" not in vars(layer) for layer in conv_layers(fast))
    assert ops.restore(fast) == 0
    fast.set_state_dict(plain.state_dict())  # the running statistics moved by slightly different amounts
    plain.eval()
    fast.eval()
    with paddle.no_grad():
        assert np.array_equal(fast(x).numpy(), plain(x).numpy())


def test_channels_last_resnet_computes_the_same_network(onednn):
    """accelerate(channels_last=True): ResNet's stages run on NHWC tensors; same outputs, gradients, statistics."""
    plain, fast = twins("resnet50")
    rng = np.random.default_rng(11)
    x = paddle.to_tensor(rng.uniform(-1, 1, (4, 3, 64, 64)).astype("float32"))
    assert ops.accelerate(fast, channels_last=True) == len(conv_layers(fast))
    assert fast.channels_last and not plain.channels_last
    stage_formats = {layer._data_format for layer in fast.layer1.sublayers() if hasattr(layer, "_data_format")}
    assert stage_formats == {"NHWC"}
    assert fast.stem.conv._data_format == "NCHW"  # the stem and its max pool stay NCHW
    plain.eval()
    fast.eval()
    with paddle.no_grad():
        features = fast.forward_features(x)
        assert features.shape == plain.forward_features(x).shape == [4, 2048, 2, 2]
        assert_close(fast(x).numpy(), plain(x).numpy(), MODEL_RTOL, "channels-last eval output")
    plain.train()
    fast.train()
    results = []
    for model in (plain, fast):
        out = model(x)
        weights = paddle.to_tensor(np.random.default_rng(12).standard_normal(out.shape).astype("float32"))
        (out * weights).sum().backward()
        results.append((out.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}))
    assert_close(results[1][0], results[0][0], MODEL_RTOL, "channels-last train output")
    assert results[1][1].keys() == results[0][1].keys() and results[0][1]
    for name, h in results[0][1].items():
        g = results[1][1][name]
        assert g.shape == h.shape, name
        error = float(np.linalg.norm(g - h) / max(np.linalg.norm(h), 1e-30))
        assert error <= GRAD_NORM_RTOL, f"channels-last gradient of {name}: relative difference {error:.3g}"
    stats_plain, stats_fast = snapshot(plain), snapshot(fast)
    assert list(stats_fast) == list(stats_plain)  # same state dict: same names, same OIHW weights
    for key in stats_plain:
        assert stats_fast[key].shape == stats_plain[key].shape, key
        assert_close(stats_fast[key], stats_plain[key], MODEL_RTOL, f"channels-last {key} after a training step")
    assert ops.restore(fast) == len(conv_layers(fast))
    assert not fast.channels_last
    assert {layer._data_format for layer in fast.layer1.sublayers() if hasattr(layer, "_data_format")} == {"NCHW"}
    fast.set_state_dict(plain.state_dict())
    plain.eval()
    fast.eval()
    with paddle.no_grad():
        assert np.array_equal(fast(x).numpy(), plain(x).numpy())


def test_channels_last_is_left_alone_by_networks_without_it(onednn):
    plain, fast = twins("squeezenet1_1")
    assert ops.accelerate(fast, channels_last=True) == len(conv_layers(fast))
    assert {layer._data_format for layer in conv_layers(fast)} == {"NCHW"}
    x = paddle.to_tensor(np.random.default_rng(13).uniform(-1, 1, (2, 3, 64, 64)).astype("float32"))
    plain.eval()
    fast.eval()
    with paddle.no_grad():
        assert_close(fast(x).numpy(), plain(x).numpy(), MODEL_RTOL, "squeezenet output")


def test_accelerate_switches_only_layers_it_can_compute(onednn):
    """SAME padding, reflect padding and per-dimension padding pairs stay on Paddle's convolution."""
    paddle.seed(9)
    layers = [
        paddle.nn.Conv2D(3, 4, 3, padding=1),
        paddle.nn.Conv2D(4, 4, 3, padding="SAME"),
        paddle.nn.Conv2D(4, 4, 3, padding=1, padding_mode="reflect"),
        paddle.nn.Conv2D(4, 4, 3, padding=[[0, 0], [0, 0], [1, 1], [1, 1]]),
        paddle.nn.Conv2D(4, 4, 3, padding=(1, 2)),
        paddle.nn.Conv2DTranspose(4, 4, 3, padding=1),
    ]
    plain = paddle.nn.Sequential(*layers)
    fast = paddle.nn.Sequential(*[copy.deepcopy(layer) for layer in layers])
    x = paddle.randn([2, 3, 11, 11])
    assert ops.accelerate(fast) == 2
    assert [("forward" in vars(layer)) for layer in fast] == [True, False, False, False, True, False]
    assert_close(fast(x).numpy(), plain(x).numpy(), RTOL, "mixed layers")


def test_a_deep_copy_of_an_accelerated_model_uses_its_own_weights(onednn):
    """copy.deepcopy (e.g. a teacher or averaged model) must not keep calling the original's layers."""
    paddle.seed(10)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 6, 3, padding=1), paddle.nn.ReLU(), paddle.nn.Conv2D(6, 2, 1))
    ops.accelerate(model)
    twin = copy.deepcopy(model)
    assert ops.is_accelerated(twin)
    with paddle.no_grad():
        for p in twin.parameters():
            p.set_value(p * 2.0)
    x = paddle.randn([1, 3, 8, 8])
    plain_twin = copy.deepcopy(twin)
    ops.restore(plain_twin)
    assert_close(twin(x).numpy(), plain_twin(x).numpy(), RTOL, "copy with its own weights")
    assert not np.allclose(twin(x).numpy(), model(x).numpy(), atol=1e-3)


# --------------------------------------------------------------------------- export and other dtypes


@pytest.mark.parametrize("arch", ["squeezenet1_1", "se_resnet18"])  # pooling layers; fused SE blocks
@pytest.mark.parametrize("full_graph", [True, False], ids=["ast", "sot"])
def test_an_accelerated_model_exports_with_paddle_jit(onednn, tmp_path, full_graph, arch):
    plain, fast = twins(arch)
    plain.eval()
    fast.eval()
    assert ops.accelerate(fast) > 0
    x = paddle.to_tensor(np.random.default_rng(11).uniform(-1, 1, (2, 3, 64, 64)).astype("float32"))
    with paddle.no_grad():
        want = plain(x).numpy()
    spec = [paddle.static.InputSpec([None, 3, 64, 64], "float32", name="image")]
    static = paddle.jit.to_static(fast, input_spec=spec, full_graph=full_graph)
    paddle.jit.save(static, str(tmp_path / "model"))
    loaded = paddle.jit.load(str(tmp_path / "model"))
    loaded.eval()
    with paddle.no_grad():
        assert_close(loaded(x).numpy(), want, MODEL_RTOL, "exported program")
    program = str(loaded.program())
    assert "conv2d" in program and "palm_" not in program, "the exported program calls a custom operator"


def test_float64_falls_back_to_paddle_convolution(onednn):
    paddle.seed(12)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1), paddle.nn.ReLU(),
                                 paddle.nn.Conv2D(4, 2, 3, stride=2))
    plain = copy.deepcopy(model)
    assert ops.accelerate(model) == 2
    model.to(dtype="float64")
    plain.to(dtype="float64")
    x = paddle.to_tensor(np.random.default_rng(13).standard_normal((2, 3, 9, 9)))
    x.stop_gradient = False
    out = model(x)
    assert out.dtype == paddle.float64
    want = plain(x)
    np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
    out.sum().backward()
    grad_fast = [p.grad.numpy() for p in model.parameters()]
    want.sum().backward()
    for g, h in zip(grad_fast, [p.grad.numpy() for p in plain.parameters()]):
        np.testing.assert_allclose(g, h, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- when it is unavailable


def run_python(code, env_changes, cwd=REPO, timeout=180):
    env = dict(os.environ)
    env.update(env_changes)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


UNAVAILABLE_SCRIPT = r"""
import json
import numpy as np
import paddle
from paddle_palm import ops, runtime
from paddle_palm.models import build_model

result = {"module": repr(ops.load()), "reason": ops.unavailable_reason()}
paddle.seed(0)
model = build_model("senet18_cifar")
lines = []
result["conv"] = runtime.accelerate_model(model, log=lines.append)
result["lines"] = lines
result["accelerated"] = ops.is_accelerated(model)
result["switched"] = ops.accelerate(model)
try:
    ops.conv2d(paddle.ones([1, 3, 4, 4]), paddle.ones([2, 3, 3, 3]))
    result["conv2d"] = "no error"
except ops.OpsUnavailable as exc:
    result["conv2d"] = str(exc)
before = [p.numpy().copy() for p in model.parameters()]
opt = paddle.optimizer.Momentum(0.05, parameters=model.parameters())
x = paddle.to_tensor(np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype("float32"))
loss = paddle.nn.functional.cross_entropy(model(x), paddle.to_tensor([1, 3]))
loss.backward()
opt.step()
result["loss"] = float(loss)
result["changed"] = sum(not np.array_equal(b, p.numpy()) for b, p in zip(before, model.parameters()))
result["parameters"] = len(before)
print(json.dumps(result))
"""


def test_switched_off_by_environment_training_keeps_paddle_convolution():
    done = run_python(UNAVAILABLE_SCRIPT, {"PADDLE_PALM_ONEDNN": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"] == "None"
    assert "PADDLE_PALM_ONEDNN" in result["reason"] and "\n" not in result["reason"]
    assert result["conv"] == "paddle"
    assert len(result["lines"]) == 1 and "PADDLE_PALM_ONEDNN" in result["lines"][0], result["lines"]
    assert not result["accelerated"] and result["switched"] == 0
    assert "PADDLE_PALM_ONEDNN" in result["conv2d"]
    assert np.isfinite(result["loss"]) and result["changed"] == result["parameters"] > 0


def test_without_a_compiler_it_says_so_and_builds_nothing(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    cache = tmp_path / "cache"
    code = UNAVAILABLE_SCRIPT.replace("print(json.dumps(result))", "") + r"""
import contextlib, io
from paddle_palm.ops import __main__ as cli
err = io.StringIO()
with contextlib.redirect_stderr(err):
    result["cli_code"] = cli.main(["--no-download"])
result["cli_stderr"] = err.getvalue()
print(json.dumps(result))
"""
    done = run_python(code, {"PATH": str(empty_bin), "CXX": str(tmp_path / "no-such-compiler"),
                             "PADDLE_PALM_CACHE": str(cache), "PADDLE_PALM_ONEDNN": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"] == "None"
    assert "compiler" in result["reason"] and "\n" not in result["reason"], result["reason"]
    assert result["conv"] == "paddle" and len(result["lines"]) == 1 and "compiler" in result["lines"][0]
    assert result["switched"] == 0 and "compiler" in result["conv2d"]
    assert result["changed"] == result["parameters"] > 0
    assert result["cli_code"] == 1
    message = result["cli_stderr"].strip().splitlines()
    assert len(message) == 1 and message[0].startswith("oneDNN convolutions unavailable") and "compiler" in message[0]
    assert not list(cache.rglob("*.so")) and not (cache / "onednn-headers").exists()


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_build_refuses_when_switched_off(monkeypatch, value):
    monkeypatch.setenv("PADDLE_PALM_ONEDNN", value)
    with pytest.raises(ops.OpsUnavailable, match=f"PADDLE_PALM_ONEDNN={value}"):
        ops.build(download=False)


def test_build_without_headers_and_without_download_is_one_line(monkeypatch, tmp_path):
    if ops.onednn_library() is None:
        pytest.skip("this Paddle ships no oneDNN library")
    system = os.path.join(sys.prefix, "include")
    if ops._header_version(system) is not None:
        pytest.skip(f"oneDNN headers are installed in {system}")
    fake = tmp_path / "old-headers"
    (fake / "oneapi" / "dnnl").mkdir(parents=True)
    (fake / "oneapi" / "dnnl" / "dnnl_version.h").write_text(
        "#define DNNL_VERSION_MAJOR 2\n#define DNNL_VERSION_MINOR 7\n#define DNNL_VERSION_PATCH 0\n")
    monkeypatch.setenv("PADDLE_PALM_ONEDNN", "1")
    monkeypatch.setenv("PADDLE_PALM_CACHE", str(tmp_path / "cache"))
    for include in (tmp_path / "nowhere", fake):  # missing, then of another oneDNN version
        monkeypatch.setenv("PADDLE_PALM_ONEDNN_INCLUDE", str(include))
        if ops._compiler() is None:
            with pytest.raises(ops.OpsUnavailable, match="compiler"):
                ops.build(download=False)
            continue
        with pytest.raises(ops.OpsUnavailable) as info:
            ops.build(download=False)
        message = str(info.value)
        assert "\n" not in message, message
        if ops.onednn_version()[:2] in ops.ONEDNN_DEVEL_RELEASES:  # the headers can be fetched: say how
            assert "headers not found" in message and "python -m paddle_palm.ops" in message, message
        else:  # none on PyPI (Paddle 2.6.2's oneDNN 3.2): say where to point
            assert "has no headers for oneDNN" in message and "PADDLE_PALM_ONEDNN_INCLUDE" in message, message
    assert not list((tmp_path / "cache").rglob("*.so"))


def offline_env(tmp_path):
    """Environment of a machine without the headers and without a package index (pip fails at once)."""
    empty = tmp_path / "no-wheels"
    empty.mkdir(exist_ok=True)
    return {"PADDLE_PALM_ONEDNN": "1", "PADDLE_PALM_CACHE": str(tmp_path / "cache"),
            "PADDLE_PALM_ONEDNN_INCLUDE": str(tmp_path / "nowhere"), "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty)}


LOAD_SCRIPT = r"""
import json
from paddle_palm import ops
print(json.dumps({"module": repr(ops.load()), "reason": ops.unavailable_reason()}))
"""


def run_module(env_changes, *args):
    env = dict(os.environ)
    env.update(env_changes)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "paddle_palm.ops", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


def test_training_never_downloads_and_a_failed_download_is_remembered(tmp_path):
    version = ops.onednn_version()
    if version is None or version[:2] not in ops.ONEDNN_DEVEL_RELEASES:
        pytest.skip("no onednn-devel release for this Paddle's oneDNN")
    if ops._header_version(os.path.join(sys.prefix, "include")) is not None or ops._compiler() is None:
        pytest.skip("headers installed in the environment, or no compiler")
    env = offline_env(tmp_path)
    marker = tmp_path / "cache" / "onednn-headers" / f"{version[0]}.{version[1]}" / "FETCH-FAILED"
    # Training (ops.load) with no headers: one line pointing at the build step; no download tried.
    done = run_python(LOAD_SCRIPT, env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"] == "None" and "python -m paddle_palm.ops" in result["reason"], result
    assert not marker.exists()
    # The explicit build step tries, fails (no index), says so in one line and remembers why.
    done = run_module(env)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("oneDNN")]  # not Paddle's warnings
    assert len(lines) == 1 and "could not download the oneDNN headers" in lines[0], done.stderr
    first = marker.read_text()
    assert "could not download" in first
    # Training afterwards repeats the remembered reason without touching the registry.
    done = run_python(LOAD_SCRIPT, env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failed earlier" in result["reason"] and "could not download" in result["reason"], result
    assert "\n" not in result["reason"] and marker.read_text() == first
    # The build step retries (and records the new attempt).
    marker.write_text("2000-01-01 00:00:00 an older failure\n")
    done = run_module(env)
    assert done.returncode == 1 and "could not download" in marker.read_text()
    assert not list((tmp_path / "cache").rglob("*.so"))


def test_a_failed_compilation_is_remembered_until_the_build_step_retries(onednn, tmp_path):
    include = ops.headers_dir(download=False)
    counter = tmp_path / "calls"
    compiler = tmp_path / "broken-g++"
    compiler.write_text(f"#!/bin/sh\necho x >> {counter}\necho 'error: this compiler is broken' >&2\nexit 1\n")
    compiler.chmod(0o755)
    env = dict(offline_env(tmp_path), PADDLE_PALM_ONEDNN_INCLUDE=include, CXX=str(compiler))
    reasons = []
    for _ in range(2):
        done = run_python(LOAD_SCRIPT, env)
        reasons.append(json.loads(done.stdout.strip().splitlines()[-1])["reason"])
    assert "this compiler is broken" in reasons[0] and "failed earlier" not in reasons[0], reasons
    assert "failed earlier" in reasons[1] and "this compiler is broken" in reasons[1], reasons
    assert counter.read_text().count("x") == 1  # the second run did not compile again
    done = run_module(env, "--no-download")
    assert done.returncode == 1 and counter.read_text().count("x") == 2


def test_build_in_the_warm_cache_returns_the_loaded_library(onednn):
    path = ops.build(download=False)
    assert path == onednn.path and os.path.isfile(path)
    assert os.path.dirname(path) == os.path.join(ops.cache_dir(), "ops")
    assert onednn.version == ops.onednn_version() and onednn.version[0] >= 3


# --------------------------------------------------------------------------- command lines


def test_python_m_paddle_palm_ops_reports_ready(onednn):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, "-m", "paddle_palm.ops", "--no-download"], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ready = [line for line in done.stdout.splitlines() if line.startswith("oneDNN") and "ready" in line]
    assert len(ready) == 1, done.stdout
    assert ".".join(map(str, onednn.version)) in ready[0] and onednn.path in ready[0]
    difference = float(ready[0].rsplit(" ", 1)[-1].rstrip(")"))
    assert difference < 1e-4


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from paddle_palm.data.synthetic import make_synthetic_palm

    return make_synthetic_palm(tmp_path_factory.mktemp("ops") / "data", n_train=8, n_valid=4, image_size=64, seed=1)


@pytest.mark.parametrize("flag, expected", [("--fast", "oneDNN convolutions"), ("--no-fast", "plain dygraph")])
def test_train_cli_says_which_convolution_it_uses(repo_root, tiny_data, tmp_path, flag, expected):
    if flag == "--fast" and ops.load() is None:
        expected = "Paddle convolutions"
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "train.py"), "--arch", "squeezenet1_1",
                           "--data-dir", str(tiny_data), "--image-size", "64", "--epochs", "1", "--batch-size", "4",
                           "--no-progress", "--output-dir", str(out), flag],
                          capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in (out / "train.log").read_text().splitlines() if "device cpu" in line]
    assert len(lines) == 1, lines
    assert expected in lines[0], lines[0]


# ResNet-50's real sizes at batch 10 (224 px): large maps make oneDNN split the work (and the
# weight-gradient reductions) across threads differently from the small cases above.
#: The stem's weight gradient sums 10 x 112 x 112 = 125,440 products per weight: on an AVX2-only CPU
#: oneDNN's backward-weights kernel lands 1.1e-5 (of the largest value) from a float64 computation,
#: Paddle's GEMM 6e-7; on AVX-512 CPUs both are within 1e-5.  Float rounding, not a wrong result.
FULL_SIZE_WEIGHT_GRAD_RTOL = 3e-5
FULL_SIZE = [
    ((10, 3, 224, 224), (64, 3, 7, 7), 2, 3),
    ((10, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ((10, 1024, 14, 14), (2048, 1024, 1, 1), 2, 0),
]


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_full_size_resnet50_geometries(onednn, data_format):
    rng = np.random.default_rng(21)
    threads = ops.set_threads(0)
    try:
        ops.set_threads(2)
        for xs, ws, stride, padding in FULL_SIZE:
            x = rng.standard_normal(xs).astype("float32")
            if data_format == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype("float32")
            kwargs = dict(stride=stride, padding=padding, data_format=data_format)
            shape = F.conv2d(paddle.to_tensor(x), paddle.to_tensor(w), **kwargs).shape
            r = rng.standard_normal(shape).astype("float32")
            want, want_grads = conv_and_grads(F.conv2d, x, w, None, r, **kwargs)
            got, got_grads = conv_and_grads(ops.conv2d, x, w, None, r, **kwargs)
            label = f"{data_format} {xs} * {ws}"
            assert_close(got, want, RTOL, f"{label}: output")
            assert_close(got_grads[0], want_grads[0], RTOL, f"{label}: input gradient")
            assert_close(got_grads[1], want_grads[1], FULL_SIZE_WEIGHT_GRAD_RTOL, f"{label}: weight gradient")
    finally:
        ops.set_threads(threads)


# --------------------------------------------------------------------------- fused batch norm (channels last)

#: The channels-last batch norms of the networks as trained: ResNet-50 at 224 px, batch 10 (its four
#: stages) and se_resnet18 at 128 px, batch 16 (configs/palm_cpu.yaml), as [N, H, W, C].
BN_SHAPES = [(10, 56, 56, 64), (10, 56, 56, 256), (10, 28, 28, 128), (10, 28, 28, 512), (10, 14, 14, 256),
             (10, 14, 14, 1024), (10, 7, 7, 512), (10, 7, 7, 2048),
             (16, 32, 32, 64), (16, 16, 16, 128), (16, 8, 8, 256), (16, 4, 4, 512)]
#: (ReLU, residual): bn + ReLU (inside blocks), bn alone (shortcuts, SE blocks), bn + add + ReLU (block ends).
BN_VARIANTS = {"relu": (True, False), "plain": (False, False), "add_relu": (True, True)}


def batch_norm_layer(channels, seed, data_format="NHWC"):
    """A BatchNorm2D (channels-last by default) with non-trivial scale, shift and running statistics."""
    rng = np.random.default_rng(seed)
    bn = paddle.nn.BatchNorm2D(channels, data_format=data_format)
    bn.weight.set_value(rng.uniform(0.5, 1.5, channels).astype("float32"))
    bn.bias.set_value(rng.uniform(-0.5, 0.5, channels).astype("float32"))
    bn._mean.set_value(rng.uniform(-0.1, 0.1, channels).astype("float32"))
    bn._variance.set_value(rng.uniform(0.9, 1.1, channels).astype("float32"))
    return bn


def layout_shape(shape, data_format):
    """An NHWC shape of BN_SHAPES in ``data_format``."""
    n, h, w, c = shape
    return shape if data_format == "NHWC" else (n, c, h, w)


def batch_norm_case(shape, relu, residual, seed=0, data_format="NHWC"):
    """Inputs of one case: x (mean 1, spread 3), the residual and the output gradient.

    Where Paddle's pre-activation is within 1e-4 of 0 the output gradient is set to 0: there a
    rounding difference of 1e-7 may flip the ReLU's mask, which is equally right either way.
    """
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype("float32")
    z = rng.standard_normal(shape).astype("float32") if residual else None
    g = rng.standard_normal(shape).astype("float32")
    if relu:
        channels = shape[-1] if data_format == "NHWC" else shape[1]
        pre = batch_norm_layer(channels, seed, data_format)(paddle.to_tensor(x)).numpy()
        if residual:
            pre = pre + z
        g[np.abs(pre) < 1e-4] = 0
    return x, z, g


def run_batch_norm(fused, shape, relu, residual, seed=0, data_format="NHWC"):
    """Output, gradients of x, scale, bias (and residual) and the running statistics after one step."""
    x, z, g = batch_norm_case(shape, relu, residual, seed, data_format)
    bn = batch_norm_layer(shape[-1] if data_format == "NHWC" else shape[1], seed, data_format)
    xt, zt = tensor(x), (tensor(z) if z is not None else None)
    if fused:
        y = ops.batch_norm_act(xt, bn, relu=relu, residual=zt)
    else:
        y = bn(xt)
        y = y + zt if zt is not None else y
        y = F.relu(y) if relu else y
    paddle.autograd.backward([y], [paddle.to_tensor(g)])
    results = {"output": y.numpy(), "input gradient": xt.grad.numpy(), "scale gradient": bn.weight.grad.numpy(),
               "bias gradient": bn.bias.grad.numpy(), "running mean": bn._mean.numpy(),
               "running variance": bn._variance.numpy()}
    if zt is not None:
        results["residual gradient"] = zt.grad.numpy()
    return results


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("variant", list(BN_VARIANTS))
@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_batch_norm_matches_paddle_at_the_networks_sizes_with_2_threads(onednn, shape, variant, data_format):
    relu, residual = BN_VARIANTS[variant]
    shape = layout_shape(shape, data_format)
    threads = ops.set_threads(0)
    try:
        assert ops.set_threads(2) == 2
        want = run_batch_norm(False, shape, relu, residual, data_format=data_format)
        got = run_batch_norm(True, shape, relu, residual, data_format=data_format)
    finally:
        ops.set_threads(threads)
    assert got.keys() == want.keys()
    for what in want:
        assert_close(got[what], want[what], RTOL, f"{shape} {variant} {data_format}: {what}")


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_fused_batch_norm_is_bit_identical_across_threads_and_calls(onednn, data_format):
    shape = layout_shape((10, 28, 28, 128), data_format)
    threads = ops.set_threads(0)
    try:
        runs = []
        for count in (1, 2, 2):
            ops.set_threads(count)
            runs.append(run_batch_norm(True, shape, True, True, seed=3, data_format=data_format))
    finally:
        ops.set_threads(threads)
    for run in runs[1:]:
        for what in runs[0]:
            assert np.array_equal(run[what], runs[0][what]), what


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_fused_batch_norm_keeps_its_precision_when_the_mean_is_large(onednn, data_format):
    """Values around 1000 with spread 0.01: the statistics are summed around a shift (the first
    value of each channel) in float and added up in double, so the normalised output stays within
    1% of the spread of a float64 computation (Paddle's own kernel: 6.7% here)."""
    rng = np.random.default_rng(5)
    x = (1000 + 0.01 * rng.standard_normal((4, 16, 16, 32))).astype("float32")
    x64 = x.astype("float64")
    bn = batch_norm_layer(32, 5)
    want = (x64 - x64.mean((0, 1, 2))) / np.sqrt(x64.var((0, 1, 2)) + 1e-5) * bn.weight.numpy() + bn.bias.numpy()
    if data_format == "NCHW":
        x, want = x.transpose(0, 3, 1, 2).copy(), want.transpose(0, 3, 1, 2)
        bn = batch_norm_layer(32, 5, "NCHW")
    got = ops.batch_norm_act(tensor(x), bn, relu=False).numpy()
    assert float(np.abs(got - want).max()) < 0.01


def test_fused_batch_norm_falls_back_to_paddle_where_it_does_not_apply(onednn):
    """Evaluation mode is Paddle's own batch norm, bit for bit, in both layouts."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 8, 8, 16)).astype("float32")
    for data_format in ("NHWC", "NCHW"):
        bn = batch_norm_layer(16, 6, data_format)
        bn.eval()
        xt = tensor(x if data_format == "NHWC" else x.transpose(0, 3, 1, 2).copy())
        assert np.array_equal(ops.batch_norm_act(xt, bn).numpy(), F.relu(bn(xt)).numpy())


def test_fused_batch_norm_rejects_mismatched_sizes(onednn):
    bn = batch_norm_layer(16, 7)
    with pytest.raises((ValueError, RuntimeError, OSError), match="16|channels|values"):
        from paddle import _C_ops

        _C_ops._run_custom_op("palm_batch_norm", paddle.ones([2, 4, 4, 8]), bn.weight, bn.bias, bn._mean,
                              bn._variance, 0.9, 1e-5, True, True)


@pytest.mark.parametrize("arch, size, kwargs", [("se_resnet18", 64, {}), ("senet18_cifar", 32, {}),
                                                ("senet18", 32, {"input_size": 32})])
def test_channels_last_senet_computes_the_same_network(onednn, arch, size, kwargs):
    """SENet.set_channels_last (fused batch norms, NHWC squeeze-excitation): same outputs, gradients, statistics.

    The trainer leaves SE-ResNets on NCHW (channels_last_pays is False: no measured gain) and
    switches SENet18 (whose full-resolution first stage gains), but the switch must compute the same
    network either way."""
    plain, fast = twins(arch, **kwargs)
    assert ops.accelerate(fast, channels_last=True) == len(conv_layers(fast))
    assert fast.channels_last == (arch == "senet18")  # accelerate switches only the variant measured to gain
    fast.set_channels_last(True)
    x = paddle.to_tensor(np.random.default_rng(14).uniform(-1, 1, (4, 3, size, size)).astype("float32"))
    results = []
    for model in (plain, fast):
        model.train()
        out = model(x)
        weights = paddle.to_tensor(np.random.default_rng(15).standard_normal(out.shape).astype("float32"))
        (out * weights).sum().backward()
        results.append((out.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}))
    assert_close(results[1][0], results[0][0], MODEL_RTOL, f"{arch} channels-last train output")
    assert results[1][1].keys() == results[0][1].keys() and results[0][1]
    # A bias right before a batch norm (SENet18's convolutions have them) has a gradient of exactly 0
    # in exact arithmetic: both runs leave rounding noise near 1e-9 there, compared on the model's scale.
    floor = 1e-5 * max(np.linalg.norm(h) for h in results[0][1].values())
    for name, h in results[0][1].items():
        error = float(np.linalg.norm(results[1][1][name] - h) / max(np.linalg.norm(h), floor))
        assert error <= GRAD_NORM_RTOL, f"{arch} channels-last gradient of {name}: relative difference {error:.3g}"
    stats_plain, stats_fast = snapshot(plain), snapshot(fast)
    for key in stats_plain:
        assert_close(stats_fast[key], stats_plain[key], MODEL_RTOL, f"{arch} channels-last {key}")
    plain.eval()
    fast.eval()
    with paddle.no_grad():
        assert_close(fast(x).numpy(), plain(x).numpy(), MODEL_RTOL, f"{arch} channels-last eval output")
