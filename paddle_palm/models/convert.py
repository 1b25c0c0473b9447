"""Parameter-name mapping to and from ``paddle.vision.models`` (ResNet-50/101/152, SqueezeNet 1.0/1.1).

With it, weights saved from ``paddle.vision.models.resnet50`` (and the others
below) load into this package's networks and back::

    import paddle
    from paddle_palm.models import build_model
    from paddle_palm.models.convert import from_paddle_vision, to_paddle_vision
    from paddle_palm.safe_load import paddle_load       # paddle.load without running code from the file

    model = build_model("resnet50")                      # one logit
    state = paddle_load("resnet50_vision.pdparams")      # saved from paddle.vision.models.resnet50(num_classes=1)
    model.set_state_dict(from_paddle_vision("resnet50", state))
    paddle.save(to_paddle_vision("resnet50", model.state_dict()), "back.pdparams")

Pretrained weights (``tools/train.py --pretrained``, :mod:`paddle_palm.models.pretrained`) go through
:func:`backbone_from`, which also reads PaddleClas's names (its ResNet: ``stem.0.*`` and
``blocks.{i}.conv0/conv1/conv2/short.{conv,bn}.*``, the blocks of all stages numbered in one
sequence; its SqueezeNet has paddle.vision's names) and this package's own, and takes the
classifier only when it has the run's number of outputs (:func:`classifier_names`).

:func:`from_paddle_vision` and :func:`to_paddle_vision` check the whole dictionary first: a missing or unexpected name,
or a tensor of the wrong shape, raises :class:`~paddle_palm.errors.CheckpointError`
naming it.  The number of classes is read from the classifier's weight, so any
``num_classes`` converts (the target model must have the same one).

ResNet (``resnet50``, ``resnet101``, ``resnet152``) — identical computation: with
the weights copied, the outputs are equal (tested to 1e-5 in eval mode).
``*`` stands for ``weight``, ``bias``, ``_mean``, ``_variance`` of a BatchNorm.

===========================================  ==========================================
paddle_palm (SPEC 2.4)                       paddle.vision.models.resnet
===========================================  ==========================================
``stem.conv.weight``                         ``conv1.weight``
``stem.bn.*``                                ``bn1.*``
``layer{s}.{b}.conv0.conv.weight`` (1x1)     ``layer{s}.{b}.conv1.weight``
``layer{s}.{b}.conv0.bn.*``                  ``layer{s}.{b}.bn1.*``
``layer{s}.{b}.conv1.conv.weight`` (3x3)     ``layer{s}.{b}.conv2.weight``
``layer{s}.{b}.conv1.bn.*``                  ``layer{s}.{b}.bn2.*``
``layer{s}.{b}.conv2.conv.weight`` (1x1 4f)  ``layer{s}.{b}.conv3.weight``
``layer{s}.{b}.conv2.bn.*``                  ``layer{s}.{b}.bn3.*``
``layer{s}.0.short.conv.weight``             ``layer{s}.0.downsample.0.weight``
``layer{s}.0.short.bn.*``                    ``layer{s}.0.downsample.1.*``
``fc.weight``, ``fc.bias``                   ``fc.weight``, ``fc.bias``
===========================================  ==========================================

SqueezeNet (``squeezenet1_0``, ``squeezenet1_1``) — every parameter has the same
shape, so the weights load both ways, but the computations differ and so do the
outputs; the eight Fire modules and the final 1x1 conv compute exactly the same
thing (tested), which makes paddle.vision's weights a good starting point for
fine-tuning.  ``f`` is the Fire module's position in ``features``: 3, 4, 5, 7, 8,
9, 10, 12 for 1.0 and 3, 4, 6, 7, 9, 10, 11, 12 for 1.1 (``i`` = 1..8 in order).

====================================  =====================================
paddle_palm (SPEC 2.5, seed 004)      paddle.vision.models.squeezenet
====================================  =====================================
``features.0.weight``/``bias``        ``_conv.weight``/``bias``
``features.{f}.squeeze.*``            ``_conv{i}._conv._conv.*``
``features.{f}.expand1x1.*``          ``_conv{i}._conv_path1._conv.*``
``features.{f}.expand3x3.*``          ``_conv{i}._conv_path2._conv.*``
``classifier.1.weight``/``bias``      ``_conv9.weight``/``bias``
====================================  =====================================

What differs in paddle.vision's SqueezeNet:

* max pools in floor mode (``ceil_mode=False``): for 1.0 at 224x224 the maps are
  109 -> 54 -> 26 -> 12 instead of the seed's 109 -> 54 -> 27 -> 13;
* the 1.1 stem conv has ``padding=1`` (ours none, as the seed): 112x112 instead
  of 111x111 after it (the later sizes, 55 -> 27 -> 13, coincide at 224);
* its dropout is ``downscale_in_infer``: at inference it multiplies the features
  by 0.5 before the final conv (ours, ``upscale_in_train``, leaves them alone).
"""

