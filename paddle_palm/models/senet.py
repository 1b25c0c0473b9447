"""SE-ResNet-18 networks: the course's SENet18 and its relatives (SPEC 2.1, 2.2, 2.3).

Paper: J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018
(arXiv:1709.01507).  A squeeze-and-excitation (SE) unit pools each channel to
one number (squeeze), passes the vector through a bottleneck
``FC -> ReLU -> FC -> sigmoid`` (excitation) and multiplies every channel by its
weight.  The pre-activation residual unit is from K. He, X. Zhang, S. Ren,
J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016
(arXiv:1603.05027).

Variants (registry names):

* ``senet18`` (SPEC 2.1, seed 000): the PALM course network.  Pre-activation SE
  blocks, a 3x3 stride-1 stem (no down-sampling, so the first stage runs at
  224x224: about 27 GMAC per image), convolutions with bias, and the head
  ``avg_pool2d(4)`` on the 28x28 map -> 25088 -> ``Linear(25088, 10)`` ->
  ``Linear(10, 1)``.  It accepts 224x224 input only.
* ``senet18_cifar`` (SPEC 2.2, seed 003): the same blocks without conv bias,
  32x32 input, head ``avg_pool2d(4)`` on 4x4 -> ``Linear(512, 10)``; its
  ``paddle.summary`` reproduces the seed's table layer for layer.
* ``se_resnet18_mnist`` (SPEC 2.3, seed 002): post-activation SE BasicBlocks,
  one input channel, global average pool -> ``Linear(512, 10)``.  The seed
  scales the map twice (``out * SE(out)`` where ``SE`` already returns
  ``out * w``); ``double_scale=True`` reproduces that bug, the default is the
  paper's block.
* ``se_resnet18``: the fast choice for PALM, an ImageNet-style SE-ResNet-18
  (7x7/2 stem and 3x3/2 max pool, the post-activation SE BasicBlock of seed 000,
  global average pool, one logit), about 1.8 GMAC per 224x224 image.

Layer names follow the seeds (``conv1``, ``bn1``, ``layer1``..``layer4``,
``shortcut.0``, ``fc1``/``fc2``, ``linear``, ``out``) so that checkpoints of the
course programs map onto these networks name for name.
"""

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddle_palm.models.layers import (
    InputCheck,
    check_num_classes,
    init_batch_norm,
    init_paddle_conv,
    init_paddle_linear,
    init_pytorch_default,
    set_stage_layout,
    uniform_,
    zeros_,
)
from paddle_palm.models.registry import register_model

__all__ = ["PreActBlock", "SqueezeExcitation", "SEBasicBlock", "SENet"]


