"""ResNet-50/101/152 of the course (SPEC 2.4, seed 001) in PaddlePaddle 1.8 ``fluid`` dygraph style.

* :class:`ConvBNLayer`: ``Conv2D`` without bias, padding ``(k - 1) // 2``, then
  ``BatchNorm`` with an optional activation;
* :class:`BottleneckBlock`: 1x1 (relu) -> 3x3 with stride (relu) -> 1x1 to 4x the filters;
  the shortcut is the input or a 1x1 ConvBN with stride; ``elementwise_add`` then ReLU
  through ``LayerHelper(self.full_name(), act='relu').append_activation`` as the course did;
* stem 7x7/2 ConvBN-ReLU (64) and max pool 3/2 padding 1; stages [3,4,6,3] (50),
  [3,4,23,3] (101), [3,8,36,3] (152) with 64/128/256/512 filters, stride 2 in the first
  block of stages 2-4 (blocks registered with ``add_sublayer('bb_<stage>_<i>')``);
* head: global average pool -> ``Linear(2048, class_dim)`` with ``Uniform(-s, s)``,
  ``s = 1/sqrt(2048)``.

Runs on a real PaddlePaddle 1.8.5 and on Paddle 3 after ``legacy_fluid.install()``.
"""

import math

import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import BatchNorm, Conv2D, Linear, Pool2D
from paddle.fluid.layer_helper import LayerHelper

__all__ = ["ConvBNLayer", "BottleneckBlock", "ResNet"]

DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class ConvBNLayer(fluid.dygraph.Layer):
    """Conv (no bias, 'same' padding for odd kernels) + BatchNorm with activation ``act``.

    Args:
        num_channels: input channels.
        num_filters: output channels.
        filter_size: kernel size.
        stride: convolution stride.
        groups: convolution groups.
        act: activation of the BatchNorm (e.g. ``'relu'``) or None.
    """

    def __init__(self, num_channels, num_filters, filter_size, stride=1, groups=1, act=None):
        super(ConvBNLayer, self).__init__()
        self._conv = Conv2D(num_channels=num_channels, num_filters=num_filters, filter_size=filter_size,
                            stride=stride, padding=(filter_size - 1) // 2, groups=groups, act=None,
                            bias_attr=False)
        self._batch_norm = BatchNorm(num_filters, act=act)

    def forward(self, inputs):
        return self._batch_norm(self._conv(inputs))


class BottleneckBlock(fluid.dygraph.Layer):
    """1x1 -> 3x3 -> 1x1 (4x filters) bottleneck with identity or projection shortcut, then ReLU.

    Args:
        num_channels: input channels.
        num_filters: bottleneck width (the block outputs ``4 * num_filters``).
        stride: stride of the 3x3 conv and of the projection.
        shortcut: True for an identity shortcut, False for a 1x1 ConvBN projection.
    """

    def __init__(self, num_channels, num_filters, stride, shortcut=True):
        super(BottleneckBlock, self).__init__()
        self.conv0 = ConvBNLayer(num_channels, num_filters, filter_size=1, act="relu")
        self.conv1 = ConvBNLayer(num_filters, num_filters, filter_size=3, stride=stride, act="relu")
        self.conv2 = ConvBNLayer(num_filters, num_filters * 4, filter_size=1, act=None)
        if not shortcut:
            self.short = ConvBNLayer(num_channels, num_filters * 4, filter_size=1, stride=stride)
        self.shortcut = shortcut
        self._num_channels_out = num_filters * 4

    def forward(self, inputs):
        y = self.conv0(inputs)
        conv1 = self.conv1(y)
        conv2 = self.conv2(conv1)
        short = inputs if self.shortcut else self.short(inputs)
        y = fluid.layers.elementwise_add(x=short, y=conv2)
        layer_helper = LayerHelper(self.full_name(), act="relu")
        return layer_helper.append_activation(y)


class ResNet(fluid.dygraph.Layer):
    """The course's ResNet (SPEC 2.4).

    Args:
        layers: 50, 101 or 152.
        class_dim: number of outputs (1 logit for PALM).

    Raises:
        ValueError: ``layers`` is not 50, 101 or 152.
    """

    def __init__(self, layers=50, class_dim=1):
        super(ResNet, self).__init__()
        if layers not in DEPTHS:
            raise ValueError("supported layers are {} but input layer is {}".format(sorted(DEPTHS), layers))
        self.layers = layers
        depth = DEPTHS[layers]
        num_filters = [64, 128, 256, 512]
        self.conv = ConvBNLayer(num_channels=3, num_filters=64, filter_size=7, stride=2, act="relu")
        self.pool2d_max = Pool2D(pool_size=3, pool_stride=2, pool_padding=1, pool_type="max")
        self.bottleneck_block_list = []
        num_channels = 64
        for block in range(len(depth)):
            shortcut = False
            for i in range(depth[block]):
                bottleneck_block = self.add_sublayer(
                    "bb_%d_%d" % (block, i),
                    BottleneckBlock(num_channels=num_channels, num_filters=num_filters[block],
                                    stride=2 if i == 0 and block != 0 else 1, shortcut=shortcut))
                num_channels = bottleneck_block._num_channels_out
                self.bottleneck_block_list.append(bottleneck_block)
                shortcut = True
        self.pool2d_avg = Pool2D(pool_size=7, pool_type="avg", global_pooling=True)
        stdv = 1.0 / math.sqrt(2048 * 1.0)
        self.out = Linear(input_dim=2048, output_dim=class_dim,
                          param_attr=fluid.param_attr.ParamAttr(initializer=fluid.initializer.Uniform(-stdv, stdv)))

    def forward(self, inputs):
        y = self.conv(inputs)
        y = self.pool2d_max(y)
        for bottleneck_block in self.bottleneck_block_list:
            y = bottleneck_block(y)
        y = self.pool2d_avg(y)
        y = fluid.layers.reshape(y, [y.shape[0], -1])
        return self.out(y)
