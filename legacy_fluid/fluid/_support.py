"""Shared machinery of the 1.8 API: "not provided" errors, the global train flag, activations.

* :func:`module_getattr` gives each mirrored module a ``__getattr__`` that turns any
  other name into :class:`legacy_fluid.NotProvidedError` (saying whether the name is a
  real 1.8 API that is not provided here, or not a 1.8 name at all).
* In 1.8 one tracer flag (``_train_mode``) decides both whether gradients are recorded
  and whether ``fluid.layers.dropout`` runs in train mode; ``Layer.eval()`` and
  ``no_grad`` clear it (FLUID_1_8.md section 0, #3 and #13).  Paddle 3 has two flags
  (``_train_mode`` and ``_has_grad``); :func:`set_train_mode` sets both and
  :func:`dropout_is_training` reads both.
* :func:`apply_act` applies an activation given by its 1.8 op name (``act='relu'``).
"""

import json
import os

import paddle
import paddle.nn.functional as F
from paddle.base import framework as _framework

from legacy_fluid import NotProvidedError

_API_FILE = os.path.join(os.path.dirname(__file__), "_api_1_8.json")
_API_CACHE = {}


def api_1_8(module_name):
    """The public names of ``module_name`` (a ``paddle.fluid...`` name) in the real 1.8.5 wheel."""
    if not _API_CACHE:
        with open(_API_FILE) as fh:
            _API_CACHE.update(json.load(fh))
    return _API_CACHE.get(module_name, [])


def public_name(module_name):
    """``legacy_fluid.fluid.layers`` -> ``paddle.fluid.layers``."""
    return "paddle.fluid" + module_name[len("legacy_fluid.fluid"):]


def not_provided(what, hint=""):
    """A :class:`NotProvidedError` for the 1.8 call or argument ``what``."""
    text = "{} is not provided by legacy_fluid (the PaddlePaddle 1.8 dygraph API on Paddle 3.x)".format(what)
    if hint:
        text += "; " + hint
    return NotProvidedError(text)


def module_getattr(module_name):
    """A module-level ``__getattr__`` raising :class:`NotProvidedError` for unknown names."""
    public = public_name(module_name)

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError("module {!r} has no attribute {!r}".format(public, name))
        if name in api_1_8(public):
            raise not_provided("{}.{}".format(public, name), "it exists in PaddlePaddle 1.8 but has no port here")
        # 1.8's own message first (1.6-era names such as dygraph.FC failed the same way there)
        raise NotProvidedError(
            "module {!r} has no attribute {!r}: {}.{} is not a name of {} in PaddlePaddle 1.8.5 either, and is not "
            "provided by legacy_fluid".format(public, name, public, name, public)
        )

    return __getattr__


def tracer():
    """Paddle's dygraph tracer (always present in Paddle 3)."""
    return _framework._dygraph_tracer()


def set_train_mode(flag):
    """Set 1.8's single tracer flag: grad recording and ``layers.dropout`` train mode."""
    t = tracer()
    t._train_mode = bool(flag)
    t._has_grad = bool(flag)


def dropout_is_training():
    """True when 1.8's ``fluid.layers.dropout`` would drop (the tracer's train flag)."""
    t = tracer()
    return bool(t._train_mode) and bool(t._has_grad)


def refuse_name_scope(layer, value):
    """1.6-era layers took a ``name_scope`` string first (``Conv2D('conv2d', num_filters=...)``); 1.8 does
    not, and failed with a ``TypeError`` from inside the layer.  Refuse such a call with a ``TypeError``
    saying so (1.8's exception type)."""
    if isinstance(value, str):
        raise TypeError("{}() got the string {!r} as its first argument: the 1.6 name_scope argument is gone in "
                        "PaddlePaddle 1.8, whose {} takes {} first (1.8 failed with a TypeError as well)".format(
                            layer, value, layer, {"Linear": "input_dim"}.get(layer, "num_channels")))


def no_0d(tensor):
    """1.8 has no 0-D tensors: a scalar result has shape ``[1]``."""
    if len(tensor.shape) == 0:
        return tensor.reshape([1])
    return tensor


def _leaky_relu(x):
    return F.leaky_relu(x, 0.02)


_ACTS = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": paddle.tanh,
    "softmax": F.softmax,
    "leaky_relu": _leaky_relu,
    "relu6": F.relu6,
    "elu": F.elu,
    "swish": F.swish,
    "hard_sigmoid": lambda x: F.hardsigmoid(x, slope=0.2, offset=0.5),
    "softplus": F.softplus,
    "softsign": F.softsign,
    "exp": paddle.exp,
    "abs": paddle.abs,
    "sqrt": paddle.sqrt,
    "square": paddle.square,
    "log": paddle.log,
    "gelu": F.gelu,
    "logsigmoid": F.log_sigmoid,
    "tanh_shrink": F.tanhshrink,
    "hard_swish": F.hardswish,
}


def apply_act(x, act):
    """Apply the activation named ``act`` (a 1.8 op type string) to ``x``; None returns ``x``."""
    if act is None:
        return x
    if not isinstance(act, str):
        raise TypeError("{} should be unicode or str".format(act))
    fn = _ACTS.get(act)
    if fn is None:
        raise not_provided("act={!r}".format(act), "provided activations: {}".format(", ".join(sorted(_ACTS))))
    return fn(x)
