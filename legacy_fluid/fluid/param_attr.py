"""``paddle.fluid.param_attr`` of 1.8: ``ParamAttr`` and ``WeightNormParamAttr``.

Paddle 3's ``paddle.ParamAttr`` keeps 1.8's argument order (name, initializer,
learning_rate, regularizer, trainable, do_model_average) and its ``_to_attr`` rules
(None -> default, str -> name, Initializer -> initializer, Regularizer -> regularizer,
False -> no parameter), so it is re-exported under the 1.8 name.
"""

import paddle

from legacy_fluid.fluid import _support

__all__ = ["ParamAttr"]


class ParamAttr(paddle.ParamAttr):
    """1.8 ``ParamAttr(name=None, initializer=None, learning_rate=1.0, regularizer=None, trainable=True, do_model_average=True)``."""

    def __init__(self, name=None, initializer=None, learning_rate=1.0, regularizer=None, trainable=True,
                 do_model_average=True):
        super(ParamAttr, self).__init__(name=name, initializer=initializer, learning_rate=learning_rate,
                                        regularizer=regularizer, trainable=trainable,
                                        do_model_average=do_model_average)


class WeightNormParamAttr(ParamAttr):
    """Not provided: weight normalisation of 1.8 static graphs."""

    def __init__(self, *args, **kwargs):
        raise _support.not_provided("paddle.fluid.param_attr.WeightNormParamAttr")


__getattr__ = _support.module_getattr(__name__)
