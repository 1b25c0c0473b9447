"""The model zoo, model by model (SPEC 2, SPEC 5): registry, forward/backward, export, golden outputs, bad input.

Every test here is parametrised over ``list_models()``, so a newly registered
architecture is checked without editing this file (the timm pattern).

Golden outputs (the torchvision pattern): each network gets deterministic
weights (:func:`deterministic_weights`, a fixed numpy pattern, independent of
Paddle's random generator) and a seeded input; its eval-mode output must equal
``tests/golden/models/<name>.json``.  A missing or outdated reference is only
(re)written on request::

    PALM_REFRESH_GOLDEN=1 .venv/bin/python -m pytest tests/test_models.py -k golden

``senet18`` costs about 27 GMAC per 224x224 image, so it runs at 224 only once
(the golden test, batch 1); backward and export use the same network built for
32x32 input (``senet18(input_size=32)``: identical layers, a 512-feature head).
"""

import json
import math
import os
import pathlib

import numpy as np
import paddle
import pytest
from paddle import nn

from paddle_palm.errors import ConfigError, InputShapeError
from paddle_palm.fileio import write_text_atomic
from paddle_palm.models import build_model, list_models, model_spec

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "golden" / "models"
REFRESH_GOLDEN = os.environ.get("PALM_REFRESH_GOLDEN", "") not in ("", "0")
WEIGHT_SEED = 0
INPUT_SEED = 1

SPEC_NAMES = [
    "senet18",
    "senet18_cifar",
    "se_resnet18_mnist",
    "se_resnet18",
    "resnet50",
    "resnet101",
    "resnet152",
    "squeezenet1_0",
    "squeezenet1_1",
]


def input_side(name):
    """The input side used for ``name`` in these tests: its only size if fixed, else small."""
    spec = model_spec(name)
    if spec.fixed_input_size:
        return spec.input_size
    return 32 if name == "se_resnet18_mnist" else 64


def deterministic_weights(model, seed=WEIGHT_SEED):
    """Give every parameter and BatchNorm statistic of ``model`` a fixed, seeded value.

    Each tensor is a numpy ``RandomState(seed)`` pattern of at most 10007 values
    (a prime, so channels do not repeat each other) tiled to its size: cheap for
    60M parameters and independent of Paddle's generator.  Weights have variance
    ``1 / fan_in`` so that residual sums stay moderate even in ResNet-152;
    BatchNorm gets scale ~1, shift ~0, mean ~0 and variance ~1.
    """
    rs = np.random.RandomState(seed)
    bn_names = {
        f"{prefix}.{suffix}" if prefix else suffix
        for prefix, layer in model.named_sublayers(include_self=True)
        if isinstance(layer, nn.BatchNorm2D)
        for suffix in ("weight", "bias", "_mean", "_variance")
    }
    for name, tensor in sorted(model.state_dict().items()):
        shape = list(tensor.shape)
        size = int(math.prod(shape))
        u = np.resize(rs.uniform(-1.0, 1.0, size=min(size, 10007)), size).reshape(shape)
        if name in bn_names:
            kind = name.rsplit(".", 1)[-1]
            value = {"weight": 1.0 + 0.2 * u, "bias": 0.1 * u, "_mean": 0.1 * u, "_variance": 1.0 + 0.5 * u}[kind]
        elif len(shape) == 1:
            value = 0.1 * u
        else:
            fan_in = shape[0] if len(shape) == 2 else int(math.prod(shape[1:]))
            value = math.sqrt(3.0 / fan_in) * u
        tensor.set_value(value.astype("float32"))


def seeded_input(name, batch=None):
    """The golden input of ``name``: uniform in [-1, 1] (preprocessing A's range), seeded."""
    spec = model_spec(name)
    size = input_side(name)
    batch = batch or (1 if name == "senet18" else 2)
    rs = np.random.RandomState(INPUT_SEED)
    return rs.uniform(-1.0, 1.0, size=(batch, spec.in_channels, size, size)).astype("float32")


def small_model(name, model):
    """The network to train/export cheaply: ``model`` itself, or senet18 rebuilt for 32x32."""
    if name == "senet18":
        return build_model("senet18", input_size=32)
    return model


