"""ResNet-50/101/152 with bottleneck blocks, one logit by default (SPEC 2.4).

Paper: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
Recognition", CVPR 2016 (arXiv:1512.03385).  The layout is the course's
(seed 001), written in the PaddleClas style: a ``ConvBNLayer`` (conv without
bias, padding ``(k - 1) // 2``, BatchNorm, optional ReLU), bottleneck blocks
``1x1 f -> 3x3 f (stride) -> 1x1 4f`` with the stride on the 3x3 conv, a
7x7/2 stem with a 3x3/2 max pool, stages of [3, 4, 6, 3] / [3, 4, 23, 3] /
[3, 8, 36, 3] blocks, global average pooling and ``Linear(2048, num_classes)``
with weight ``U(-s, s)``, ``s = 1/sqrt(2048)``.

The computation is the same as ``paddle.vision.models.resnet50/101/152`` (v1.5,
stride on the 3x3 conv); only the parameter names differ, and
:mod:`paddle_palm.models.convert` maps them (with ``num_classes=1`` the
networks have the same 23,510,081 trainable parameters and give the same
outputs once the weights are copied).

``num_classes`` has the alias ``class_dim`` (the course's name).
"""

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddle_palm.errors import ConfigError
from paddle_palm.models.layers import InputCheck, check_num_classes, set_stage_layout
from paddle_palm.models.registry import register_model, resolve_num_classes

__all__ = ["ConvBNLayer", "BottleneckBlock", "ResNet", "DEPTHS"]

