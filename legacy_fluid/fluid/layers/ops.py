"""``paddle.fluid.layers.ops`` of 1.8: the element-wise activations generated from op types."""

import paddle
import paddle.nn.functional as F

from legacy_fluid.fluid import _support

__all__ = [
    "sigmoid", "logsigmoid", "exp", "tanh", "tanh_shrink", "sqrt", "rsqrt", "abs", "ceil", "floor", "cos",
    "sin", "acos", "asin", "atan", "round", "reciprocal", "square", "softplus", "softsign", "softshrink",
    "hard_shrink", "thresholded_relu", "erf", "cumsum",
]


def _unary(fn, doc):
    def op(x, name=None):
        return fn(x)

    op.__doc__ = doc
    return op


sigmoid = _unary(F.sigmoid, "``1 / (1 + exp(-x))``, element-wise.")
logsigmoid = _unary(F.log_sigmoid, "``log(sigmoid(x))``, element-wise.")
exp = _unary(paddle.exp, "``exp(x)``, element-wise.")
tanh = _unary(paddle.tanh, "``tanh(x)``, element-wise.")
tanh_shrink = _unary(F.tanhshrink, "``x - tanh(x)``, element-wise.")
sqrt = _unary(paddle.sqrt, "``sqrt(x)``, element-wise.")
rsqrt = _unary(paddle.rsqrt, "``1 / sqrt(x)``, element-wise.")
abs = _unary(paddle.abs, "``|x|``, element-wise.")
ceil = _unary(paddle.ceil, "``ceil(x)``, element-wise.")
floor = _unary(paddle.floor, "``floor(x)``, element-wise.")
cos = _unary(paddle.cos, "``cos(x)``, element-wise.")
sin = _unary(paddle.sin, "``sin(x)``, element-wise.")
acos = _unary(paddle.acos, "``acos(x)``, element-wise.")
asin = _unary(paddle.asin, "``asin(x)``, element-wise.")
atan = _unary(paddle.atan, "``atan(x)``, element-wise.")
round = _unary(paddle.round, "round half away from zero, element-wise.")
reciprocal = _unary(paddle.reciprocal, "``1 / x``, element-wise.")
square = _unary(paddle.square, "``x * x``, element-wise.")
softplus = _unary(F.softplus, "``log(1 + exp(x))``, element-wise.")
softsign = _unary(F.softsign, "``x / (1 + |x|)``, element-wise.")


def erf(x):
    """The error function, element-wise."""
    return paddle.erf(x)


def softshrink(x, alpha=None):
    """Soft shrinkage with threshold ``alpha`` (1.8 default 0.5)."""
    return F.softshrink(x, 0.5 if alpha is None else alpha)


def hard_shrink(x, threshold=None):
    """Hard shrinkage with ``threshold`` (1.8 default 0.5)."""
    return F.hardshrink(x, 0.5 if threshold is None else threshold)


def thresholded_relu(x, threshold=None):
    """``x if x > threshold else 0`` (1.8 default threshold 1.0)."""
    return F.thresholded_relu(x, 1.0 if threshold is None else threshold)


def cumsum(x, axis=None, exclusive=None, reverse=None):
    """Cumulative sum along ``axis`` (1.8 default -1), optionally exclusive and/or reversed."""
    axis = -1 if axis is None else axis
    if reverse:
        x = paddle.flip(x, [axis])
    out = paddle.cumsum(x, axis=axis)
    if exclusive:
        out = out - x
    if reverse:
        out = paddle.flip(out, [axis])
    return out


__getattr__ = _support.module_getattr(__name__)
