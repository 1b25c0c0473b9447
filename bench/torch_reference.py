"""Reference PyTorch networks for the CPU baseline of ``bench/run.py``.

There is no torchvision for this Python/CPU setup, so the benchmarked
architectures are written here with the same structure as paddle_palm's:

* ResNet-50 (SPEC 2.4): 7x7/2 stem conv-BN-ReLU, 3x3/2 max pool (padding 1),
  bottleneck stages [3, 4, 6, 3] with filters 64/128/256/512 (expansion 4,
  stride in the 3x3 conv of each stage's first block, 1x1 conv + BN shortcut),
  global average pool, ``Linear(2048, num_classes)``; one logit by default.
* SE-ResNet18 (``se_resnet18``, the CPU recipe ``configs/palm_cpu.yaml``): 7x7/2 stem
  conv-BN-ReLU (no conv bias), 3x3/2 max pool (padding 1), two post-activation SE
  BasicBlocks per stage (3x3 conv-BN-ReLU, 3x3 conv-BN, squeeze-excitation: global
  average pool -> ``Linear(c, c/16)`` -> ReLU -> ``Linear(c/16, c)`` -> sigmoid -> scale,
  plus the shortcut (1x1 conv + BN when the shape changes), ReLU) with 64/128/256/512
  channels and strides 1/2/2/2, global average pool, ``Linear(512, num_classes)``; one logit.
* SqueezeNet 1.1 (SPEC 2.5): 3x3/2 stem conv (64) + ReLU, ceil-mode 3x3/2 max
  pools, eight Fire modules, ``Dropout(0.5) -> 1x1 conv -> ReLU -> global
  average pool``; two classes by default.

Only the computation matters for timing; initial weights are PyTorch's defaults.
"""

import torch
from torch import nn


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 (f) -> 3x3 (f, stride) -> 1x1 (4f), plus the shortcut, then ReLU."""

    def __init__(self, in_channels, filters, stride=1):
        super().__init__()
        out_channels = 4 * filters
        self.conv1 = nn.Conv2d(in_channels, filters, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.conv3 = nn.Conv2d(filters, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet50(nn.Module):
    """ResNet-50 with ``num_classes`` outputs (SPEC 2.4)."""

    def __init__(self, num_classes=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, channels = [], 64
        for stage, (depth, filters) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
            for index in range(depth):
                blocks.append(Bottleneck(channels, filters, 2 if (index == 0 and stage > 0) else 1))
                channels = 4 * filters
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class SEBasicBlock(nn.Module):
    """Post-activation SE BasicBlock: conv-BN-ReLU, conv-BN, squeeze-excitation, + shortcut, ReLU."""

    def __init__(self, in_channels, channels, stride=1, reduction=16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)))))
        out = out * w[:, :, None, None]
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class SEResNet18(nn.Module):
    """SE-ResNet18 with ``num_classes`` outputs (paddle_palm's ``se_resnet18``)."""

    def __init__(self, num_classes=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, channels = [], 64
        for stage, width in enumerate([64, 128, 256, 512]):
            for index in range(2):
                blocks.append(SEBasicBlock(channels, width, 2 if (index == 0 and stage > 0) else 1))
                channels = width
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Fire(nn.Module):
    """SqueezeNet Fire module: squeeze 1x1 + ReLU, then 1x1 and 3x3 expands + ReLU, concatenated."""

    def __init__(self, in_channels, squeeze, expand1x1, expand3x3):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet 1.1 with ``num_classes`` outputs (SPEC 2.5)."""

    def __init__(self, num_classes=2):
        super().__init__()

        def pool():
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


#: Benchmarked architecture name -> constructor.
MODELS = {"resnet50": ResNet50, "se_resnet18": SEResNet18, "squeezenet1_1": SqueezeNet11}


def build(arch):
    """The reference network for ``arch`` (a key of :data:`MODELS`), with its default outputs."""
    if arch not in MODELS:
        raise ValueError(f"no PyTorch reference for {arch!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[arch]()