@pytest.fixture(scope="module", params=list_models())
def arch(request):
    """``(name, model)`` for every registered architecture, built once per module."""
    name = request.param
    model = build_model(name)
    yield name, model
    del model


# Registry (SPEC 5)


def test_list_models_has_the_spec_names_sorted():
    names = list_models()
    assert names == sorted(names)
    assert set(SPEC_NAMES) <= set(names)


def test_unknown_name_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError) as info:
        build_model("resnet51")
    message = str(info.value)
    assert "resnet51" in message
    for name in SPEC_NAMES:
        assert name in message


@pytest.mark.parametrize("name", list_models())
def test_registry_metadata_matches_the_network(name):
    spec = model_spec(name)
    with paddle.LazyGuard():  # shapes only, no weights drawn
        model = build_model(name)
        other = build_model(name, num_classes=3)
    assert spec.spec_section and spec.name == name
    assert model.num_classes == spec.num_classes
    assert other.num_classes == 3
    check = model.input_check
    assert check.channels == spec.in_channels
    assert check.min_size == spec.min_input_size
    assert (check.size is not None) == spec.fixed_input_size
    if spec.fixed_input_size:
        assert check.size == spec.input_size


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2"])
def test_bad_num_classes_is_a_config_error(name, bad):
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(name, num_classes=bad)


def test_class_dim_is_an_alias_of_num_classes():
    with paddle.LazyGuard():
        assert build_model("resnet50", class_dim=3).num_classes == 3
        assert build_model("resnet101", num_classes=4, class_dim=4).num_classes == 4
        from paddle_palm.models.resnet import ResNet

        assert ResNet(50, class_dim=5).num_classes == 5
        assert ResNet(50).num_classes == 1
    with pytest.raises(ConfigError, match="disagree"):
        build_model("resnet50", num_classes=2, class_dim=3)
    with pytest.raises(ConfigError, match="disagree"):
        ResNet(50, num_classes=2, class_dim=3)


# Every model: forward, backward, export, golden output, bad input


def test_forward_backward(arch):
    name, model = arch
    net = small_model(name, model)
    net.train()
    size = 32 if name == "senet18" else input_side(name)
    shape = (2, model_spec(name).in_channels, size, size)
    x = paddle.to_tensor(np.random.RandomState(3).uniform(-1, 1, shape).astype("float32"))
    out = net(x)
    assert list(out.shape) == [2, model.num_classes]
    loss = (out * out).mean()
    loss.backward()
    missing = [p.name for p in net.parameters() if p.trainable and not p.stop_gradient and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    grads = [p.grad.numpy() for p in net.parameters() if p.grad is not None]
    assert all(np.isfinite(g).all() for g in grads)
    assert any(np.abs(g).max() > 0 for g in grads)
    net.clear_gradients()


def test_golden_output(arch):
    name, model = arch
    deterministic_weights(model)
    model.eval()
    x = seeded_input(name)
    with paddle.no_grad():
        out = model(paddle.to_tensor(x)).numpy()
    assert out.shape == (x.shape[0], model.num_classes)
    assert np.isfinite(out).all()
    path = GOLDEN_DIR / f"{name}.json"
    if REFRESH_GOLDEN:
        record = {
            "arch": name,
            "num_classes": model.num_classes,
            "input_shape": list(x.shape),
            "input": f"numpy RandomState({INPUT_SEED}).uniform(-1, 1)",
            "weights": f"tests/test_models.py deterministic_weights(seed={WEIGHT_SEED}), eval mode",
            "paddle": paddle.__version__,
            "output": [[float(v) for v in row] for row in out],
        }
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    if not path.is_file():
        pytest.fail(f"no golden reference {path}; write it with PALM_REFRESH_GOLDEN=1 (tests/golden/models/README.md)")
    ref = json.loads(path.read_text())
    assert ref["input_shape"] == list(x.shape)
    expected = np.asarray(ref["output"], dtype="float32")
    assert np.ptp(expected) > 0 or expected.size == 1, "a golden reference should not be constant"
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * scale)


