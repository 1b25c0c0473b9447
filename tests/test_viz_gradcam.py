"""Tests of paddle_palm.viz.gradcam on networks whose Grad-CAM is known by hand, then on real models."""

import numpy as np
import paddle
import pytest

from paddle_palm.errors import ConfigError, InputShapeError
from paddle_palm.models import build_model, list_models
from paddle_palm.viz.gradcam import GradCAM, default_target_layer, grad_cam, overlay_heatmap


class BrightnessNet(paddle.nn.Layer):
    """Two feature maps of a one-channel image x in [0, 1]: ``A0 = x`` and ``A1 = 1 - x``.

    Logits ``[mean(A1), mean(A0)]``: class 1 is "bright", class 0 is "dark".  The
    gradient of logit 1 is ``1 / (h w)`` on ``A0`` and 0 on ``A1``, so its Grad-CAM
    is ``ReLU(A0 / (h w))`` scaled to [0, 1]: exactly the image, min-max scaled.
    Class 0 gives ``1 - x`` the same way.
    """

    def __init__(self, stride=1):
        super().__init__()
        self.features = paddle.nn.Conv2D(1, 2, 1, stride=stride)
        self.features.weight.set_value(np.array([1.0, -1.0], "float32").reshape(2, 1, 1, 1))
        self.features.bias.set_value(np.array([0.0, 1.0], "float32"))

    def forward(self, x):
        pooled = self.features(x).mean(axis=[2, 3])
        return paddle.flip(pooled, axis=[1])


def _spot_image(size=16, top=4, left=9, side=4):
    img = np.zeros((1, size, size), "float32")
    img[0, top:top + side, left:left + side] = 1.0
    return img


def test_known_answer_bright_and_dark_classes():
    model = BrightnessNet()
    img = _spot_image()
    cam_bright = grad_cam(model, img, "features", class_index=1)
    np.testing.assert_allclose(cam_bright, img[0], atol=1e-6)  # the bright spot, nothing else
    cam_dark = grad_cam(model, img, "features", class_index=0)
    np.testing.assert_allclose(cam_dark, 1.0 - img[0], atol=1e-6)  # everywhere but the spot
    # Without class_index the predicted class is explained: mostly dark image -> class 0.
    heat, explained, score = GradCAM(model, "features").compute(img)
    assert explained == 0 and score == pytest.approx(1 - img.mean(), rel=1e-6)
    np.testing.assert_allclose(heat, cam_dark, atol=1e-6)


def test_map_is_resized_to_the_input():
    model = BrightnessNet(stride=2)
    img = _spot_image(size=32, top=8, left=18, side=8)
    cam = grad_cam(model, paddle.to_tensor(img[None]), model.features, class_index=1)
    assert cam.shape == (32, 32) and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() == pytest.approx(1.0)
    row, col = np.unravel_index(np.argmax(cam), cam.shape)
    assert 8 <= row < 16 and 18 <= col < 26  # the peak lies on the spot
    assert cam[:4].max() == pytest.approx(0.0, abs=1e-6)  # far from it: nothing


