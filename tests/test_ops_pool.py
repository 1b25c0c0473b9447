"""The operators' pooling (``palm_pool2d``) and SE-block end (``palm_scale_add``) compute what Paddle computes.

``ops.pool2d`` / ``ops.global_avg_pool2d`` are checked against ``paddle.nn.functional``'s
max and average pooling, and ``ops.scale_add`` against Paddle's multiply, add and ReLU, in
both layouts, forward and backward, at the sizes the project's networks use and with 2
threads; then for ties, determinism, the fallbacks, the switching of pooling layers by
``ops.accelerate`` and clear errors.  The tests skip where the operators cannot be built.
"""

import numpy as np
import paddle
import pytest

from paddle_palm import ops

F = paddle.nn.functional

#: Largest |difference| over the largest |value| of Paddle's result (sums in another order).
RTOL = 1e-5

# name: (NCHW input shape, kernel, stride, padding, ceil_mode, mode, exclusive)
POOL_CASES = {
    "se_resnet18_stem_max": ((16, 64, 64, 64), 3, 2, 1, False, "max", True),
    "resnet50_stem_max": ((10, 64, 112, 112), 3, 2, 1, False, "max", True),
    "squeezenet_max_ceil": ((4, 96, 31, 31), 3, 2, 0, True, "max", True),
    "senet18_head_avg4": ((4, 512, 28, 28), 4, None, 0, False, "avg", True),
    "max_2x2": ((2, 5, 8, 8), 2, 2, 0, False, "max", True),
    "max_rectangular_asymmetric": ((2, 3, 7, 9), (2, 3), (1, 2), [1, 0, 2, 1], False, "max", True),
    "avg_padded_exclusive": ((2, 6, 9, 10), 3, 2, 1, False, "avg", True),
    "avg_padded_inclusive": ((2, 6, 9, 10), 3, 2, 1, False, "avg", False),
    "avg_ceil_exclusive": ((2, 6, 10, 10), 3, 2, 1, True, "avg", True),
    "avg_ceil_inclusive": ((2, 6, 10, 10), 3, 2, 1, True, "avg", False),
    "avg_ceil_inclusive_unpadded": ((2, 6, 10, 10), 3, 2, 0, True, "avg", False),
}


def to_layout(array, data_format):
    return array if data_format == "NCHW" else np.ascontiguousarray(array.transpose(0, 2, 3, 1))


def output_and_grad(function, x, seed):
    """``function(x)`` and the gradient of sum(out * r) with respect to x, r random of out's shape."""
    xt = paddle.to_tensor(x)
    xt.stop_gradient = False
    out = function(xt)
    r = np.random.default_rng(seed).standard_normal(out.shape).astype("float32")
    (out * paddle.to_tensor(r)).sum().backward()
    return out.numpy(), xt.grad.numpy()


def assert_close(got, want, rtol, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = float(np.abs(want).max())
    error = float(np.abs(got - want).max())
    assert error <= rtol * max(scale, 1e-30), f"{what}: max |difference| {error:.3g} vs max |value| {scale:.3g}"


@pytest.fixture
def two_threads(onednn):
    threads = ops.set_threads(0)
    ops.set_threads(2)
    yield
    ops.set_threads(threads)


def paddle_pool(kernel, stride, padding, ceil_mode, mode, exclusive, data_format):
    if mode == "max":
        return lambda t: F.max_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode, data_format=data_format)
    return lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode, exclusive=exclusive,
                                  data_format=data_format)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pool2d_matches_paddle(two_threads, case, data_format):
    shape, kernel, stride, padding, ceil_mode, mode, exclusive = POOL_CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    if mode == "max":
        x = np.maximum(x, 0)  # after a ReLU, as in the networks: whole windows of tied zeros
    x = to_layout(x, data_format)
    want = output_and_grad(paddle_pool(kernel, stride, padding, ceil_mode, mode, exclusive, data_format), x, 1)
    got = output_and_grad(lambda t: ops.pool2d(t, kernel, stride, padding, ceil_mode, mode, exclusive,
                                                data_format), x, 1)
    if mode == "max":
        # The same maxima, and each output gradient at the same (first) maximum of its window.
        assert np.array_equal(got[0], want[0]), f"{case} {data_format}: output"
        assert_close(got[1], want[1], 1e-6, f"{case} {data_format}: input gradient")
    else:
        assert_close(got[0], want[0], RTOL, f"{case} {data_format}: output")
        assert_close(got[1], want[1], RTOL, f"{case} {data_format}: input gradient")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_pool_gradient_goes_to_the_first_maximum_of_a_window(onednn, data_format):
    x = np.zeros((1, 1, 4, 4), "float32")
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 5.0  # a tie in the first 2x2 window; the other three are all zeros
    x_in = to_layout(x, data_format)
    _, grad = output_and_grad(lambda t: ops.pool2d(t, 2, 2, 0, data_format=data_format), x_in, 2)
    _, want = output_and_grad(lambda t: F.max_pool2d(t, 2, 2, 0, data_format=data_format), x_in, 2)
    assert np.array_equal(grad, want)
    grad = grad if data_format == "NCHW" else grad.transpose(0, 3, 1, 2)
    assert sorted(zip(*np.nonzero(grad[0, 0]))) == [(0, 0), (0, 2), (2, 0), (2, 2)]  # each window's first


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_global_avg_pool2d_matches_adaptive_avg_pool(two_threads, data_format):
    x = to_layout(np.random.default_rng(3).standard_normal((16, 256, 8, 8)).astype("float32"), data_format)
    want = output_and_grad(lambda t: F.adaptive_avg_pool2d(t, 1, data_format=data_format), x, 4)
    got = output_and_grad(lambda t: ops.global_avg_pool2d(t, data_format), x, 4)
    assert_close(got[0], want[0], RTOL, "output")
    assert_close(got[1], want[1], RTOL, "input gradient")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool2d_is_bit_identical_across_threads_and_calls(onednn, mode, data_format):
    x = to_layout(np.random.default_rng(5).standard_normal((8, 64, 32, 32)).astype("float32"), data_format)
    threads = ops.set_threads(0)
    try:
        runs = []
        for count in (1, 2, 2):
            ops.set_threads(count)
            runs.append(output_and_grad(lambda t: ops.pool2d(t, 3, 2, 1, mode=mode, data_format=data_format), x, 6))
    finally:
        ops.set_threads(threads)
    for out, grad in runs[1:]:
        assert np.array_equal(out, runs[0][0]) and np.array_equal(grad, runs[0][1])


