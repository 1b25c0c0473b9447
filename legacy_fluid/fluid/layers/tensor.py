"""``paddle.fluid.layers.tensor`` of 1.8: creating, casting and combining tensors.

``argmax``/``argmin`` default to **axis 0** (the modern ones flatten by default,
FLUID_1_8.md section 0 #9); ``concat`` defaults to axis 0.
"""

import inspect

import numpy as np
import paddle

from legacy_fluid.fluid import _support

__all__ = [
    "concat", "cast", "argmax", "argmin", "argsort", "fill_constant", "zeros", "ones", "zeros_like",
    "ones_like", "assign", "sums", "sum", "range", "linspace", "eye", "diag", "reverse", "has_inf", "has_nan",
    "isfinite", "create_parameter", "create_global_var",
]


def concat(input, axis=0, name=None):
    """Concatenate a list of tensors along ``axis`` (default 0)."""
    if isinstance(axis, paddle.Tensor):
        axis = int(axis.numpy().reshape(-1)[0])
    return paddle.concat(list(input), axis=axis)


def cast(x, dtype):
    """``x`` converted to ``dtype``."""
    return paddle.cast(x, dtype)


def argmax(x, axis=0):
    """int64 indices of the maxima along ``axis`` (default **0**)."""
    return _support.no_0d(paddle.argmax(x, axis=axis))


def argmin(x, axis=0):
    """int64 indices of the minima along ``axis`` (default **0**)."""
    return _support.no_0d(paddle.argmin(x, axis=axis))


#: ``paddle.argsort(..., stable=True)`` exists from Paddle 3.0 on; Paddle 2.6 has no
#: ``stable`` keyword, so there the order of ties comes from numpy's stable sort.
_ARGSORT_HAS_STABLE = "stable" in inspect.signature(paddle.argsort).parameters


def argsort(input, axis=-1, descending=False, name=None):
    """``(sorted values, int64 indices)`` along ``axis``; ties keep their input order."""
    if _ARGSORT_HAS_STABLE:
        indices = paddle.argsort(input, axis=axis, descending=descending, stable=True)
    else:
        values = input.numpy()
        order = np.argsort(-values if descending else values, axis=axis, kind="stable")
        indices = paddle.to_tensor(order.astype("int64"))
    return paddle.take_along_axis(input, indices, axis), indices


def fill_constant(shape, dtype, value, force_cpu=False, out=None):
    """A tensor of ``shape`` filled with ``value``."""
    result = paddle.full([int(v) for v in shape], value, dtype=dtype)
    if out is not None:
        out.set_value(result)
        return out
    return result


def zeros(shape, dtype, force_cpu=False):
    """A tensor of zeros."""
    return paddle.zeros([int(v) for v in shape], dtype=dtype)


def ones(shape, dtype, force_cpu=False):
    """A tensor of ones."""
    return paddle.ones([int(v) for v in shape], dtype=dtype)


def zeros_like(x, out=None):
    """Zeros shaped like ``x``."""
    return paddle.zeros_like(x)


def ones_like(x, out=None):
    """Ones shaped like ``x``."""
    return paddle.ones_like(x)


def assign(input, output=None):
    """A copy of ``input`` (a tensor or numpy array)."""
    if isinstance(input, np.ndarray):
        result = paddle.to_tensor(input)
    else:
        result = paddle.assign(input)
    if output is not None:
        output.set_value(result)
        return output
    return result


def sums(input, out=None):
    """The element-wise sum of a list of same-shaped tensors."""
    result = paddle.add_n(list(input))
    if out is not None:
        out.set_value(result)
        return out
    return result


def sum(x):
    """The element-wise sum of a tensor or a list of tensors (1.8's ``sum`` op)."""
    if isinstance(x, paddle.Tensor):
        return paddle.assign(x)
    return paddle.add_n(list(x))


def range(start, end, step, dtype):
    """``[start, end)`` in steps of ``step``."""
    return paddle.arange(start, end, step, dtype=dtype)


def linspace(start, stop, num, dtype):
    """``num`` evenly spaced values from ``start`` to ``stop``."""
    return paddle.linspace(start, stop, num, dtype=dtype)


def eye(num_rows, num_columns=None, batch_shape=None, dtype="float32"):
    """An identity matrix (optionally tiled over ``batch_shape``)."""
    out = paddle.eye(num_rows, num_columns, dtype=dtype)
    if batch_shape:
        out = paddle.tile(out.reshape([1] * len(batch_shape) + list(out.shape)), list(batch_shape) + [1, 1])
    return out


def diag(diagonal):
    """A square matrix with ``diagonal`` on its diagonal."""
    if isinstance(diagonal, np.ndarray):
        diagonal = paddle.to_tensor(diagonal)
    return paddle.diag(diagonal)


def reverse(x, axis):
    """Reverse along ``axis`` (an int or a list)."""
    return paddle.flip(x, [axis] if isinstance(axis, int) else list(axis))


def has_inf(x):
    """``[1]`` bool: any infinite element."""
    return paddle.isinf(x).any().reshape([1])


def has_nan(x):
    """``[1]`` bool: any NaN element."""
    return paddle.isnan(x).any().reshape([1])


def isfinite(x):
    """``[1]`` bool: all elements finite."""
    return paddle.isfinite(x).all().reshape([1])


def create_tensor(dtype, name=None, persistable=False):
    """Not provided: 1.8's empty placeholder tensors have no Paddle 3 equivalent."""
    raise _support.not_provided("paddle.fluid.layers.create_tensor", "create tensors with fill_constant/assign")


def create_parameter(shape, dtype, name=None, attr=None, is_bias=False, default_initializer=None):
    """A free-standing parameter (``paddle.create_parameter``), with 1.8's default initializers."""
    return paddle.create_parameter(list(shape), dtype, name=name, attr=attr, is_bias=is_bias,
                                   default_initializer=default_initializer)


def create_global_var(shape, value, dtype, persistable=False, force_cpu=False, name=None):
    """A tensor of ``shape`` filled with ``value`` (``persistable`` recorded on it)."""
    result = paddle.full([int(v) for v in shape], value, dtype=dtype)
    result.persistable = persistable
    return result


__getattr__ = _support.module_getattr(__name__)