#: Bottleneck blocks per stage for each supported depth (SPEC 2.4).
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ConvBNLayer(nn.Layer):
    """Conv (no bias, "same" padding ``(k - 1) // 2``) then BatchNorm, with an optional ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel side.
        stride: conv stride.
        act: ``"relu"`` or None.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, act=None):
        super().__init__()
        if act not in (None, "relu"):
            raise ValueError(f"act must be None or 'relu', got {act!r}")
        self.act = act
        self.fused = False  # set_channels_last: fused batch norm kernels (paddle_palm.ops)
        # fluid 1.8's defaults (seed 001), written out: conv Normal(0, sqrt(2 / fan_in)), BN scale 1, shift 0.
        self.conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal(nonlinearity="relu")),
            bias_attr=False,
        )
        self.bn = nn.BatchNorm2D(
            out_channels,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1.0)),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )

    def forward(self, x, residual=None):
        """Conv, BN and the activation; with ``residual``: ``relu(bn(conv(x)) + residual)``.

        Args:
            x: the input.
            residual: optional shortcut added after the batch norm, then a ReLU (the end
                of a bottleneck block).
        """
        if self.fused:
            from paddle_palm import ops

            return ops.batch_norm_act(self.conv(x), self.bn, relu=self.act == "relu" or residual is not None,
                                      residual=residual)
        x = self.bn(self.conv(x))
        if residual is not None:
            return F.relu(x + residual)
        return F.relu(x) if self.act == "relu" else x


class BottleneckBlock(nn.Layer):
    """Bottleneck residual block: ``1x1 f -> 3x3 f (stride) -> 1x1 4f``, ``+ shortcut``, ReLU.

    Args:
        in_channels: input channels.
        filters: the bottleneck width ``f``; the block outputs ``4 f`` channels.
        stride: stride of the 3x3 conv (2 in the first block of stages 2-4).
        shortcut: True for an identity shortcut; False adds a 1x1 ConvBN
            (``4 f`` channels, same stride) on the input, as in the first block
            of every stage.
    """

    expansion = 4

    def __init__(self, in_channels, filters, stride=1, shortcut=True):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, filters, 1, act="relu")
        self.conv1 = ConvBNLayer(filters, filters, 3, stride=stride, act="relu")
        self.conv2 = ConvBNLayer(filters, filters * self.expansion, 1)
        self.short = None if shortcut else ConvBNLayer(in_channels, filters * self.expansion, 1, stride=stride)
        self.out_channels = filters * self.expansion

    def forward(self, x):
        short = x if self.short is None else self.short(x)
        return self.conv2(self.conv1(self.conv0(x)), residual=short)


class ResNet(nn.Layer):
    """ResNet-50/101/152 (SPEC 2.4).

    Args:
        depth: 50, 101 or 152.
        num_classes: number of outputs; the registered default of ``resnet<depth>`` (one
            logit for the sigmoid loss) when neither it nor ``class_dim`` is given.
        in_channels: input channels.
        class_dim: alias of ``num_classes`` (the course's name); giving both
            with different values is an error.
        arch: the name used in error messages.
    """

    def __init__(self, depth=50, num_classes=None, in_channels=3, class_dim=None, arch=None):
        super().__init__()
        arch = arch or f"resnet{depth}"
        if depth not in DEPTHS:
            raise ConfigError(f"{arch}: depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        num_classes = resolve_num_classes(f"resnet{depth}", num_classes, class_dim, arch=arch)
        self.num_classes = check_num_classes(num_classes, arch)
        self.depth = depth
        self.input_check = InputCheck(arch, in_channels, min_size=32, recipe_size=224)
        self.channels_last = False  # see set_channels_last

        self.stem = ConvBNLayer(in_channels, 64, 7, stride=2, act="relu")
        self.max_pool = nn.MaxPool2D(3, stride=2, padding=1)
        in_channels = 64
        stages = []
        for stage, (blocks, filters) in enumerate(zip(DEPTHS[depth], (64, 128, 256, 512))):
            layer = []
            for i in range(blocks):
                block = BottleneckBlock(
                    in_channels, filters, stride=2 if i == 0 and stage > 0 else 1, shortcut=i > 0
                )
                in_channels = block.out_channels
                layer.append(block)
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        # The classifier: U(-s, s), s = 1/sqrt(2048), bias 0 (seed 001).
        bound = 1.0 / math.sqrt(in_channels)
        self.fc = nn.Linear(
            in_channels,
            self.num_classes,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )

    #: Whether :func:`paddle_palm.ops.accelerate` (the trainer) switches it to channels-last (measured: yes).
    channels_last_pays = True

    def set_channels_last(self, enabled=True):
        """Run the four stages on NHWC ("channels last") tensors, or back on NCHW.

        With oneDNN convolutions (:mod:`paddle_palm.ops`) NHWC needs no layout
        conversion around each convolution, and the stages' batch norms, ReLUs and
        residual adds run as the operators' fused channels-last kernels in training
        (:func:`paddle_palm.ops.batch_norm_act`; Paddle's own when they are not loaded).  Parameters, state dicts, the input, the output and
        :meth:`forward_features` stay NCHW; the stem and its max pool (faster in
        NCHW in Paddle) stay NCHW too.

        Args:
            enabled: True for NHWC stages, False for NCHW.
        """
        def switch_block(layer, on):
            if isinstance(layer, ConvBNLayer):
                layer.fused = on

        set_stage_layout((self.layer1, self.layer2, self.layer3, self.layer4), enabled, switch_block)
        self.channels_last = bool(enabled)

    def set_fused(self, enabled=True):
        """Let every conv-BN layer (the stem's too) use the operators' fused batch norm.

        :func:`paddle_palm.ops.accelerate` calls this: in training each batch norm runs
        with its ReLU and residual add as one ``palm_batch_norm`` kernel, on NCHW or
        channels-last tensors; elsewhere Paddle's own layers run.

        Args:
            enabled: True for the fused kernels, False for Paddle's layers only.
        """
        for layer in self.sublayers():
            if isinstance(layer, ConvBNLayer):
                layer.fused = bool(enabled) or self.channels_last

    def forward_features(self, x):
        """Stem and stages: ``[N, C, H, W]`` -> ``[N, 2048, H/32, W/32]``."""
        self.input_check(x)
        x = self.max_pool(self.stem(x))
        if self.channels_last:
            x = x.transpose([0, 2, 3, 1])
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x.transpose([0, 3, 1, 2]) if self.channels_last else x

    def forward_head(self, x):
        """Global average pool and the classifier: ``[N, 2048, h, w]`` -> ``[N, num_classes]``."""
        return self.fc(paddle.flatten(self.avg_pool(x), 1))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _create_resnet(variant, depth, **kwargs):
    return ResNet(depth=depth, arch=variant, **kwargs)


@register_model(num_classes=1, in_channels=3, input_size=224, min_input_size=32, spec_section="2.4")
def resnet50(num_classes=None, **kwargs):
    """ResNet-50 (SPEC 2.4): 23,510,081 trainable parameters with one logit."""
    return _create_resnet("resnet50", 50, num_classes=num_classes, **kwargs)


@register_model(num_classes=1, in_channels=3, input_size=224, min_input_size=32, spec_section="2.4")
def resnet101(num_classes=None, **kwargs):
    """ResNet-101 (SPEC 2.4), one logit by default."""
    return _create_resnet("resnet101", 101, num_classes=num_classes, **kwargs)


@register_model(num_classes=1, in_channels=3, input_size=224, min_input_size=32, spec_section="2.4")
def resnet152(num_classes=None, **kwargs):
    """ResNet-152 (SPEC 2.4), one logit by default."""
    return _create_resnet("resnet152", 152, num_classes=num_classes, **kwargs)
