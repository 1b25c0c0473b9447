"""SENet18 for PALM (SPEC 2.1) in the seed's mixed style: ``paddle.nn`` layers plus a fluid ``Linear`` head.

Seed 000 builds the network from Paddle 2 layers (``nn.Conv2D``, ``nn.BatchNorm2D``,
``F.avg_pool2d``) and only its last layer from the 1.8 API:
``paddle.fluid.dygraph.nn.Linear(input_dim=10, output_dim=1, param_attr=ParamAttr(Uniform(-s, s)))``
with ``s = 1/sqrt(25088)``.  It therefore needs Paddle 3 with ``legacy_fluid.install()``.
The structure and the structured parameter names are those of
:mod:`legacy_fluid.models.senet_fluid`, so the two load each other's state dicts
(``nn.BatchNorm2D`` stores ``_mean``/``_variance`` like fluid's ``BatchNorm``).

The modern BatchNorm2D layers use momentum 0.9 and epsilon 1e-5, the 1.8 defaults, so
the two styles compute the same numbers.
"""

import math

import paddle
import paddle.fluid as fluid
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["PreActBlock", "SENet", "SENet18"]


class PreActBlock(nn.Layer):
    """Pre-activation SE block (SPEC 2.1) from ``paddle.nn`` layers; see ``senet_fluid.PreActBlock``."""

    def __init__(self, in_planes, planes, stride=1):
        super(PreActBlock, self).__init__()
        self.bn1 = nn.BatchNorm2D(in_planes, momentum=0.9, epsilon=1e-5)
        self.conv1 = nn.Conv2D(in_planes, planes, kernel_size=3, stride=stride, padding=1)
        self.bn2 = nn.BatchNorm2D(planes, momentum=0.9, epsilon=1e-5)
        self.conv2 = nn.Conv2D(planes, planes, kernel_size=3, stride=1, padding=1)
        self.has_shortcut = stride != 1 or in_planes != planes
        if self.has_shortcut:
            self.shortcut = nn.Sequential(nn.Conv2D(in_planes, planes, kernel_size=1, stride=stride))
        self.fc1 = nn.Conv2D(planes, planes // 16, kernel_size=1)
        self.fc2 = nn.Conv2D(planes // 16, planes, kernel_size=1)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.has_shortcut else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        w = F.avg_pool2d(out, out.shape[2])
        w = F.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return out * w + shortcut


class SENet(nn.Layer):
    """The PALM SENet in mixed style (SPEC 2.1); arguments as ``senet_fluid.SENet``."""

    def __init__(self, num_blocks, hidden=10, class_dim=1):
        super(SENet, self).__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2D(3, 64, kernel_size=3, stride=1, padding=1)
        self.bn1 = nn.BatchNorm2D(64, momentum=0.9, epsilon=1e-5)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.linear = nn.Linear(25088, hidden)
        stdv = 1.0 / math.sqrt(25088 * 1.0)
        self.out = fluid.dygraph.nn.Linear(
            input_dim=hidden, output_dim=class_dim,
            param_attr=fluid.param_attr.ParamAttr(initializer=fluid.initializer.Uniform(-stdv, stdv)))

    def _make_layer(self, planes, num_blocks, stride):
        blocks = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            blocks.append(PreActBlock(self.in_planes, planes, block_stride))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = paddle.reshape(out, [out.shape[0], -1])
        out = self.linear(out)
        return self.out(out)


def SENet18(class_dim=1):
    """Mixed-style SENet18 for PALM (SPEC 2.1)."""
    return SENet([2, 2, 2, 2], hidden=10, class_dim=class_dim)