class OneLogit(paddle.nn.Layer):
    """One PM logit = mean(x) - 0.5 through an identity 1x1 convolution."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(1, 1, 1)
        self.conv.weight.set_value(np.ones((1, 1, 1, 1), "float32"))
        self.conv.bias.set_value(np.zeros(1, "float32"))

    def forward(self, x):
        return self.conv(x).mean(axis=[2, 3]) - 0.5


def test_one_logit_model_class_1_is_the_logit_class_0_its_negation():
    img = _spot_image()
    model = OneLogit()
    np.testing.assert_allclose(grad_cam(model, img, class_index=1), img[0], atol=1e-6)
    # Every pixel raises the PM logit, none raises "not PM": the map is all zeros.
    assert np.all(grad_cam(model, img, class_index=0) == 0)
    with pytest.raises(ConfigError, match="classes 0 and 1"):
        grad_cam(model, img, class_index=2)


def test_model_state_is_left_as_found():
    model = build_model("squeezenet1_1")
    model.train()
    layer_name, layer = default_target_layer(model)
    cam = grad_cam(model, np.random.default_rng(0).uniform(-1, 1, (3, 64, 64)).astype("float32"))
    assert cam.shape == (64, 64) and np.isfinite(cam).all() and 0 <= cam.min() <= cam.max() <= 1
    assert model.training
    assert not layer._forward_post_hooks, "the hook must be removed"
    assert all(p.grad is None for p in model.parameters()), "no gradient may be accumulated in the weights"


# resnet101 / resnet152 are the resnet50 class with more blocks (SPEC 2.4); building them costs seconds.
@pytest.mark.parametrize("name", [m for m in list_models() if m not in ("resnet101", "resnet152")])
def test_default_target_layer_of_every_registered_model(name):
    model = build_model(name)
    layer_name, layer = default_target_layer(model)
    assert layer_name in ("layer4", "features")
    assert any(isinstance(m, paddle.nn.Conv2D) for m in layer.sublayers(include_self=True))


@pytest.mark.parametrize("name", ["se_resnet18", "resnet50"])
def test_grad_cam_on_registered_models(name):
    model = build_model(name, num_classes=1)
    cam = grad_cam(model, np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 64)).astype("float32"))
    assert cam.shape == (64, 64) and 0 <= cam.min() <= cam.max() <= 1


@pytest.mark.parametrize("name, kwargs", [("resnet50", {}), ("senet18", {"input_size": 64})])
def test_grad_cam_of_a_channels_last_network_is_the_plain_one(name, kwargs):
    """The trainer runs ResNet's and SENet18's stages channels-last; Grad-CAM reads the same NCHW map from them."""
    paddle.seed(3)
    model = build_model(name, num_classes=1, **kwargs)
    image = np.random.default_rng(2).uniform(-1, 1, (1, 3, 64, 64)).astype("float32")
    want = grad_cam(model, image)
    model.set_channels_last(True)
    got = grad_cam(model, image)
    assert model.channels_last  # left as found
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_bad_arguments():
    model = BrightnessNet()
    with pytest.raises(ConfigError, match="no sublayer named"):
        grad_cam(model, _spot_image(), "layer9")
    with pytest.raises(ConfigError, match="class_index"):
        grad_cam(model, _spot_image(), "features", class_index=5)
    with pytest.raises(InputShapeError):
        grad_cam(model, np.zeros((2, 1, 8, 8), "float32"), "features")
    with pytest.raises(ConfigError, match="not a sublayer"):
        grad_cam(model, _spot_image(), paddle.nn.Conv2D(1, 1, 1))
    with pytest.raises(ConfigError, match="no Conv2D"):
        default_target_layer(paddle.nn.Linear(2, 2))


def test_overlay_heatmap():
    img = np.full((20, 30, 3), 100, np.uint8)
    cam = np.zeros((5, 5), np.float32)
    cam[2, 2] = 1.0
    out = overlay_heatmap(img, cam, alpha=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay_heatmap(img, cam, alpha=0.0), img)
    assert not np.array_equal(out, img)
    with pytest.raises(InputShapeError):
        overlay_heatmap(img[..., 0], cam)
    with pytest.raises(InputShapeError):
        overlay_heatmap(img, np.zeros((2, 2, 2)))
    with pytest.raises(ConfigError):
        overlay_heatmap(img, cam, alpha=2)


def test_gradcam_figure_has_a_colour_scale_of_the_overlay_colours(tmp_path):
    import cv2

    from paddle_palm.viz.gradcam import COLOUR_SCALE_LABEL, add_colour_scale, gradcam_figure, plot_gradcam

    img = np.full((40, 60, 3), 80, np.uint8)
    cam = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    fig = gradcam_figure(img, cam, title="P0001.jpg")
    photo, overlay, scale = fig.axes  # the photograph, its overlay, the colour bar
    assert scale.get_ylabel() == COLOUR_SCALE_LABEL and tuple(scale.get_ylim()) == (0.0, 1.0)
    # The bar's colours are the overlay's: OpenCV's JET, not matplotlib's.
    cmap = add_colour_scale(fig, overlay).cmap
    jet = cv2.applyColorMap(np.array([[0], [128], [255]], np.uint8), cv2.COLORMAP_JET)[:, 0, ::-1] / 255.0
    np.testing.assert_allclose([cmap(v)[:3] for v in (0.0, 128 / 255, 1.0)], jet, atol=1 / 255)
    path = plot_gradcam(img, cam, tmp_path / "cam.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