class PreActBlock(nn.Layer):
    """Pre-activation residual block with squeeze-and-excitation (SPEC 2.1, 2.2).

    ``o = relu(bn1(x))``; the shortcut is a 1x1 conv of ``o`` when the shape
    changes, else ``x``; ``o = conv2(relu(bn2(conv1(o))))``; the SE weights are
    ``w = sigmoid(fc2(relu(fc1(avg_pool(o)))))`` with 1x1 convs ``fc1``/``fc2``
    (``planes -> planes // 16 -> planes``, with bias); the block returns
    ``o * w + shortcut`` (no ReLU after the add).

    The SE convs are direct children of the block (as in the seeds), so
    ``paddle.summary`` lists them in the seed 003 order: ``bn1``, shortcut conv,
    ``conv1``, ``bn2``, ``conv2``, ``fc1``, ``fc2``, then the block.

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of ``conv1`` and of the shortcut conv.
        bias: whether ``conv1``, ``conv2`` and the shortcut conv have a bias
            (seed 000: yes, Paddle's default; seed 003: no).
        reduction: SE bottleneck ratio (16).
    """

    def __init__(self, in_planes, planes, stride=1, bias=True, reduction=16):
        super().__init__()
        bias_attr = None if bias else False
        self.bn1 = nn.BatchNorm2D(in_planes)
        self.conv1 = nn.Conv2D(in_planes, planes, 3, stride=stride, padding=1, bias_attr=bias_attr)
        self.bn2 = nn.BatchNorm2D(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, stride=1, padding=1, bias_attr=bias_attr)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2D(in_planes, planes, 1, stride=stride, bias_attr=bias_attr))
        else:
            self.shortcut = None
        self.fc1 = nn.Conv2D(planes, planes // reduction, 1)
        self.fc2 = nn.Conv2D(planes // reduction, planes, 1)
        self.channels_last = False  # SENet.set_channels_last
        self.fused = False  # SENet.set_fused

    def forward(self, x):
        if self.channels_last or self.fused:
            return self._fused_forward(x)
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        # Squeeze: the seeds pool with a kernel of the map's height, i.e. a global
        # average on these square maps; the adaptive form also traces with unknown sizes.
        w = F.adaptive_avg_pool2d(out, 1)
        w = F.relu(self.fc1(w))
        w = F.sigmoid(self.fc2(w))
        # Excitation: reweight the channels, then add the shortcut.
        return out * w + shortcut

    def _fused_forward(self, x):
        """The same block on the operators' fused kernels (:mod:`paddle_palm.ops`), NCHW or NHWC."""
        from paddle_palm import ops

        data_format = "NHWC" if self.channels_last else "NCHW"
        out = ops.batch_norm_act(x, self.bn1)
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(ops.batch_norm_act(self.conv1(out), self.bn2))
        w = F.sigmoid(self.fc2(F.relu(self.fc1(ops.global_avg_pool2d(out, data_format)))))
        return ops.scale_add(out, w, shortcut, data_format=data_format)


class SqueezeExcitation(nn.Layer):
    """The squeeze-and-excitation unit as a module (seed 002's ``SE_Block``, SPEC 2.3).

    Global average pool -> ``Linear(c, c // reduction)`` -> ReLU ->
    ``Linear(c // reduction, c)`` -> sigmoid -> ``x * w``.

    Args:
        channels: channels of the map it reweights.
        reduction: bottleneck ratio (16).
        bias: whether the two Linear layers have a bias (seed 002: no; a 1x1
            conv with bias, as in seed 000, is the same as ``bias=True``).
    """

    def __init__(self, channels, reduction=16, bias=False):
        super().__init__()
        bias_attr = None if bias else False
        self.fc1 = nn.Linear(channels, channels // reduction, bias_attr=bias_attr)
        self.fc2 = nn.Linear(channels // reduction, channels, bias_attr=bias_attr)
        self.channels_last = False  # SENet.set_channels_last: x is [N, H, W, C]
        self.fused = False  # SENet.set_fused

    def weights(self, x):
        """The excitation weights of the map ``x``: ``[N, C, 1, 1]`` (``[N, 1, 1, C]`` channels-last)."""
        data_format = "NHWC" if self.channels_last else "NCHW"
        if self.fused or self.channels_last:
            from paddle_palm import ops

            pooled = ops.global_avg_pool2d(x, data_format)
        else:
            pooled = F.adaptive_avg_pool2d(x, 1, data_format=data_format)
        w = F.sigmoid(self.fc2(F.relu(self.fc1(paddle.flatten(pooled, 1)))))
        return paddle.unsqueeze(w, [1, 2] if self.channels_last else [2, 3])

    def forward(self, x):
        return x * self.weights(x)


class SEBasicBlock(nn.Layer):
    """Post-activation residual BasicBlock with squeeze-and-excitation (SPEC 2.1 BasicBlock, 2.3).

    ``conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> SE``, ``+ shortcut`` (1x1 conv +
    BN when the shape changes, else the input), then ReLU.  Convolutions have no
    bias (each is followed by BatchNorm).

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of ``conv1`` and of the shortcut conv.
        se_bias: whether the SE layers have a bias.
        double_scale: reproduce seed 002's bug ``out = out * SE(out)`` (the map
            multiplied by itself and the SE weights) instead of ``out = SE(out)``.
        reduction: SE bottleneck ratio (16).
    """

    def __init__(self, in_planes, planes, stride=1, se_bias=True, double_scale=False, reduction=16):
        super().__init__()
        self.double_scale = bool(double_scale)
        self.conv1 = nn.Conv2D(in_planes, planes, 3, stride=stride, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, stride=1, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(planes)
        self.se = SqueezeExcitation(planes, reduction, bias=se_bias)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2D(in_planes, planes, 1, stride=stride, bias_attr=False),
                nn.BatchNorm2D(planes),
            )
        else:
            self.shortcut = None
        self.channels_last = False  # SENet.set_channels_last
        self.fused = False  # SENet.set_fused

    def forward(self, x):
        if self.channels_last or self.fused:
            return self._fused_forward(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        scaled = self.se(out)
        out = out * scaled if self.double_scale else scaled
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + shortcut)

    def _fused_forward(self, x):
        """The same block on the operators' fused kernels (:mod:`paddle_palm.ops`), NCHW or NHWC:
        batch norms with their ReLUs, and the SE scale, the shortcut's add and the ReLU in one pass."""
        from paddle_palm import ops

        out = ops.batch_norm_act(self.conv1(x), self.bn1)
        out = ops.batch_norm_act(self.conv2(out), self.bn2, relu=False)
        if self.shortcut is None:
            shortcut = x
        else:
            shortcut = ops.batch_norm_act(self.shortcut[0](x), self.shortcut[1], relu=False)
        if self.double_scale:
            return F.relu(out * self.se(out) + shortcut)
        return ops.scale_add(out, self.se.weights(out), shortcut, relu=True,
                             data_format="NHWC" if self.channels_last else "NCHW")


class SENet(nn.Layer):
    """A four-stage SE-ResNet (ResNet-18 layout: planes 64/128/256/512, strides 1/2/2/2).

    Args:
        block: :class:`PreActBlock` or :class:`SEBasicBlock`.
        layers: blocks per stage, ``(2, 2, 2, 2)`` for 18 layers.
        num_classes: number of outputs (1: one logit for the sigmoid loss).
        in_channels: input channels (3, or 1 for MNIST).
        stem: ``"cifar"``: 3x3 stride-1 conv, BN, ReLU (no down-sampling, the
            seeds' stem); ``"imagenet"``: 7x7 stride-2 conv, BN, ReLU, 3x3
            stride-2 max pool.
        stem_bias: whether the stem conv has a bias (seed 000: yes).
        head: ``"avg4"``: ``avg_pool2d(4)`` then flatten, as in seeds 000 and
            003; the classifier's input size then depends on ``input_size``,
            which becomes the only accepted size.  ``"global"``: global average
            pool, any size from ``min_input_size`` up.
        input_size: the image side the network is built for (needed by
            ``head="avg4"``; quoted in input errors otherwise).
        hidden_dim: if set, the head is ``Linear(features, hidden_dim) ->
            Linear(hidden_dim, num_classes)`` (seed 000: 10), else one Linear.
        init: ``"paddle"`` (Paddle's defaults, seed 000 is a Paddle program) or
            ``"pytorch"`` (PyTorch's defaults, seeds 002 and 003).
        out_bound: if set, the last Linear's weight is ``U(-out_bound, out_bound)``
            and its bias 0 (seed 000: ``1/sqrt(25088)``).
        block_args: extra keyword arguments for every block.
        arch: the name used in error messages.
        min_input_size: smallest accepted side with ``head="global"``.
    """

    def __init__(
        self,
        block,
        layers=(2, 2, 2, 2),
        num_classes=10,
        in_channels=3,
        stem="cifar",
        stem_bias=False,
        head="global",
        input_size=None,
        hidden_dim=None,
        init="paddle",
        out_bound=None,
        block_args=None,
        arch=None,
        min_input_size=32,
    ):
        super().__init__()
        arch = arch or type(self).__name__
        num_classes = check_num_classes(num_classes, arch)
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"{arch}: stem must be 'cifar' or 'imagenet', got {stem!r}")
        if head not in ("avg4", "global"):
            raise ValueError(f"{arch}: head must be 'avg4' or 'global', got {head!r}")
        if init not in ("paddle", "pytorch"):
            raise ValueError(f"{arch}: init must be 'paddle' or 'pytorch', got {init!r}")
        if head == "avg4" and not input_size:
            raise ValueError(f"{arch}: head='avg4' needs input_size")
        self.num_classes = num_classes
        self.head = head
        self.channels_last = False  # see set_channels_last
        self.fused = False  # see set_fused
        self.input_check = InputCheck(
            arch,
            in_channels,
            min_size=min_input_size,
            size=input_size if head == "avg4" else None,
            recipe_size=input_size,
        )

        # Stem.
        self.conv1 = nn.Conv2D(
            in_channels,
            64,
            7 if stem == "imagenet" else 3,
            stride=2 if stem == "imagenet" else 1,
            padding=3 if stem == "imagenet" else 1,
            bias_attr=None if stem_bias else False,
        )
        self.bn1 = nn.BatchNorm2D(64)
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1) if stem == "imagenet" else None

        # Four stages.
        block_args = dict(block_args or {})
        self.in_planes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1, block_args)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, block_args)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, block_args)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, block_args)

        # Head.
        features = 512
        if head == "avg4":
            side = input_size // (8 if stem == "cifar" else 32) // 4
            features = 512 * side * side
        if hidden_dim:
            self.linear = nn.Linear(features, hidden_dim)
            self.out = nn.Linear(hidden_dim, num_classes)
        else:
            self.linear = nn.Linear(features, num_classes)
            self.out = None

        self._init_weights(init, out_bound)

    def _make_layer(self, block, planes, num_blocks, stride, block_args):
        blocks = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            blocks.append(block(self.in_planes, planes, block_stride, **block_args))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def _init_weights(self, init, out_bound):
        for layer in self.sublayers():
            if isinstance(layer, nn.BatchNorm2D):
                init_batch_norm(layer)
            elif isinstance(layer, (nn.Conv2D, nn.Linear)):
                if init == "pytorch":
                    init_pytorch_default(layer)
                elif isinstance(layer, nn.Conv2D):
                    init_paddle_conv(layer)
                else:
                    init_paddle_linear(layer)
        if out_bound is not None:
            last = self.out if self.out is not None else self.linear
            uniform_(last.weight, out_bound)
            zeros_(last.bias)

    #: Whether :func:`paddle_palm.ops.accelerate` (the trainer) switches it to channels-last.  No by
    #: default: se_resnet18 at 128 px measured no gain from it (docs/BENCHMARKS.md sections 3.5 and
    #: 3.7); a variant measured to gain sets it on its instances (:func:`senet18`).
    channels_last_pays = False

    def set_channels_last(self, enabled=True):
        """Run the four stages on NHWC ("channels last") tensors, or back on NCHW.

        With oneDNN convolutions (:mod:`paddle_palm.ops`) NHWC needs no layout conversion
        around each convolution, and the stages' batch norms (with their ReLUs) run as the
        operators' fused channels-last kernels in training.  Parameters, state dicts, the
        input, the output and :meth:`forward_features` stay NCHW, and so does the stem.

        Args:
            enabled: True for NHWC stages, False for NCHW.
        """
        def switch_block(layer, on):
            if isinstance(layer, (PreActBlock, SEBasicBlock, SqueezeExcitation)):
                layer.channels_last = on

        set_stage_layout((self.layer1, self.layer2, self.layer3, self.layer4), enabled, switch_block)
        self.channels_last = bool(enabled)

    def set_fused(self, enabled=True):
        """Let the blocks and the head use the operators' fused kernels (:mod:`paddle_palm.ops`).

        :func:`paddle_palm.ops.accelerate` calls this: batch norms run with their ReLUs as
        ``palm_batch_norm`` in training, the SE blocks end in one ``palm_scale_add`` pass
        (scale, shortcut add, ReLU) and pool with ``palm_pool2d``.
        Where the operators cannot run (traced graphs, other devices) each kernel falls
        back to Paddle's own, so the network computes the same function either way.

        Args:
            enabled: True for the fused kernels, False for Paddle's layers only.
        """
        for layer in self.sublayers():
            if isinstance(layer, (PreActBlock, SEBasicBlock, SqueezeExcitation)):
                layer.fused = bool(enabled)
        self.fused = bool(enabled)

    def forward_features(self, x):
        """The stem and the four stages: ``[N, C, H, W]`` -> ``[N, 512, h, w]``."""
        self.input_check(x)
        if self.fused:
            from paddle_palm import ops

            out = ops.batch_norm_act(self.conv1(x), self.bn1)
        else:
            out = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            out = self.maxpool(out)
        if self.channels_last:
            out = out.transpose([0, 2, 3, 1])
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        return out.transpose([0, 3, 1, 2]) if self.channels_last else out

    def forward_head(self, x):
        """Pool, flatten and classify: ``[N, 512, h, w]`` -> ``[N, num_classes]``."""
        if self.fused:
            from paddle_palm import ops

            x = ops.pool2d(x, 4, mode="avg") if self.head == "avg4" else ops.global_avg_pool2d(x)
        elif self.head == "avg4":
            x = F.avg_pool2d(x, 4)
        else:
            x = F.adaptive_avg_pool2d(x, 1)
        x = self.linear(paddle.flatten(x, 1))
        if self.out is not None:
            x = self.out(x)
        return x

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _create_senet(variant, channels_last_pays=False, **kwargs):
    model = SENet(arch=variant, **kwargs)
    model.channels_last_pays = channels_last_pays
    return model


