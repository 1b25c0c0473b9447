"""The documented weight-name mapping to and from ``paddle.vision.models`` (paddle_palm.models.convert)."""

import numpy as np
import paddle
import paddle.vision.models as vision
import pytest
from paddle import nn

from paddle_palm.errors import CheckpointError, ConfigError
from paddle_palm.models import build_model
from paddle_palm.models.convert import SUPPORTED, from_paddle_vision, name_mapping, to_paddle_vision


def _randomise_batch_norm(model, seed=0):
    """Non-trivial BatchNorm statistics, so that a swapped mean/variance would show."""
    rs = np.random.RandomState(seed)
    for layer in model.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            c = layer._mean.shape[0]
            layer.weight.set_value(rs.uniform(0.5, 1.5, c).astype("float32"))
            layer.bias.set_value(rs.uniform(-0.2, 0.2, c).astype("float32"))
            layer._mean.set_value(rs.uniform(-0.2, 0.2, c).astype("float32"))
            layer._variance.set_value(rs.uniform(0.5, 2.0, c).astype("float32"))


def test_resnet50_with_paddle_vision_weights_gives_the_same_outputs():
    theirs = vision.resnet50(num_classes=1)
    _randomise_batch_norm(theirs)
    ours = build_model("resnet50")
    ours.set_state_dict(from_paddle_vision("resnet50", theirs.state_dict()))
    theirs.eval()
    ours.eval()
    x = paddle.to_tensor(np.random.RandomState(1).uniform(-1, 1, (2, 3, 64, 64)).astype("float32"))
    with paddle.no_grad():
        expected = theirs(x).numpy()
        got = ours(x).numpy()
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max())))
    # And back: the same tensors under paddle.vision's names.
    back = to_paddle_vision("resnet50", ours.state_dict())
    original = theirs.state_dict()
    assert set(back) == set(original)
    for name, value in original.items():
        np.testing.assert_array_equal(back[name].numpy(), value.numpy())


@pytest.mark.parametrize("arch", SUPPORTED)
def test_mapping_covers_every_parameter_both_ways(arch):
    factory = getattr(vision, arch)
    with paddle.LazyGuard():  # shapes only
        theirs = factory(num_classes=3).state_dict()
        ours = build_model(arch, num_classes=3).state_dict()
    converted = from_paddle_vision(arch, theirs)
    assert list(converted) == list(ours)  # same names, in model order
    assert all(list(converted[k].shape) == list(ours[k].shape) for k in ours)
    assert set(to_paddle_vision(arch, ours)) == set(theirs)
    assert len(name_mapping(arch)) == len(ours)


@pytest.mark.parametrize("arch", ["squeezenet1_0", "squeezenet1_1"])
def test_squeezenet_fire_modules_and_final_conv_match_paddle_vision(arch):
    theirs = getattr(vision, arch)(num_classes=2)
    ours = build_model(arch)
    ours.set_state_dict(from_paddle_vision(arch, theirs.state_dict()))
    theirs.eval()
    ours.eval()
    fires = [layer for layer in ours.features if type(layer).__name__ == "Fire"]
    rs = np.random.RandomState(2)
    with paddle.no_grad():
        for i, fire in enumerate(fires, start=1):
            cin = fire.squeeze.weight.shape[1]
            x = paddle.to_tensor(rs.uniform(0, 1, (1, cin, 9, 9)).astype("float32"))
            np.testing.assert_allclose(fire(x).numpy(), getattr(theirs, f"_conv{i}")(x).numpy(), rtol=1e-5, atol=1e-6)
        x = paddle.to_tensor(rs.uniform(0, 1, (1, 512, 5, 5)).astype("float32"))
        np.testing.assert_allclose(ours.classifier[1](x).numpy(), theirs._conv9(x).numpy(), rtol=1e-5, atol=1e-6)
        # The documented difference: paddle.vision pools in floor mode (and pads the 1.1 stem).
        image = paddle.rand([1, 3, 224, 224])
        ours_map = ours.features(image).shape[-1]
        seen = []
        hook = theirs._conv8.register_forward_post_hook(lambda layer, inputs, output: seen.append(output.shape[-1]))
        theirs(image)
        hook.remove()
    assert ours_map == 13
    assert seen == [12 if arch == "squeezenet1_0" else 13]


def _vision_resnet50_state():
    with paddle.LazyGuard():
        return dict(vision.resnet50(num_classes=1).state_dict())


def test_missing_and_unexpected_names_are_checkpoint_errors():
    state = _vision_resnet50_state()
    del state["layer2.0.downsample.1._mean"]
    state["head.weight"] = state["fc.weight"]
    with pytest.raises(CheckpointError) as info:
        from_paddle_vision("resnet50", state)
    message = str(info.value)
    assert "1 missing" in message and "layer2.0.downsample.1._mean" in message
    assert "1 unexpected" in message and "head.weight" in message


def test_wrong_shapes_are_checkpoint_errors():
    with paddle.LazyGuard():
        wrong_depth = dict(vision.resnet50(num_classes=1).state_dict())
        small = dict(build_model("squeezenet1_1").state_dict())
    wrong_depth["layer3.1.conv2.weight"] = paddle.zeros([256, 256, 1, 1])
    expected = r"'layer3\.1\.conv2\.weight' has shape \[256, 256, 1, 1\], expected \[256, 256, 3, 3\]"
    with pytest.raises(CheckpointError, match=expected):
        from_paddle_vision("resnet50", wrong_depth)
    small["classifier.1.bias"] = paddle.zeros([5])
    with pytest.raises(CheckpointError, match="classifier.1.bias"):
        to_paddle_vision("squeezenet1_1", small)


def test_a_resnet101_state_is_not_a_resnet50_one():
    with paddle.LazyGuard():
        state = vision.resnet101(num_classes=1).state_dict()
    with pytest.raises(CheckpointError, match="unexpected"):
        from_paddle_vision("resnet50", state)


def test_unsupported_arch_and_non_dict_input():
    with pytest.raises(ConfigError, match="senet18"):
        from_paddle_vision("senet18", {})
    with pytest.raises(CheckpointError, match="state dict"):
        to_paddle_vision("resnet50", [1, 2, 3])
