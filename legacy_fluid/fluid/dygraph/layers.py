"""``paddle.fluid.dygraph.Layer`` of 1.8, as a subclass of ``paddle.nn.Layer`` (FLUID_1_8.md section 1).

What differs from ``paddle.nn.Layer`` and is reproduced here:

* ``eval()`` also switches gradient recording off globally and ``train()`` back on
  (1.8's tracer flag, section 0 #13);
* ``backward()`` overwrites, not accumulates, the gradients of parameters created by
  legacy_fluid layers (section 0 #4): each such parameter carries a gradient hook that
  drops the previous gradient before the new one is stored.  Within one graph the
  contributions are still summed;
* ``set_dict``/``load_dict`` raise ``RuntimeError`` for a missing key and check shapes
  and dtypes (Paddle 3's ``set_state_dict`` only warns);
* ``sublayers(include_sublayers=True)`` and ``named_sublayers`` keep 1.8's arguments.

Being a ``paddle.nn.Layer``, a legacy layer can sit inside a modern model and the other
way round (the seed's mixed style, SPEC 2.1).
"""

import inspect
import warnings
import weakref

import numpy as np
import paddle

from legacy_fluid.fluid import _support

__all__ = ["Layer"]

#: Paddle 3.0 added ``remove_duplicate`` to ``paddle.nn.Layer.named_sublayers``; Paddle 2.6
#: refuses the keyword.  The one place legacy_fluid depends on it.
_HAS_REMOVE_DUPLICATE = "remove_duplicate" in inspect.signature(paddle.nn.Layer.named_sublayers).parameters


def overwrite_grads_on_backward(param):
    """Give ``param`` 1.8's rule: a new ``backward()`` replaces its gradient instead of adding to it."""
    if param is None or getattr(param, "stop_gradient", True):
        return param
    ref = weakref.ref(param)

    def _replace_previous_grad(grad):
        owner = ref()
        if owner is not None and owner.grad is not None:
            owner.clear_gradient(False)
        return grad

    param.register_hook(_replace_previous_grad)
    return param


class Layer(paddle.nn.Layer):
    """1.8 ``fluid.dygraph.Layer(name_scope=None, dtype='float32')``: the base class of models.

    ``full_name()`` is ``<snake_case class name>_<n>``, e.g. ``conv2d_0``.
    """

    def __init__(self, name_scope=None, dtype="float32"):
        super(Layer, self).__init__(name_scope=name_scope, dtype=dtype)

    def train(self):
        """Train mode for this layer and its sublayers, and grads on again (1.8's tracer flag)."""
        super(Layer, self).train()
        _support.set_train_mode(True)

    def eval(self):
        """Eval mode for this layer and its sublayers, and (as 1.8) no gradient recording until ``train()``."""
        super(Layer, self).eval()
        _support.set_train_mode(False)

    def create_parameter(self, shape, attr=None, dtype="float32", is_bias=False, default_initializer=None):
        """Create a parameter of this layer (1.8 signature; default init Xavier, bias Constant(0))."""
        param = super(Layer, self).create_parameter(
            shape, attr=attr, dtype=dtype, is_bias=is_bias, default_initializer=default_initializer
        )
        return overwrite_grads_on_backward(param)

    def sublayers(self, include_sublayers=True, include_self=False):
        """All sublayers (recursively when ``include_sublayers``); ``include_self`` is Paddle 3's keyword."""
        return [layer for _, layer in self.named_sublayers(include_sublayers=include_sublayers,
                                                           include_self=include_self)]

    def named_sublayers(self, prefix="", include_sublayers=True, include_self=False, layers_set=None,
                        remove_duplicate=True):
        """``(name, layer)`` pairs as in 1.8 (``include_sublayers=False``: direct children only).

        The trailing keywords are Paddle's own (``remove_duplicate`` since Paddle 3.0), so
        Paddle's calls keep working.
        """
        if not include_sublayers:
            pairs = []
            if include_self:
                pairs.append((prefix, self))
            for key, layer in self._sub_layers.items():
                if layer is not None:
                    pairs.append((prefix + ("." if prefix else "") + key, layer))
            return iter(pairs)
        extra = {"remove_duplicate": remove_duplicate} if _HAS_REMOVE_DUPLICATE else {}
        return super(Layer, self).named_sublayers(prefix=prefix, include_self=include_self, layers_set=layers_set,
                                                  **extra)

    def backward(self, *inputs):
        """Layers have no backward of their own (1.8 raises as well)."""
        raise ValueError("Layer shouldn't implement backward")

    def set_dict(self, stat_dict, include_sublayers=True, use_structured_name=True):
        """Load parameters and persistable buffers from ``stat_dict`` (numpy arrays or tensors).

        Args:
            stat_dict: mapping from structured names (``conv1.weight``) or, with
                ``use_structured_name=False``, parameter names (``conv2d_0.w_0``).
            include_sublayers: also load the sublayers' state.
            use_structured_name: which kind of key ``stat_dict`` uses.

        Raises:
            RuntimeError: a key of this layer's ``state_dict()`` is missing, or a value's
                shape or dtype differs from the parameter's.
        """
        own = self.state_dict(include_sublayers=include_sublayers)
        used = set()
        for name, target in own.items():
            key = name if use_structured_name else target.name
            if key not in stat_dict:
                raise RuntimeError(
                    "Parameter or persistable buffer not found, Can't find [ {} ] in stat_dict; "
                    "use_structured_name is set to [{}]".format(key, use_structured_name)
                )
            used.add(key)
            value = stat_dict[key]
            array = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
            if list(array.shape) != list(target.shape):
                raise RuntimeError(
                    "Variable shape not match, Variable [ {} ] need tensor with shape {} but load set tensor "
                    "with shape {}".format(key, list(target.shape), list(array.shape))
                )
            want = paddle.base.data_feeder.convert_dtype(target.dtype)
            if str(array.dtype) != want:
                raise RuntimeError(
                    "Variable dtype not match, Variable [ {} ] need tensor with dtype {} but load tensor with "
                    "dtype {}".format(key, want, array.dtype)
                )
            target.set_value(array)
        unused = [key for key in stat_dict if key not in used and key != "StructuredToParameterName@@"]
        if unused:
            warnings.warn("Varibale [ {} ] are not used, because not included in layers state_dict".format(
                " ".join(unused)))

    load_dict = set_dict


__getattr__ = _support.module_getattr(__name__)
