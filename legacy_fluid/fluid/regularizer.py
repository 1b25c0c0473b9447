"""``paddle.fluid.regularizer`` of 1.8: ``L2Decay`` / ``L1Decay`` with the old keyword.

1.8 names the coefficient ``regularization_coeff``; Paddle 3 names it ``coeff``.  Both
add ``coeff * param`` (L2) or ``coeff * sign(param)`` (L1) to the gradient before the
update, also for biases and BatchNorm scale/shift unless a ``ParamAttr.regularizer``
overrides it (FLUID_1_8.md section 5).
"""

import paddle

from legacy_fluid.fluid import _support

__all__ = ["L1Decay", "L2Decay", "L1DecayRegularizer", "L2DecayRegularizer"]


class L2DecayRegularizer(paddle.regularizer.L2Decay):
    """1.8 ``L2Decay(regularization_coeff=0.0)``: ``grad + coeff * param``."""

    def __init__(self, regularization_coeff=0.0):
        super(L2DecayRegularizer, self).__init__(coeff=float(regularization_coeff))
        self._regularization_coeff = float(regularization_coeff)


class L1DecayRegularizer(paddle.regularizer.L1Decay):
    """1.8 ``L1Decay(regularization_coeff=0.0)``: ``grad + coeff * sign(param)``."""

    def __init__(self, regularization_coeff=0.0):
        super(L1DecayRegularizer, self).__init__(coeff=float(regularization_coeff))
        self._regularization_coeff = float(regularization_coeff)


L2Decay = L2DecayRegularizer
L1Decay = L1DecayRegularizer

__getattr__ = _support.module_getattr(__name__)
