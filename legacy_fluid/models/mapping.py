"""Name mapping between the legacy reference models and ``paddle_palm.models`` (SPEC 4).

Both sides store weights in the same layouts (Linear ``[in, out]``, Conv
``[out, in, kh, kw]``, BatchNorm ``weight, bias, _mean, _variance``), so copying a
state dict is a renaming only:

``senet18`` (``legacy_fluid.models.senet_fluid`` <-> ``paddle_palm.models.senet``)
    identical names: both follow seed 000 (``conv1``, ``bn1``,
    ``layer<k>.<i>.{bn1,conv1,bn2,conv2,shortcut.0,fc1,fc2}``, ``linear``, ``out``).

``resnet50/101/152`` (``legacy_fluid.models.resnet_fluid`` <-> ``paddle_palm.models.resnet``)
    ==========================================  ==========================================
    legacy (seed 001)                           modern
    ==========================================  ==========================================
    ``conv._conv.weight``                       ``stem.conv.weight``
    ``conv._batch_norm.{weight,bias,...}``      ``stem.bn.{weight,bias,...}``
    ``bb_<s>_<i>.conv<j>._conv.weight``         ``layer<s+1>.<i>.conv<j>.conv.weight``
    ``bb_<s>_<i>.conv<j>._batch_norm.X``        ``layer<s+1>.<i>.conv<j>.bn.X``
    ``bb_<s>_<i>.short._conv / ._batch_norm``   ``layer<s+1>.<i>.short.conv / .bn``
    ``out.weight`` / ``out.bias``               ``fc.weight`` / ``fc.bias``
    ==========================================  ==========================================

This file is plain Python (it runs under Python 3.7 as well).
"""

import re

__all__ = ["legacy_to_modern_key", "modern_to_legacy_key", "legacy_to_modern", "modern_to_legacy", "ARCHS"]

ARCHS = ("senet18", "resnet50", "resnet101", "resnet152")

_BLOCK = re.compile(r"^bb_(\d+)_(\d+)\.")
_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.")


def _check(arch):
    if arch not in ARCHS:
        raise ValueError("no name mapping for {!r}; known: {}".format(arch, ", ".join(ARCHS)))


def legacy_to_modern_key(arch, key):
    """The ``paddle_palm`` state-dict key of the legacy key ``key`` of model ``arch``."""
    _check(arch)
    if arch == "senet18":
        return key
    key = key.replace("._conv.", ".conv.").replace("._batch_norm.", ".bn.")
    if key.startswith("conv."):
        return "stem." + key[len("conv."):]
    if key.startswith("out."):
        return "fc." + key[len("out."):]
    match = _BLOCK.match(key)
    if match:
        stage, index = int(match.group(1)), int(match.group(2))
        return "layer{}.{}.".format(stage + 1, index) + key[match.end():]
    raise ValueError("unexpected {} key {!r}".format(arch, key))


def modern_to_legacy_key(arch, key):
    """The legacy state-dict key of the ``paddle_palm`` key ``key`` of model ``arch``."""
    _check(arch)
    if arch == "senet18":
        return key
    if key.startswith("stem."):
        rest = "conv." + key[len("stem."):]
    elif key.startswith("fc."):
        return "out." + key[len("fc."):]
    else:
        match = _LAYER.match(key)
        if not match:
            raise ValueError("unexpected {} key {!r}".format(arch, key))
        stage, index = int(match.group(1)), int(match.group(2))
        rest = "bb_{}_{}.".format(stage - 1, index) + key[match.end():]
    head, _, leaf = rest.rpartition(".")
    head = re.sub(r"\.conv$", "._conv", head)
    head = re.sub(r"\.bn$", "._batch_norm", head)
    return head + "." + leaf


def legacy_to_modern(arch, state_dict):
    """``{modern key: value}`` from a legacy state dict (values are passed through)."""
    return dict((legacy_to_modern_key(arch, key), value) for key, value in state_dict.items())


def modern_to_legacy(arch, state_dict):
    """``{legacy key: value}`` from a ``paddle_palm`` state dict (values are passed through)."""
    return dict((modern_to_legacy_key(arch, key), value) for key, value in state_dict.items())
