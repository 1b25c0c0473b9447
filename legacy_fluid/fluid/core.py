"""``paddle.fluid.core`` of 1.8, reduced to what dygraph programs touch: places and dtypes.

``core.VarDesc.VarType.FP32`` and friends, ``CPUPlace``/``CUDAPlace`` and
``is_compiled_with_cuda`` come from Paddle 3; the rest of the C++ core is not provided.
"""

import paddle
from paddle.base import core as _core

from legacy_fluid.fluid import _support

__all__ = ["CPUPlace", "CUDAPlace", "CUDAPinnedPlace", "VarDesc", "VarBase", "is_compiled_with_cuda"]

CPUPlace = paddle.CPUPlace
CUDAPlace = paddle.CUDAPlace
CUDAPinnedPlace = paddle.CUDAPinnedPlace
VarDesc = _core.VarDesc
#: The 1.8 dygraph tensor type.
VarBase = paddle.Tensor
is_compiled_with_cuda = paddle.is_compiled_with_cuda

__getattr__ = _support.module_getattr(__name__)
