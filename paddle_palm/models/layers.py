"""Pieces shared by the model families: input validation and weight initialisation.

* :class:`InputCheck` is called first in every ``forward``: a tensor with the
  wrong number of channels or a too-small (or, for networks whose classifier
  was sized for one image size, a differently sized) image raises
  :class:`~paddle_palm.errors.InputShapeError` saying what the network expects,
  instead of an error from deep inside a convolution or a matrix product.
  Dimensions unknown while tracing for ``paddle.jit.to_static`` (a ``None`` in
  an ``InputSpec``) are skipped, so export keeps working.
* The initialisers reproduce what each seed program got from its framework's
  defaults (SPEC 2): Paddle's ``Conv2D`` default is ``Normal(0, sqrt(2 / fan_in))``
  (Kaiming normal), PyTorch's ``Conv2d``/``Linear`` default is
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weight and bias.  Writing them out
  in the model classes (the torchvision way) documents them and keeps them
  fixed if a framework changes its defaults.
* :func:`set_stage_layout` switches a network's stages between NCHW and
  channels-last (NHWC) tensors, the fast path of the oneDNN operators.  Networks
  expose it as ``set_channels_last``; only the execution path
  (:class:`paddle_palm.runtime.ExecutionPath`) calls it, and it switches back too.
"""

import math

import paddle
from paddle import nn

from paddle_palm.errors import ConfigError, InputShapeError


def _known(dim):
    """True when ``dim`` is a concrete size (not a symbolic one while tracing)."""
    return isinstance(dim, int) and dim >= 0


def _shape_text(shape):
    return "[" + ", ".join(str(d) if _known(d) else "?" for d in shape) + "]"


class InputCheck:
    """What a network accepts as input, checked before the first convolution.

    It is a plain object, not a ``paddle.nn.Layer``: it holds no parameters and
    adds no row to ``paddle.summary``.

    Args:
        arch: the network's name used in messages, e.g. ``"senet18"``.
        channels: the number of input channels (3 for fundus photographs).
        min_size: the smallest accepted height and width.
        size: the one accepted height and width when the classifier was sized
            for a single image size (``senet18``: 224), else None.
        recipe_size: the size the training recipe uses, quoted in messages.
    """

    def __init__(self, arch, channels, min_size=1, size=None, recipe_size=None):
        self.arch = arch
        self.channels = int(channels)
        self.size = None if size is None else int(size)
        self.min_size = self.size if self.size is not None else int(min_size)
        self.recipe_size = recipe_size if recipe_size is not None else self.size

    @property
    def expected(self):
        """The accepted input shape in words, e.g. ``"[N, 3, 224, 224]"``."""
        if self.size is not None:
            return f"[N, {self.channels}, {self.size}, {self.size}]"
        text = f"[N, {self.channels}, H, W] with H, W >= {self.min_size}"
        if self.recipe_size:
            text += f" ({self.recipe_size}x{self.recipe_size} in its recipe)"
        return text

    def _fail(self, shape, why):
        raise InputShapeError(f"{self.arch} expects input {self.expected}; got {_shape_text(shape)} ({why})")

    @paddle.jit.not_to_static
    def __call__(self, x):
        """Raise :class:`InputShapeError` unless ``x`` has an accepted shape.

        Args:
            x: the input tensor, ``[N, C, H, W]``.
        """
        shape = list(x.shape)
        if len(shape) != 4:
            self._fail(shape, f"a {len(shape)}-D tensor; expected 4-D: a batch of images")
        channels, height, width = shape[1:]
        if _known(channels) and channels != self.channels:
            self._fail(shape, f"{channels} channel(s) instead of {self.channels}")
        for side, value in (("height", height), ("width", width)):
            if not _known(value):
                continue
            if self.size is not None and value != self.size:
                self._fail(
                    shape, f"{side} {value} instead of {self.size}; resize the images to {self.size}x{self.size}"
                )
            if value < self.min_size:
                self._fail(shape, f"{side} {value} is smaller than {self.min_size}")


def check_num_classes(num_classes, arch):
    """Return ``num_classes`` as an int, or raise ConfigError unless it is a positive integer.

    Args:
        num_classes: the number of outputs asked for.
        arch: the network's name, for the message.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"{arch}: num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def fan_in(weight):
    """Inputs feeding one output unit: ``in*kh*kw`` for a conv weight, ``in`` for a Linear weight.

    (Paddle stores a Linear weight as ``[in, out]``, a conv weight as ``[out, in, kh, kw]``.)
    """
    shape = list(weight.shape)
    if len(shape) == 2:
        return shape[0]
    return int(math.prod(shape[1:]))


def uniform_(param, bound):
    """Fill ``param`` from ``U(-bound, bound)`` (Paddle's random generator)."""
    nn.initializer.Uniform(-bound, bound)(param)


def zeros_(param):
    """Fill ``param`` with zeros."""
    nn.initializer.Constant(0.0)(param)


def ones_(param):
    """Fill ``param`` with ones."""
    nn.initializer.Constant(1.0)(param)


def init_batch_norm(layer):
    """Scale 1, shift 0, running mean 0, running variance 1 (Paddle's and PyTorch's defaults)."""
    ones_(layer.weight)
    zeros_(layer.bias)
    zeros_(layer._mean)
    ones_(layer._variance)


def init_paddle_conv(layer):
    """Paddle's default ``Conv2D`` init: weight ``Normal(0, sqrt(2 / fan_in))``, bias 0.

    Also fluid 1.8's default (SPEC 2.1, 2.4).
    """
    nn.initializer.KaimingNormal(nonlinearity="relu")(layer.weight)
    if layer.bias is not None:
        zeros_(layer.bias)


def init_paddle_linear(layer):
    """Paddle's default ``Linear`` init: weight Xavier-uniform, bias 0."""
    nn.initializer.XavierUniform()(layer.weight)
    if layer.bias is not None:
        zeros_(layer.bias)


def init_pytorch_default(layer):
    """PyTorch's default ``Conv2d``/``Linear`` init: weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    (``kaiming_uniform_(a=sqrt(5))`` gives exactly this bound for the weight.)
    Used where the seed is a PyTorch program (SPEC 2.2, 2.3).
    """
    bound = 1.0 / math.sqrt(fan_in(layer.weight))
    uniform_(layer.weight, bound)
    if layer.bias is not None:
        uniform_(layer.bias, bound)


def set_stage_layout(stages, enabled, switch_block):
    """Run the convolutions and batch norms of ``stages`` on NHWC (``enabled``) or NCHW tensors.

    Writes the layers' ``_data_format`` (Paddle has no public switch after construction);
    parameters keep their shapes, so state dicts do not change.  Called by a network's
    ``set_channels_last``, on behalf of :class:`paddle_palm.runtime.ExecutionPath`, which
    owns the switch (:meth:`~paddle_palm.runtime.ExecutionPath.apply` and ``restore``;
    :meth:`~paddle_palm.runtime.ExecutionPath.channels_first` for a block that needs NCHW).

    Args:
        stages: the layers whose sublayers to switch (a network's residual stages).
        enabled: True for NHWC, False for NCHW.
        switch_block: called with each other sublayer and ``enabled``, for the blocks that
            transpose or fuse on their own.
    """
    data_format = "NHWC" if enabled else "NCHW"
    for stage in stages:
        for layer in stage.sublayers():
            if isinstance(layer, nn.Conv2D):
                layer._data_format, layer._channel_dim = data_format, (3 if enabled else 1)
            elif isinstance(layer, nn.BatchNorm2D):
                layer._data_format = data_format
            else:
                switch_block(layer, bool(enabled))
