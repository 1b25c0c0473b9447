"""Grad-CAM: where in a fundus photograph did the network look?

Gradient-weighted Class Activation Mapping (Selvaraju et al., "Grad-CAM:
Visual Explanations from Deep Networks via Gradient-based Localization",
ICCV 2017).  For a target layer with activations ``A`` (``[K, h, w]``) and a
class score ``y``:

1. the weight of channel ``k`` is the spatial mean of ``dy / dA_k``;
2. the map is ``ReLU(sum_k weight_k * A_k)``: the regions whose features raise
   the score;
3. it is resized to the input's ``H x W`` (bilinear) and scaled to [0, 1].

The score of a one-logit PALM model (SPEC 2.1, 2.4) is its PM logit for class 1
and the negated logit for class 0 (evidence for "not PM"); a model with two or
more outputs uses the logit of the chosen class (default: the predicted one).

:func:`default_target_layer` picks the last convolutional stage of every
registered architecture (``layer4`` of the ResNets and SENets, the last Fire
module of SqueezeNet), and :func:`overlay_heatmap` blends a map over the
photograph for display.
"""

import numpy as np

from paddle_palm.errors import ConfigError, InputShapeError
from paddle_palm.runtime import ExecutionPath
from paddle_palm.viz.plots import save_figure

__all__ = ["GradCAM", "add_colour_scale", "default_target_layer", "grad_cam", "gradcam_figure", "overlay_heatmap",
           "plot_gradcam"]

#: The label of the colour scale beside Grad-CAM overlays.
COLOUR_SCALE_LABEL = "Grad-CAM (0 = no evidence, 1 = strongest)"

#: Names of the last convolutional stage, tried in this order (see the module docstring).
_KNOWN_TARGETS = ("layer4", "features")


def _find_layer(model, target_layer):
    """``(name, layer)`` for a sublayer given as a layer or as its dotted name."""
    import paddle

    if isinstance(target_layer, paddle.nn.Layer):
        for name, layer in model.named_sublayers(include_self=True):
            if layer is target_layer:
                return name, layer
        raise ConfigError("target_layer is not a sublayer of the model")
    named = dict(model.named_sublayers())
    if target_layer not in named:
        close = [n for n in named if n.endswith(str(target_layer))][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"the model has no sublayer named {target_layer!r}{hint}")
    return target_layer, named[target_layer]