def test_export_to_static_and_reload(arch, tmp_path):
    """``paddle.jit.save`` traces the network with ``to_static`` (full graph) for an ``InputSpec`` with a free batch."""
    name, model = arch
    spec = model_spec(name)
    net = small_model(name, model)
    net.eval()
    size = 32 if name == "senet18" else input_side(name)
    fixed = spec.fixed_input_size
    side = size if fixed else None  # variable-size networks are exported with free height and width
    input_spec = paddle.static.InputSpec([None, spec.in_channels, side, side], "float32", "image")
    shape = (2, spec.in_channels, size, size)
    x = paddle.to_tensor(np.random.RandomState(4).uniform(-1, 1, shape).astype("float32"))
    with paddle.no_grad():
        expected = net(x).numpy()
    path = str(tmp_path / name / "inference")
    paddle.jit.save(net, path, input_spec=[input_spec])
    loaded = paddle.jit.load(path)
    loaded.eval()
    got = loaded(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max())))
    # The exported batch size is free.
    assert list(loaded(x[:1]).shape) == [1, model.num_classes]


def test_smallest_accepted_input_works(arch):
    name, model = arch
    spec = model_spec(name)
    if spec.fixed_input_size:
        pytest.skip(f"{name} accepts only {spec.input_size}x{spec.input_size} (run by the other tests)")
    model.eval()
    side = spec.min_input_size
    with paddle.no_grad():
        square = model(paddle.zeros([1, spec.in_channels, side, side]))
        oblong = model(paddle.zeros([1, spec.in_channels, side + 5, side + 3]))
    assert list(square.shape) == list(oblong.shape) == [1, model.num_classes]


def _conv_calls(model):
    calls = []
    hooks = [
        layer.register_forward_pre_hook(lambda layer, inputs: calls.append(layer.full_name()))
        for layer in model.sublayers()
        if isinstance(layer, nn.Conv2D)
    ]
    return calls, hooks


def _bad_shapes(name):
    spec = model_spec(name)
    c, size = spec.in_channels, input_side(name)
    wrong_c = 1 if c == 3 else 3
    small = size // 2 if spec.fixed_input_size else spec.min_input_size - 1
    return {
        "channels": [2, wrong_c, size, size],
        "small": [2, c, small, small],
        "3-D": [c, size, size],
    }


def test_bad_input_says_what_the_model_expects(arch):
    name, model = arch
    spec = model_spec(name)
    model.eval()
    calls, hooks = _conv_calls(model)
    try:
        for kind, shape in _bad_shapes(name).items():
            with pytest.raises(InputShapeError) as info:
                model(paddle.zeros(shape))
            message = str(info.value)
            assert isinstance(info.value, ValueError)
            assert message.startswith(f"{name} expects input [N, {spec.in_channels}, ")
            assert str(shape).replace(" ", "") in message.replace(" ", ""), message
            if spec.fixed_input_size:
                assert f"[N, {spec.in_channels}, {spec.input_size}, {spec.input_size}]" in message
            else:
                assert f">= {spec.min_input_size}" in message
        assert calls == [], "the input must be rejected before any convolution runs"
    finally:
        for hook in hooks:
            hook.remove()


def test_input_check_messages_for_the_course_networks():
    with paddle.LazyGuard():
        senet = build_model("senet18")
        resnet = build_model("resnet50")
    with pytest.raises(InputShapeError, match=r"^senet18 expects input \[N, 3, 224, 224\]; got \[2, 1, 224, 224\]"):
        senet.input_check(paddle.zeros([2, 1, 224, 224]))
    with pytest.raises(InputShapeError, match=r"height 256 instead of 224"):
        senet.input_check(paddle.zeros([1, 3, 256, 224]))
    with pytest.raises(InputShapeError, match=r"resnet50 expects input \[N, 3, H, W\] with H, W >= 32.*width 16"):
        resnet.input_check(paddle.zeros([1, 3, 64, 16]))


def test_to_static_skips_unknown_dims_and_still_checks_known_ones():
    model = build_model("squeezenet1_1")
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "image")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    for size in (64, 96):
        x = paddle.to_tensor(np.random.RandomState(size).uniform(-1, 1, (2, 3, size, size)).astype("float32"))
        assert list(static(x).shape) == [2, 2]
    # A concrete wrong channel count is still refused while tracing.
    traced = paddle.jit.to_static(build_model("squeezenet1_1"), full_graph=True)
    with pytest.raises(InputShapeError, match="squeezenet1_1 expects input"):
        traced(paddle.zeros([1, 1, 64, 64]))
