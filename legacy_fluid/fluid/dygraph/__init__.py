"""``paddle.fluid.dygraph`` of 1.8: guard, to_variable, Layer, the layers, decays, checkpoints (SPEC 3).

Mirrors 1.8's submodules: :mod:`.base`, :mod:`.layers`, :mod:`.nn`, :mod:`.container`,
:mod:`.checkpoint`, :mod:`.learning_rate_scheduler`.  Names of 1.8 not provided here
(``DataParallel``, ``TracedLayer``, ``declarative``, ``GRUUnit``, ...) raise
``legacy_fluid.NotProvidedError``.
"""

from legacy_fluid.fluid import _support
from legacy_fluid.fluid.dygraph import base, checkpoint, container, layers, learning_rate_scheduler, nn
from legacy_fluid.fluid.dygraph.base import *  # noqa: F401,F403
from legacy_fluid.fluid.dygraph.base import disable_imperative, enable_imperative  # noqa: F401
from legacy_fluid.fluid.dygraph.checkpoint import *  # noqa: F401,F403
from legacy_fluid.fluid.dygraph.container import *  # noqa: F401,F403
from legacy_fluid.fluid.dygraph.layers import *  # noqa: F401,F403
from legacy_fluid.fluid.dygraph.learning_rate_scheduler import *  # noqa: F401,F403
from legacy_fluid.fluid.dygraph.nn import *  # noqa: F401,F403


class BackwardStrategy(object):
    """1.8 ``BackwardStrategy`` (``sort_sum_gradient``): accepted for compatibility.

    Pass it nowhere: Paddle 3's ``Tensor.backward`` takes no strategy, and summation
    order does not change results beyond float rounding.
    """

    def __init__(self):
        self.sort_sum_gradient = False


__all__ = (
    list(base.__all__) + ["enable_imperative", "disable_imperative"] + list(layers.__all__) + list(nn.__all__)
    + list(container.__all__) + list(checkpoint.__all__)
    + [n for n in learning_rate_scheduler.__all__ if n != "LearningRateDecay"]
    + ["BackwardStrategy"]
)

__getattr__ = _support.module_getattr(__name__)
