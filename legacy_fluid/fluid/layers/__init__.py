"""``paddle.fluid.layers`` of 1.8 in dygraph: the functions the course programs call (SPEC 3).

Submodules as in 1.8: :mod:`.nn` (layers and tensor manipulation), :mod:`.tensor`
(creation, casting), :mod:`.loss`, :mod:`.metric_op` (``accuracy``), :mod:`.ops`
(element-wise activations).  A 1.8 name not listed in ``__all__`` raises
``legacy_fluid.NotProvidedError`` naming it.
"""

from legacy_fluid.fluid import _support
from legacy_fluid.fluid.layers import loss, metric_op, nn, ops, tensor
from legacy_fluid.fluid.layers.loss import *  # noqa: F401,F403
from legacy_fluid.fluid.layers.metric_op import *  # noqa: F401,F403
from legacy_fluid.fluid.layers.nn import *  # noqa: F401,F403
from legacy_fluid.fluid.layers.ops import *  # noqa: F401,F403
from legacy_fluid.fluid.layers.tensor import *  # noqa: F401,F403

__all__ = list(nn.__all__) + list(tensor.__all__) + list(loss.__all__) + list(metric_op.__all__) + list(ops.__all__)

__getattr__ = _support.module_getattr(__name__)