def default_target_layer(model):
    """The layer Grad-CAM should look at in ``model``: its last convolutional stage.

    ``layer4`` for the ResNets and (SE-)ResNet-style SENets, ``features`` (ending
    with the last Fire module) for SqueezeNet.  For any other network: the last
    ``Conv2D`` in definition order.

    Args:
        model: a ``paddle.nn.Layer``.

    Returns:
        (str, paddle.nn.Layer): the sublayer's dotted name and the sublayer.

    Raises:
        ConfigError: the model has no convolution.
    """
    import paddle

    children = dict(model.named_children())
    for name in _KNOWN_TARGETS:
        if name in children:
            return name, children[name]
    convs = [(n, m) for n, m in model.named_sublayers() if isinstance(m, paddle.nn.Conv2D)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no Conv2D layer: give target_layer explicitly")
    return convs[-1]


def _as_batch(image):
    import paddle

    x = image if isinstance(image, paddle.Tensor) else paddle.to_tensor(np.asarray(image, dtype=np.float32))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputShapeError(f"grad_cam takes one image [C, H, W] or [1, C, H, W], got shape {list(x.shape)}")
    return x.astype("float32")


class GradCAM:
    """Grad-CAM of one model and one target layer, reusable over many images.

    Args:
        model: a ``paddle.nn.Layer`` classifier.
        target_layer: a sublayer or its dotted name (default: :func:`default_target_layer`).
    """

    def __init__(self, model, target_layer=None):
        self.model = model
        if target_layer is None:
            self.layer_name, self.layer = default_target_layer(model)
        else:
            self.layer_name, self.layer = _find_layer(model, target_layer)

    def __call__(self, image, class_index=None):
        """The heat map of ``image`` for ``class_index``; see :func:`grad_cam`."""
        return self.compute(image, class_index)[0]

    def compute(self, image, class_index=None):
        """Heat map, and the class and score it explains.

        Returns:
            (np.ndarray, int, float): the map ``[H, W]`` (float32 in [0, 1]), the
            class index explained, and its score (the logit used).
        """
        import paddle
        import paddle.nn.functional as F

        x = _as_batch(image)
        x.stop_gradient = False  # the graph must reach the target layer even with frozen weights
        was_training = self.model.training
        self.model.eval()
        try:
            # A network running its stages channels-last (the trainer's fast path) runs NCHW for
            # the pass, so that the hooked feature map is [N, C, h, w].
            with ExecutionPath.channels_first(self.model), paddle.set_grad_enabled(True):
                activation, logits = self._forward(x)
                class_index, score = _class_score(logits, class_index)
                (grad,) = paddle.grad([score], [activation], retain_graph=False, allow_unused=True)
            if grad is None:
                cam = paddle.zeros([1, 1, activation.shape[2], activation.shape[3]])
            else:
                weights = grad.mean(axis=[2, 3], keepdim=True)  # [1, K, 1, 1]
                cam = F.relu((weights * activation).sum(axis=1, keepdim=True)).detach()
            cam = F.interpolate(cam, size=list(x.shape[2:]), mode="bilinear", align_corners=False)
            cam = cam[0, 0].numpy().astype(np.float64)
        finally:
            if was_training:
                self.model.train()
        cam -= cam.min()
        top = cam.max()
        cam = cam / top if top > 0 else np.zeros_like(cam)
        return cam.astype(np.float32), int(class_index), float(score)

    def _forward(self, x):
        """The target layer's feature map ``[1, K, h, w]`` and the logits ``[1, C]`` of ``x``."""
        captured = {}

        def hook(layer, inputs, output):
            captured["activation"] = output[0] if isinstance(output, (list, tuple)) else output

        handle = self.layer.register_forward_post_hook(hook)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if "activation" not in captured:
            raise ConfigError(f"target layer {self.layer_name!r} was not used in the forward pass")
        activation = captured["activation"]
        if activation.ndim != 4:
            raise ConfigError(
                f"target layer {self.layer_name!r} gives a tensor of shape {list(activation.shape)}; "
                "Grad-CAM needs a feature map [N, C, h, w]"
            )
        return activation, logits.reshape([1, -1])


def _class_score(logits, class_index):
    """The class explained and its score: the logit, or for one-logit models its negation for class 0."""
    import paddle

    num_outputs = logits.shape[1]
    if num_outputs == 1:
        if class_index is None:
            class_index = 1 if float(logits[0, 0]) >= 0 else 0
        if class_index not in (0, 1):
            raise ConfigError(f"a one-logit model has classes 0 and 1, got class_index {class_index}")
        return class_index, (logits[0, 0] if class_index == 1 else -logits[0, 0])
    if class_index is None:
        class_index = int(paddle.argmax(logits[0]))
    if not 0 <= int(class_index) < num_outputs:
        raise ConfigError(f"class_index must be in [0, {num_outputs}), got {class_index}")
    return class_index, logits[0, int(class_index)]


def grad_cam(model, image_tensor, target_layer=None, class_index=None):
    """The Grad-CAM heat map of one image.

    Args:
        model: a ``paddle.nn.Layer`` classifier (put in eval mode for the pass and
            restored after).
        image_tensor: the preprocessed image, ``[C, H, W]`` or ``[1, C, H, W]``
            (paddle Tensor or numpy array).
        target_layer: a sublayer of ``model`` or its dotted name (e.g. ``"layer4"``);
            None picks :func:`default_target_layer`.
        class_index: the class to explain; None explains the predicted class.
            For a one-logit model, 1 = PM (the logit) and 0 = not PM (its negation).

    Returns:
        np.ndarray: float32 ``[H, W]`` in [0, 1] (all zeros when no region raises the score).
    """
    return GradCAM(model, target_layer)(image_tensor, class_index)


def overlay_heatmap(img_bgr, cam, alpha=0.4, colormap=None):
    """Blend a heat map over a photograph (JET colours: red = strong evidence).

    The map is in the geometry of the network's input.  Preprocessing A
    stretches the photograph to a square, so resizing the map back onto the
    photograph is exact; preprocessing B pads a non-square photograph with black
    first, so overlay its map on the padded square instead:
    ``resize_for("B", img_bgr, size)[..., ::-1]`` (:mod:`paddle_palm.data.transforms`
    returns that square in RGB order).

    Args:
        img_bgr: ``uint8`` ``[H, W, 3]`` BGR image (as :func:`paddle_palm.data.read_image` gives).
        cam: heat map ``[h, w]`` in [0, 1]; resized to the image's size.
        alpha: weight of the heat map in the blend (0: image only, 1: map only).
        colormap: an OpenCV colour map (default ``cv2.COLORMAP_JET``).

    Returns:
        np.ndarray: ``uint8`` ``[H, W, 3]`` BGR.
    """
    import cv2

    img = np.asarray(img_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputShapeError(f"overlay_heatmap needs a uint8 [H, W, 3] BGR image, got {img.dtype} {img.shape}")
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise InputShapeError(f"the heat map must be [H, W], got shape {cam.shape}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    cam = np.clip(np.nan_to_num(cam), 0.0, 1.0)
    if cam.shape != img.shape[:2]:
        cam = cv2.resize(cam, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(np.round(255 * cam)), cv2.COLORMAP_JET if colormap is None else colormap)
    return cv2.addWeighted(heat, float(alpha), img, 1.0 - float(alpha), 0.0)


def _opencv_colormap(colormap=None):
    """The matplotlib colour map of an OpenCV one, so a colour bar shows the overlay's exact colours."""
    import cv2
    from matplotlib.colors import ListedColormap

    ramp = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    bgr = cv2.applyColorMap(ramp, cv2.COLORMAP_JET if colormap is None else colormap)[:, 0, :]
    return ListedColormap(bgr[:, ::-1] / 255.0, name="opencv")


def add_colour_scale(fig, axes, colormap=None, label=COLOUR_SCALE_LABEL):
    """A colour bar saying what the colours of :func:`overlay_heatmap` mean (0 to 1).

    Args:
        fig: the matplotlib figure holding the overlays.
        axes: the axes (one or a list) the bar is placed beside.
        colormap: the OpenCV colour map given to :func:`overlay_heatmap` (default JET).
        label: the bar's label.

    Returns:
        matplotlib.colorbar.Colorbar: the bar.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=_opencv_colormap(colormap))
    return fig.colorbar(mappable, ax=axes, fraction=0.046, pad=0.04, label=label)


def gradcam_figure(img_bgr, cam, title=None, alpha=0.4, colormap=None):
    """A figure of the photograph, its Grad-CAM overlay and the colour scale.

    Args:
        img_bgr: ``uint8`` ``[H, W, 3]`` BGR photograph.
        cam: heat map ``[h, w]`` in [0, 1] (:func:`grad_cam`).
        title: the figure's title (None: none).
        alpha, colormap: as for :func:`overlay_heatmap`.

    Returns:
        matplotlib.figure.Figure: three axes (photograph, overlay, colour bar).
    """
    from matplotlib.figure import Figure

    blended = overlay_heatmap(img_bgr, cam, alpha=alpha, colormap=colormap)
    fig = Figure(figsize=(9, 4.2))
    ax_photo, ax_map = fig.subplots(1, 2)
    ax_photo.imshow(np.asarray(img_bgr)[..., ::-1])
    ax_photo.set_title("photograph")
    ax_map.imshow(blended[..., ::-1])
    ax_map.set_title("Grad-CAM")
    for ax in (ax_photo, ax_map):
        ax.axis("off")
    add_colour_scale(fig, ax_map, colormap=colormap)
    if title:
        fig.suptitle(title)
    return fig


def plot_gradcam(img_bgr, cam, path, title=None, alpha=0.4, colormap=None):
    """Write :func:`gradcam_figure` as a PNG (atomically); return the path."""
    return save_figure(gradcam_figure(img_bgr, cam, title=title, alpha=alpha, colormap=colormap), path)
