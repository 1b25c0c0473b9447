"""SqueezeNet 1.0 and 1.1 (SPEC 2.5).

Paper: F. N. Iandola, S. Han, M. W. Moskewicz, K. Ashraf, W. J. Dally,
K. Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
<0.5MB model size", arXiv:1602.07360 (2016).  Version 1.1 is the variant from
the authors' repository (3x3 stem, earlier pooling, about 2.4x less computation).

The layout is seed 004's (the torchvision layout): a ``features`` sequence of a
stem conv, ceil-mode 3x3/2 max pools and eight :class:`Fire` modules, then a
``classifier`` sequence ``Dropout(0.5) -> 1x1 conv(512, num_classes) -> ReLU ->
AdaptiveAvgPool2D(1)``, flattened.  Activations are ``nn.ReLU`` layers in the
same order as the seed so that ``paddle.summary`` prints the seed's table row
for row (``squeezenet1_0`` with 4 classes at 1x3x224x224: maps 109 -> 54 -> 27 ->
13, 737,476 parameters).  Initialisation as the seed: Kaiming-uniform convs,
the final conv ``Normal(0, 0.01)``, zero biases.

``paddle.vision.models.squeezenet1_0/1_1`` have parameters of the same shapes
but a different computation (floor-mode pools, a padded 1.1 stem, a dropout
that scales at inference); :mod:`paddle_palm.models.convert` maps their weights
and documents the differences.
"""

import paddle
from paddle import nn

from paddle_palm.models.layers import InputCheck, check_num_classes, zeros_
from paddle_palm.models.registry import register_model

__all__ = ["Fire", "SqueezeNet", "FIRE_INDICES"]

#: Position of the eight Fire modules in ``features`` for each version.
FIRE_INDICES = {"1_0": (3, 4, 5, 7, 8, 9, 10, 12), "1_1": (3, 4, 6, 7, 9, 10, 11, 12)}


class Fire(nn.Layer):
    """Fire module: squeeze 1x1 conv + ReLU, then 1x1 and 3x3 expand convs + ReLU, concatenated.

    Args:
        in_channels: input channels.
        squeeze_channels: channels of the squeeze 1x1 conv (``s``).
        expand1x1_channels: channels of the 1x1 expand conv (``e1``).
        expand3x3_channels: channels of the 3x3 expand conv (``e3``, padding 1).

    Output: ``e1 + e3`` channels, same height and width.
    """

    def __init__(self, in_channels, squeeze_channels, expand1x1_channels, expand3x3_channels):
        super().__init__()
        self.squeeze = nn.Conv2D(in_channels, squeeze_channels, 1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2D(squeeze_channels, expand1x1_channels, 1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2D(squeeze_channels, expand3x3_channels, 3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return paddle.concat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], axis=1
        )


def _pool():
    # ceil_mode keeps the last partial window: 109 -> 54 -> 27 -> 13 for 1.0 at 224 (SPEC 2.5).
    return nn.MaxPool2D(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Layer):
    """SqueezeNet 1.0 / 1.1 (SPEC 2.5).

    Args:
        version: ``"1_0"`` or ``"1_1"``.
        num_classes: number of outputs (2: non-PM / PM with softmax).
        in_channels: input channels.
        dropout: dropout probability before the final conv (0.5).
        arch: the name used in error messages.
    """

    def __init__(self, version="1_0", num_classes=2, in_channels=3, dropout=0.5, arch=None):
        super().__init__()
        arch = arch or f"squeezenet{version}"
        if version not in FIRE_INDICES:
            raise ValueError(f"{arch}: version must be '1_0' or '1_1', got {version!r}")
        self.version = version
        self.num_classes = check_num_classes(num_classes, arch)
        self.input_check = InputCheck(arch, in_channels, min_size=32, recipe_size=224)
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2D(in_channels, 96, 7, stride=2),
                nn.ReLU(),
                _pool(),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                _pool(),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                _pool(),
                Fire(512, 64, 256, 256),
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2D(in_channels, 64, 3, stride=2),
                nn.ReLU(),
                _pool(),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                _pool(),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                _pool(),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        final_conv = nn.Conv2D(512, self.num_classes, 1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(), nn.AdaptiveAvgPool2D(1))
        self._init_weights(final_conv)

    def _init_weights(self, final_conv):
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                if layer is final_conv:
                    nn.initializer.Normal(0.0, 0.01)(layer.weight)
                else:
                    # Kaiming-uniform (gain sqrt(2)): U(-sqrt(6 / fan_in), sqrt(6 / fan_in)).
                    nn.initializer.KaimingUniform(nonlinearity="relu")(layer.weight)
                zeros_(layer.bias)

    def forward(self, x):
        self.input_check(x)
        x = self.features(x)
        x = self.classifier(x)
        return paddle.flatten(x, 1)


def _create_squeezenet(variant, version, **kwargs):
    return SqueezeNet(version=version, arch=variant, **kwargs)


@register_model(num_classes=2, in_channels=3, input_size=224, min_input_size=32, spec_section="2.5", preprocess="B")
def squeezenet1_0(num_classes=2, **kwargs):
    """SqueezeNet 1.0 (SPEC 2.5): 7x7/2 stem with 96 channels; 737,476 parameters with 4 classes."""
    return _create_squeezenet("squeezenet1_0", "1_0", num_classes=num_classes, **kwargs)


@register_model(num_classes=2, in_channels=3, input_size=224, min_input_size=32, spec_section="2.5", preprocess="B")
def squeezenet1_1(num_classes=2, **kwargs):
    """SqueezeNet 1.1 (SPEC 2.5): 3x3/2 stem with 64 channels; 723,522 parameters with 2 classes."""
    return _create_squeezenet("squeezenet1_1", "1_1", num_classes=num_classes, **kwargs)