@register_model(
    num_classes=1, in_channels=3, input_size=224, min_input_size=224, spec_section="2.1", fixed_input_size=True
)
def senet18(num_classes=1, **kwargs):
    """SENet18 of the PALM course (SPEC 2.1, seed 000): pre-activation SE blocks, 224x224 input, one logit.

    Head ``Linear(25088, 10) -> Linear(10, num_classes)``; the last layer is the
    seed's fluid ``Linear`` with weight ``U(-s, s)``, ``s = 1/sqrt(25088)`` (the
    seed derives ``s`` from 25088 although that layer has 10 inputs) and bias 0;
    every other layer has Paddle's default initialisation.

    Args:
        num_classes: number of outputs (1 logit).
        **kwargs: :class:`SENet` arguments overriding the defaults; for example
            ``input_size=32`` builds the same layers for 32x32 images (the head
            then has 512 inputs), a cheap stand-in used by the tests.
    """
    args = dict(
        block=PreActBlock,
        stem="cifar",
        stem_bias=True,
        head="avg4",
        input_size=224,
        hidden_dim=10,
        init="paddle",
        out_bound=1.0 / math.sqrt(25088.0),
        block_args={"bias": True},
    )
    args.update(kwargs)
    # Its first stage runs at full resolution (224 px): NHWC stages measured 1.09x faster in float32
    # and 1.81x against 1.43x with bf16 (docs/BENCHMARKS.md 3.7).
    return _create_senet("senet18", num_classes=num_classes, channels_last_pays=True, **args)


