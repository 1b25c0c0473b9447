"""``paddle.fluid.dygraph.base`` of 1.8: ``guard``, ``to_variable``, ``no_grad``, ``grad`` (FLUID_1_8.md section 1).

``guard()`` gives what 1.8's guard gave: a fresh name generator (parameter names restart
at ``conv2d_0.w_0``), fresh default programs, and the tracer in train mode (grads on,
``layers.dropout`` dropping); on exit the previous state comes back.  Parameters made
in one guard keep working in a later one.
"""

import contextlib

import numpy as np
import paddle
from paddle.base import core as _core
from paddle.utils import unique_name as _unique_name

from legacy_fluid.fluid import _support, framework

__all__ = ["no_grad", "guard", "enable_dygraph", "disable_dygraph", "enabled", "to_variable", "grad"]


def _place_to_device(place):
    if place is None:
        return None
    if isinstance(place, str):
        return place
    if isinstance(place, paddle.CPUPlace):
        return "cpu"
    if isinstance(place, paddle.CUDAPlace):
        return "gpu:{}".format(place.get_device_id())
    if isinstance(place, paddle.CUDAPinnedPlace):
        return "gpu"
    raise TypeError("place should be CPUPlace or CUDAPlace, but received {!r}".format(place))


@contextlib.contextmanager
def guard(place=None):
    """1.8 ``fluid.dygraph.guard(place=None)``: run the block in dygraph mode.

    Args:
        place: ``fluid.CPUPlace()``, ``fluid.CUDAPlace(i)`` or None (GPU 0 when Paddle
            is built with CUDA and a GPU is visible, else CPU).
    """
    t = _support.tracer()
    saved = (t._train_mode, t._has_grad)
    device = _place_to_device(place)
    saved_device = paddle.get_device() if device is not None else None
    framework._push_programs()
    try:
        with _unique_name.guard():
            if device is not None:
                paddle.set_device(device)
            _support.set_train_mode(True)
            yield
    finally:
        framework._pop_programs()
        t._train_mode, t._has_grad = saved
        if saved_device is not None:
            paddle.set_device(saved_device)


def enable_dygraph(place=None):
    """1.8 ``enable_dygraph``: switch to dygraph mode (the tracer in train mode; optional place)."""
    device = _place_to_device(place)
    if device is not None:
        paddle.set_device(device)
    _support.set_train_mode(True)


def disable_dygraph():
    """1.8 ``disable_dygraph``: accepted; Paddle 3 stays dynamic (static graphs are not provided)."""


enable_imperative = enable_dygraph
disable_imperative = disable_dygraph


def enabled():
    """True: Paddle 3 is always in dygraph mode."""
    return True


class _NoGrad(object):
    """1.8 ``no_grad``: a context manager and a decorator; also puts ``layers.dropout`` in infer mode."""

    def __call__(self, func=None):
        if func is None:
            return self
        import functools

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self:
                return func(*args, **kwargs)

        return wrapper

    def __enter__(self):
        t = _support.tracer()
        if not hasattr(self, "_saved"):
            self._saved = []
        self._saved.append((t._train_mode, t._has_grad))
        t._train_mode = False
        t._has_grad = False
        return self

    def __exit__(self, *exc):
        t = _support.tracer()
        t._train_mode, t._has_grad = self._saved.pop()
        return False


def no_grad(func=None):
    """1.8 ``no_grad``: ``with no_grad():`` or ``@no_grad`` (with or without parentheses)."""
    guard_obj = _NoGrad()
    if func is None:
        return guard_obj
    return guard_obj(func)


_ZERO_COPY_DTYPES = (np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_)


def to_variable(value, name=None, zero_copy=None):
    """1.8 ``to_variable(value, name=None, zero_copy=None)``: a numpy array as a dygraph tensor.

    Only ``numpy.ndarray`` (or an existing tensor, returned as is) is accepted.  The dtype is
    kept (float64 stays float64) and ``stop_gradient`` is True.  On CPU ``zero_copy``
    defaults to True as in 1.8: the tensor shares the array's memory.

    Raises:
        TypeError: for any other type (a list, a Python number, ...).
    """
    if isinstance(value, paddle.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise TypeError(
            "The type of 'value' in fluid.dygraph.to_variable must be numpy.ndarray or Variable, "
            "but received {}.".format(type(value))
        )
    on_cpu = paddle.get_device() == "cpu"
    if zero_copy is None:
        zero_copy = on_cpu
    if zero_copy and on_cpu and value.flags["C_CONTIGUOUS"] and value.dtype.type in _ZERO_COPY_DTYPES:
        return _core.eager.Tensor(
            value=value,
            place=paddle.CPUPlace(),
            persistable=False,
            zero_copy=True,
            name=name if name else _unique_name.generate("generated_tensor"),
            stop_gradient=True,
        )
    tensor = paddle.to_tensor(value)
    tensor.stop_gradient = True
    return tensor


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=False, no_grad_vars=None, backward_strategy=None):
    """1.8 ``fluid.dygraph.grad``: gradients of ``outputs`` w.r.t. ``inputs`` (``paddle.grad``)."""
    if not only_inputs:
        raise _support.not_provided("fluid.dygraph.grad(only_inputs=False)")
    return paddle.grad(outputs, inputs, grad_outputs=grad_outputs, retain_graph=retain_graph,
                       create_graph=create_graph, only_inputs=True, allow_unused=allow_unused,
                       no_grad_vars=no_grad_vars)


__getattr__ = _support.module_getattr(__name__)
