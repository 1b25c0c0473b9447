"""SENet18 for PALM (SPEC 2.1, seed 000) written in pure PaddlePaddle 1.8 ``fluid`` dygraph style.

A pre-activation SE-ResNet18 without stem down-sampling, for 224x224 input and one logit:

* stem ``Conv2D(3, 64, 3, padding=1)`` (with bias) -> ``BatchNorm(64)`` -> ReLU;
* four stages of two :class:`PreActBlock` (64/128/256/512 planes, first strides 1/2/2/2);
* head ``avg pool 4`` on the 28x28 map -> 7x7x512 = 25088 -> ``Linear(25088, 10)`` ->
  ``Linear(10, 1)`` whose weights are ``Uniform(-s, s)``, ``s = 1/sqrt(25088)`` (the seed
  takes s from 25088 although that layer is 10 -> 1; kept, SPEC 2.1).

1.8 traps handled the way a 1.8 author must: the head's average pool passes
``pool_stride=4`` explicitly (``Pool2D`` strides by 1 by default, which would give 25x25).
Structured parameter names follow the seed (``layer1.0.bn1.weight``,
``layer2.0.shortcut.0.weight``, ``linear.weight``, ``out.weight``), see :mod:`legacy_fluid.models.mapping`.

Runs unchanged on a real PaddlePaddle 1.8.5 (Python 3.7) and on Paddle 3 after
``legacy_fluid.install()``.
"""

import math

import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import BatchNorm, Conv2D, Linear, Pool2D

__all__ = ["PreActBlock", "SENet", "SENet18"]


class PreActBlock(fluid.dygraph.Layer):
    """Pre-activation residual block with squeeze-and-excitation (SPEC 2.1).

    ``o = relu(bn1(x))``; the shortcut is a 1x1 conv of ``o`` when the shape changes,
    else ``x``; ``o = conv2(relu(bn2(conv1(o))))``; ``w = sigmoid(fc2(relu(fc1(avgpool(o)))))``;
    ``out = o * w + shortcut`` (no ReLU after the add).

    Args:
        in_planes: input channels.
        planes: output channels (the SE bottleneck has ``planes // 16``).
        stride: stride of ``conv1`` and of the shortcut conv.
    """

    def __init__(self, in_planes, planes, stride=1):
        super(PreActBlock, self).__init__()
        self.bn1 = BatchNorm(in_planes)
        self.conv1 = Conv2D(in_planes, planes, filter_size=3, stride=stride, padding=1)
        self.bn2 = BatchNorm(planes)
        self.conv2 = Conv2D(planes, planes, filter_size=3, stride=1, padding=1)
        self.has_shortcut = stride != 1 or in_planes != planes
        if self.has_shortcut:
            self.shortcut = fluid.dygraph.Sequential(Conv2D(in_planes, planes, filter_size=1, stride=stride))
        self.fc1 = Conv2D(planes, planes // 16, filter_size=1)
        self.fc2 = Conv2D(planes // 16, planes, filter_size=1)

    def forward(self, x):
        out = fluid.layers.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.has_shortcut else x
        out = self.conv1(out)
        out = self.conv2(fluid.layers.relu(self.bn2(out)))
        # squeeze: one average per channel over the whole map
        size = out.shape[2]
        w = fluid.layers.pool2d(out, pool_size=size, pool_type="avg", pool_stride=size)
        w = fluid.layers.relu(self.fc1(w))
        w = fluid.layers.sigmoid(self.fc2(w))
        # excitation, then the residual sum
        out = fluid.layers.elementwise_mul(out, w)
        return fluid.layers.elementwise_add(out, shortcut)


class SENet(fluid.dygraph.Layer):
    """The PALM SENet (SPEC 2.1).

    Args:
        num_blocks: blocks per stage, ``[2, 2, 2, 2]`` for SENet18.
        hidden: outputs of the first head Linear (10 in the seed).
        class_dim: outputs of the last Linear (1 logit for PALM).
    """

    def __init__(self, num_blocks, hidden=10, class_dim=1):
        super(SENet, self).__init__()
        self.in_planes = 64
        self.conv1 = Conv2D(3, 64, filter_size=3, stride=1, padding=1)
        self.bn1 = BatchNorm(64)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.pool = Pool2D(pool_size=4, pool_type="avg", pool_stride=4)
        self.linear = Linear(25088, hidden)
        stdv = 1.0 / math.sqrt(25088 * 1.0)
        self.out = Linear(hidden, class_dim,
                          param_attr=fluid.param_attr.ParamAttr(initializer=fluid.initializer.Uniform(-stdv, stdv)))

    def _make_layer(self, planes, num_blocks, stride):
        blocks = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            blocks.append(PreActBlock(self.in_planes, planes, block_stride))
            self.in_planes = planes
        return fluid.dygraph.Sequential(*blocks)

    def forward(self, x):
        out = fluid.layers.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = self.pool(out)
        out = fluid.layers.reshape(out, [out.shape[0], -1])
        out = self.linear(out)
        return self.out(out)


def SENet18(class_dim=1):
    """SENet18 for PALM: 224x224x3 input, ``class_dim`` logits (SPEC 2.1)."""
    return SENet([2, 2, 2, 2], hidden=10, class_dim=class_dim)