def test_pool2d_falls_back_to_paddle_where_it_does_not_apply(onednn):
    x64 = np.random.default_rng(7).standard_normal((2, 3, 8, 8))
    assert np.array_equal(ops.pool2d(paddle.to_tensor(x64), 3, 2, 1).numpy(),
                          F.max_pool2d(paddle.to_tensor(x64), 3, 2, 1).numpy())
    x = paddle.to_tensor(x64.astype("float32"))
    assert np.array_equal(ops.pool2d(x, 3, 2, "SAME").numpy(), F.max_pool2d(x, 3, 2, "SAME").numpy())
    with pytest.raises(ValueError, match="mode"):
        ops.pool2d(x, 3, mode="median")


def test_pool2d_rejects_a_window_larger_than_the_input(onednn):
    with pytest.raises((ValueError, RuntimeError, OSError), match="smaller than the 5x5 window"):
        ops.pool2d(paddle.ones([1, 2, 3, 3]), 5, 1, 0)


# --------------------------------------------------------------------------- scale_add


# The SE blocks' maps: (images, channels, side) of se_resnet18 at 128 px and senet18 at 224 px.
SCALE_SHAPES = [(16, 64, 32), (16, 512, 4), (2, 64, 224), (3, 24, 7)]


def scale_add_case(shape, data_format, seed=0):
    n, c, side = shape
    rng = np.random.default_rng(seed)
    x = to_layout(rng.standard_normal((n, c, side, side)).astype("float32"), data_format)
    z = to_layout(rng.standard_normal((n, c, side, side)).astype("float32"), data_format)
    w = rng.uniform(0, 1, (n, c, 1, 1) if data_format == "NCHW" else (n, 1, 1, c)).astype("float32")
    g = to_layout(rng.standard_normal((n, c, side, side)).astype("float32"), data_format)
    return x, w, z, g


def run_scale_add(function, x, w, z, g):
    leaves = [paddle.to_tensor(v) for v in (x, w, z)]
    for leaf in leaves:
        leaf.stop_gradient = False
    out = function(*leaves)
    paddle.autograd.backward([out], [paddle.to_tensor(g)])
    return [out.numpy()] + [leaf.grad.numpy() for leaf in leaves]


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "linear"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", SCALE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_scale_add_matches_paddle(two_threads, shape, data_format, relu):
    x, w, z, g = scale_add_case(shape, data_format)
    if relu:
        g[np.abs(x * w + z) < 1e-5] = 0  # where a rounding difference may flip the ReLU's mask

    def reference(a, b, c):
        y = a * b + c
        return F.relu(y) if relu else y

    want = run_scale_add(reference, x, w, z, g)
    got = run_scale_add(lambda a, b, c: ops.scale_add(a, b, c, relu, data_format), x, w, z, g)
    for what, mine, theirs in zip(("output", "x gradient", "w gradient", "z gradient"), got, want):
        assert_close(mine, theirs, RTOL, f"{shape} {data_format} relu={relu}: {what}")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_scale_add_is_bit_identical_across_threads(onednn, data_format):
    x, w, z, g = scale_add_case((8, 128, 16), data_format, seed=9)
    threads = ops.set_threads(0)
    try:
        runs = []
        for count in (1, 2, 2):
            ops.set_threads(count)
            runs.append(run_scale_add(lambda a, b, c: ops.scale_add(a, b, c, True, data_format), x, w, z, g))
    finally:
        ops.set_threads(threads)
    for run in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(run, runs[0]))