from paddle_palm.errors import CheckpointError, ConfigError
from paddle_palm.models.resnet import DEPTHS
from paddle_palm.models.squeezenet import FIRE_INDICES

__all__ = ["FORMATS", "SUPPORTED", "backbone_from", "classifier_names", "detect_format", "from_paddle_vision",
           "name_mapping", "to_paddle_vision"]

#: Architectures with a paddle.vision counterpart.
SUPPORTED = ("resnet50", "resnet101", "resnet152", "squeezenet1_0", "squeezenet1_1")

_BN = ("weight", "bias", "_mean", "_variance")

# Channel plan of the Fire modules (in, squeeze, expand1x1, expand3x3), SPEC 2.5.
_FIRES = {
    "1_0": ((96, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
            (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)),
    "1_1": ((64, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
            (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)),
}  # fmt: skip

#: Marks the number of classes in an expected shape (read from the state dict).
CLASSES = "num_classes"


def _resnet_entries(depth):
    entries = []

    def conv_bn(ours, theirs_conv, theirs_bn, cin, cout, k):
        entries.append((f"{ours}.conv.weight", f"{theirs_conv}.weight", (cout, cin, k, k)))
        for name in _BN:
            entries.append((f"{ours}.bn.{name}", f"{theirs_bn}.{name}", (cout,)))

    conv_bn("stem", "conv1", "bn1", 3, 64, 7)
    cin = 64
    for stage, (blocks, width) in enumerate(zip(DEPTHS[depth], (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            ours, theirs = f"layer{stage}.{b}", f"layer{stage}.{b}"
            conv_bn(f"{ours}.conv0", f"{theirs}.conv1", f"{theirs}.bn1", cin, width, 1)
            conv_bn(f"{ours}.conv1", f"{theirs}.conv2", f"{theirs}.bn2", width, width, 3)
            conv_bn(f"{ours}.conv2", f"{theirs}.conv3", f"{theirs}.bn3", width, 4 * width, 1)
            if b == 0:
                conv_bn(f"{ours}.short", f"{theirs}.downsample.0", f"{theirs}.downsample.1", cin, 4 * width, 1)
            cin = 4 * width
    entries.append(("fc.weight", "fc.weight", (2048, CLASSES)))
    entries.append(("fc.bias", "fc.bias", (CLASSES,)))
    return entries


def _squeezenet_entries(version):
    stem_channels, stem_kernel = (96, 7) if version == "1_0" else (64, 3)
    entries = [
        ("features.0.weight", "_conv.weight", (stem_channels, 3, stem_kernel, stem_kernel)),
        ("features.0.bias", "_conv.bias", (stem_channels,)),
    ]
    for i, (index, (cin, s, e1, e3)) in enumerate(zip(FIRE_INDICES[version], _FIRES[version]), start=1):
        for ours, theirs, shape in (
            ("squeeze", "_conv", (s, cin, 1, 1)),
            ("expand1x1", "_conv_path1", (e1, s, 1, 1)),
            ("expand3x3", "_conv_path2", (e3, s, 3, 3)),
        ):
            entries.append((f"features.{index}.{ours}.weight", f"_conv{i}.{theirs}._conv.weight", shape))
            entries.append((f"features.{index}.{ours}.bias", f"_conv{i}.{theirs}._conv.bias", shape[:1]))
    entries.append(("classifier.1.weight", "_conv9.weight", (CLASSES, 512, 1, 1)))
    entries.append(("classifier.1.bias", "_conv9.bias", (CLASSES,)))
    return entries


#: The naming conventions a state dict of a :data:`SUPPORTED` network may come in.
FORMATS = ("paddle.vision", "PaddleClas", "paddle_palm")


def _paddleclas_name(ours, depth):
    # PaddleClas's ResNet (ppcls legendary_models, version vb) names its layers as this package does,
    # with its one-layer stem in a Sequential and the blocks of all stages numbered in one Sequential.
    if ours.startswith("stem."):
        return "stem.0." + ours[len("stem."):]
    if ours.startswith("layer"):
        stage, block, rest = ours[len("layer"):].split(".", 2)
        index = sum(DEPTHS[depth][: int(stage) - 1]) + int(block)
        return f"blocks.{index}.{rest}"
    return ours  # fc.weight, fc.bias


def _entries(arch, fmt="paddle.vision"):
    if arch in ("resnet50", "resnet101", "resnet152"):
        depth = int(arch[len("resnet") :])
        entries = _resnet_entries(depth)
        if fmt == "PaddleClas":
            entries = [(ours, _paddleclas_name(ours, depth), shape) for ours, _, shape in entries]
    elif arch in ("squeezenet1_0", "squeezenet1_1"):
        entries = _squeezenet_entries(arch[len("squeezenet") :])  # PaddleClas's SqueezeNet is paddle.vision's
    else:
        raise ConfigError(f"no paddle.vision weight mapping for {arch!r}; supported: {', '.join(SUPPORTED)}")
    if fmt == "paddle_palm":
        entries = [(ours, ours, shape) for ours, _, shape in entries]
    return entries


def name_mapping(arch):
    """The parameter-name pairs ``(paddle_palm name, paddle.vision name)`` of ``arch``, in model order.

    Args:
        arch: one of :data:`SUPPORTED`.

    Returns:
        list of (str, str).
    """
    return [(ours, theirs) for ours, theirs, _ in _entries(arch)]


def _shape(value):
    return tuple(int(d) for d in value.shape)


def _convert(arch, state_dict, source, target, source_name):
    if not hasattr(state_dict, "keys"):
        raise CheckpointError(
            f"expected a state dict (name -> tensor) of {source_name} {arch}, got {type(state_dict).__name__}"
        )
    entries = [(e[source], e[target], e[2]) for e in _entries(arch)]
    expected = {name for name, _, _ in entries}
    missing = [name for name, _, _ in entries if name not in state_dict]
    unexpected = sorted(set(state_dict.keys()) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"not a {source_name} {arch} state dict: {'; '.join(parts)}; parameter names are listed in "
            f"paddle_palm.models.convert.name_mapping({arch!r})"
        )
    classifier = entries[-2][0]
    num_classes = _shape(state_dict[classifier])[0 if arch.startswith("squeezenet") else -1]
    converted = {}
    for name, new_name, shape in entries:
        want = tuple(num_classes if d == CLASSES else d for d in shape)
        got = _shape(state_dict[name])
        if got != want:
            raise CheckpointError(
                f"{source_name} {arch} parameter {name!r} has shape {list(got)}, expected {list(want)} "
                f"(for {num_classes} classes, read from {classifier!r})"
            )
        converted[new_name] = state_dict[name]
    return converted


def from_paddle_vision(arch, state_dict):
    """Rename a ``paddle.vision.models`` state dict to this package's parameter names.

    Args:
        arch: one of :data:`SUPPORTED`, e.g. ``"resnet50"``.
        state_dict: ``paddle.vision.models.<arch>(...).state_dict()`` or a loaded
            ``.pdparams`` of it (names -> tensors or arrays).

    Returns:
        dict: the same values under paddle_palm's names, ready for
        ``build_model(arch, num_classes=...).set_state_dict(...)``.

    Raises:
        CheckpointError: a name is missing or unexpected, or a shape is wrong.
        ConfigError: ``arch`` has no paddle.vision counterpart.
    """
    return _convert(arch, state_dict, 1, 0, "paddle.vision")


def to_paddle_vision(arch, state_dict):
    """Rename one of this package's state dicts to ``paddle.vision.models`` parameter names.

    Args:
        arch: one of :data:`SUPPORTED`.
        state_dict: ``build_model(arch).state_dict()`` or a loaded ``.pdparams`` of it.

    Returns:
        dict: the same values under paddle.vision's names, ready for
        ``paddle.vision.models.<arch>(num_classes=...).set_state_dict(...)``.

    Raises:
        CheckpointError: a name is missing or unexpected, or a shape is wrong.
        ConfigError: ``arch`` has no paddle.vision counterpart.
    """
    return _convert(arch, state_dict, 0, 1, "paddle_palm")


def classifier_names(arch):
    """This package's names of ``arch``'s classifier: the parameters sized by the number of outputs.

    Everything else is the backbone (what pretrained weights bring; see :func:`backbone_from`).
    """
    return [ours for ours, _, shape in _entries(arch) if CLASSES in shape]


def detect_format(arch, names):
    """Which of :data:`FORMATS` a state dict of ``arch`` is in, judged by its ``names``; None when none fits.

    A format fits when every backbone parameter of ``arch`` is there under its names
    (the classifier may be missing).  SqueezeNet's paddle.vision and PaddleClas names
    coincide: ``"paddle.vision"`` stands for both.
    """
    names = set(names)
    for fmt in FORMATS:
        if all(theirs in names for _, theirs, shape in _entries(arch, fmt) if CLASSES not in shape):
            return fmt
    return None


def _closest_format_missing(arch, names):
    fmt = max(FORMATS, key=lambda f: sum(theirs in names for _, theirs, _ in _entries(arch, f)))
    return fmt, [theirs for _, theirs, shape in _entries(arch, fmt) if CLASSES not in shape and theirs not in names]


def backbone_from(arch, state_dict, num_classes, source="the state dict"):
    """The weights of ``arch`` in a pretrained state dict: the backbone always, the classifier when it fits.

    The file may use paddle.vision's, PaddleClas's or this package's parameter names
    (:func:`detect_format`).  Its classifier is taken only when it has ``num_classes``
    outputs (never for ImageNet's 1000): otherwise the network keeps its own freshly
    initialised one.

    Args:
        arch: one of :data:`SUPPORTED`.
        state_dict: the loaded file (names -> tensors or arrays).
        num_classes: the outputs of the network the weights are for.
        source: how to name the state dict in messages (its path).

    Returns:
        (dict, str, list, list): the weights under this package's names, the format found,
        the names loaded (this package's) and the file's classifier names left out, each
        with its shape (``"fc.weight [2048, 1000]"``).

    Raises:
        CheckpointError: not a state dict of ``arch`` in any of the formats (a missing or
            unexpected name), or a backbone tensor whose shape does not fit.
        ConfigError: ``arch`` is not one of :data:`SUPPORTED`.
    """
    if not hasattr(state_dict, "keys"):
        raise CheckpointError(f"{source} does not hold a state dict (name -> tensor), but a "
                              f"{type(state_dict).__name__}")
    fmt = detect_format(arch, state_dict.keys())
    if fmt is None:
        closest, missing = _closest_format_missing(arch, set(state_dict.keys()))
        raise CheckpointError(f"{source} does not hold {arch} weights: {len(missing)} of the backbone's {closest} "
                              f"parameters are missing (e.g. {', '.join(missing[:3])})")
    entries = _entries(arch, fmt)
    unexpected = sorted(set(state_dict.keys()) - {theirs for _, theirs, _ in entries})
    if unexpected:
        raise CheckpointError(f"{source} is not a {fmt} {arch} state dict: {len(unexpected)} unexpected "
                              f"parameter(s) (e.g. {', '.join(unexpected[:3])})")
    weights, loaded, head = {}, [], []
    for ours, theirs, shape in entries:
        want = tuple(num_classes if d == CLASSES else d for d in shape)
        got = _shape(state_dict[theirs]) if theirs in state_dict else None
        if CLASSES in shape:
            head.append((ours, theirs, got, got == want))
            continue
        if got != want:
            raise CheckpointError(f"{source} does not fit {arch}: its parameter {theirs!r} has shape {list(got)}, "
                                  f"expected {list(want)}")
        weights[ours] = state_dict[theirs]
        loaded.append(ours)
    skipped = []
    if all(fits for *_, fits in head):
        for ours, theirs, _, _ in head:
            weights[ours] = state_dict[theirs]
            loaded.append(ours)
    else:
        skipped = [f"{theirs} {list(got)}" for _, theirs, got, _ in head if got is not None]
    return weights, fmt, loaded, skipped