@register_model(
    num_classes=10, in_channels=3, input_size=32, min_input_size=32, spec_section="2.2", fixed_input_size=True
)
def senet18_cifar(num_classes=10, **kwargs):
    """SENet18 for CIFAR-10 (SPEC 2.2, seed 003): 32x32 input, 11,260,354 parameters with 10 classes.

    The stem, 3x3 and shortcut convs have no bias; PyTorch's default
    initialisation (the seed is a PyTorch program).
    """
    args = dict(
        block=PreActBlock,
        stem="cifar",
        stem_bias=False,
        head="avg4",
        input_size=32,
        init="pytorch",
        block_args={"bias": False},
    )
    args.update(kwargs)
    return _create_senet("senet18_cifar", num_classes=num_classes, **args)


@register_model(num_classes=10, in_channels=1, input_size=224, min_input_size=8, spec_section="2.3")
def se_resnet18_mnist(num_classes=10, double_scale=False, **kwargs):
    """SE-ResNet18 for MNIST (SPEC 2.3, seed 002): one input channel, post-activation SE BasicBlocks.

    Args:
        num_classes: number of outputs (10 digits).
        double_scale: reproduce the seed's double SE scaling (``out * SE(out)``);
            False (default) is the paper's block.
        **kwargs: further :class:`SENet` arguments.

    The seed's recipe resizes the 28x28 digits to 224x224; any side >= 8 works.
    """
    args = dict(
        block=SEBasicBlock,
        in_channels=1,
        stem="cifar",
        stem_bias=False,
        head="global",
        input_size=224,
        min_input_size=8,
        init="pytorch",
        block_args={"se_bias": False, "double_scale": double_scale},
    )
    args.update(kwargs)
    return _create_senet("se_resnet18_mnist", num_classes=num_classes, **args)


@register_model(num_classes=1, in_channels=3, input_size=224, min_input_size=32, spec_section="2.1")
def se_resnet18(num_classes=1, **kwargs):
    """ImageNet-style SE-ResNet18 for PALM, the fast choice (SPEC 2.1 BasicBlock, SPEC 5).

    7x7/2 stem and 3x3/2 max pool, post-activation SE BasicBlocks (SE with
    bias, as seed 000's BasicBlock), global average pool and
    ``Linear(512, num_classes)`` with weight ``U(-1/sqrt(512), 1/sqrt(512))``,
    like the ResNet head of SPEC 2.4.  Any side >= 32 works; 224 is the recipe.
    """
    args = dict(
        block=SEBasicBlock,
        stem="imagenet",
        stem_bias=False,
        head="global",
        input_size=224,
        min_input_size=32,
        init="paddle",
        out_bound=1.0 / math.sqrt(512.0),
        block_args={"se_bias": True},
    )
    args.update(kwargs)
    return _create_senet("se_resnet18", num_classes=num_classes, **args)