def test_scale_add_falls_back_to_paddle_for_float64(onednn):
    x, w, z, _ = (v.astype("float64") for v in scale_add_case((2, 8, 4), "NCHW", seed=10))
    got = ops.scale_add(paddle.to_tensor(x), paddle.to_tensor(w), paddle.to_tensor(z), relu=True).numpy()
    assert np.array_equal(got, np.maximum(x * w + z, 0))


def test_scale_add_rejects_weights_of_the_wrong_size(onednn):
    x = paddle.ones([2, 8, 4, 4])
    with pytest.raises((ValueError, RuntimeError, OSError), match="one value per image and channel"):
        ops.scale_add(x, paddle.ones([2, 4, 1, 1]), x)


# --------------------------------------------------------------------------- accelerate


def test_accelerate_switches_pooling_layers_and_restore_puts_them_back(onednn):
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3, padding=1), paddle.nn.MaxPool2D(3, 2, 1),
                                 paddle.nn.AvgPool2D(2), paddle.nn.AdaptiveAvgPool2D(1),
                                 paddle.nn.MaxPool2D(2, return_mask=True), paddle.nn.AdaptiveAvgPool2D(2))
    assert ops.accelerate(model) == 1  # the convolutions are counted
    switched = ["forward" in vars(layer) for layer in model]
    assert switched == [True, True, True, True, False, False]  # masks and 2x2 outputs stay Paddle's
    x = paddle.to_tensor(np.random.default_rng(11).standard_normal((2, 3, 16, 16)).astype("float32"))
    fast = model[3](model[2](model[1](model[0](x))))
    assert ops.restore(model) == 1
    assert not any("forward" in vars(layer) for layer in model)
    plain = model[3](model[2](model[1](model[0](x))))
    assert_close(fast.numpy(), plain.numpy(), 1e-4, "pooled output")


def test_accelerate_sets_and_restore_clears_the_fused_blocks(onednn):
    from paddle_palm.models import build_model

    model = build_model("se_resnet18", num_classes=1)
    ops.accelerate(model)
    blocks = [layer for layer in model.sublayers() if hasattr(layer, "fused")]
    assert blocks and all(layer.fused for layer in blocks)
    ops.restore(model)
    assert not any(layer.fused for layer in blocks)


# --------------------------------------------------------------------------- ema_update


def test_ema_update_gives_paddle_s_values_in_place(onednn):
    rng = np.random.default_rng(12)
    shapes = [(64, 3, 7, 7), (64,), (512, 256, 3, 3), (1, 512)]
    shadows = [paddle.to_tensor(rng.standard_normal(s).astype("float32")) for s in shapes]
    weights = [paddle.to_tensor(rng.standard_normal(s).astype("float32")) for s in shapes]
    for decay in (0.99, 2 / 11):
        want = [(s * decay + w * (1.0 - decay)).numpy() for s, w in zip(shadows, weights)]
        buffers = [s._ptr() if hasattr(s, "_ptr") else None for s in shadows]
        assert ops.ema_update(shadows, weights, decay)
        for shadow, expected in zip(shadows, want):
            assert np.array_equal(shadow.numpy(), expected)  # bit for bit: no fused multiply-add
        assert buffers == [s._ptr() if hasattr(s, "_ptr") else None for s in shadows]


def test_ema_update_declines_what_it_cannot_run(onednn):
    a32, a64 = paddle.ones([3]), paddle.ones([3], dtype="float64")
    assert not ops.ema_update([a64], [a64], 0.9)
    assert not ops.ema_update([a32], [paddle.ones([4])], 0.9)
    assert not ops.ema_update([], [], 0.9)
    assert np.array_equal(a32.numpy(), np.ones(3, "float32"))


def test_model_ema_is_the_same_with_and_without_the_operator(onednn):
    from paddle_palm.engine.optim import ModelEMA

    paddle.seed(13)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3), paddle.nn.BatchNorm2D(8), paddle.nn.Linear(4, 2))
    fast, plain = ModelEMA(model, 0.9), ModelEMA(model, 0.9)
    rng = np.random.default_rng(14)
    module = ops._state["module"]
    for _ in range(3):
        for p in model.parameters():
            p.set_value(rng.standard_normal(p.shape).astype("float32"))
        fast.update(model)
        ops._state["module"] = None  # Paddle's arithmetic for the other average
        try:
            plain.update(model)
        finally:
            ops._state["module"] = module
    assert fast.shadow.keys() == plain.shadow.keys()
    for key in plain.shadow:
        assert np.array_equal(fast.shadow[key].numpy(), plain.shadow[key].numpy()), key
