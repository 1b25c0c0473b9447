"""``paddle.fluid.layer_helper.LayerHelper`` of 1.8, as dygraph code uses it (FLUID_1_8.md section 4).

The course's ResNet does ``LayerHelper(self.full_name(), act='relu').append_activation(y)``
after ``elementwise_add``: ``append_activation(input_var)`` takes only the input and
applies the activation named by the ``act`` keyword given to the constructor (None:
returns ``input_var`` itself; a non-string ``act``: ``TypeError``).
"""

import paddle

from legacy_fluid.fluid import _support, unique_name

__all__ = ["LayerHelper"]


class LayerHelper(object):
    """``LayerHelper(layer_type, **kwargs)``; ``kwargs['name']`` defaults to a unique name from ``layer_type``."""

    def __init__(self, layer_type, **kwargs):
        self.kwargs = kwargs
        self.layer_type = layer_type
        name = self.kwargs.get("name", None)
        if name is None:
            self.kwargs["name"] = unique_name.generate(layer_type)

    @property
    def name(self):
        """The helper's unique name."""
        return self.kwargs["name"]

    def append_activation(self, input_var):
        """Apply ``kwargs['act']`` (an op name such as ``'relu'``) to ``input_var``."""
        act = self.kwargs.get("act", None)
        if act is None:
            return input_var
        return _support.apply_act(input_var, act)

    def create_parameter(self, attr, shape, dtype=None, is_bias=False, default_initializer=None,
                         stop_gradient=False, type=None):
        """A new parameter (Xavier for weights, 0 for biases unless ``attr``/``default_initializer`` say otherwise)."""
        param = paddle.create_parameter(list(shape), dtype or "float32", attr=attr, is_bias=is_bias,
                                        default_initializer=default_initializer)
        param.stop_gradient = stop_gradient
        return param

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise _support.not_provided("LayerHelper.{}".format(name), "static-graph helpers are not provided")


__getattr__ = _support.module_getattr(__name__)
