"""``paddle.fluid.initializer`` of 1.8 (FLUID_1_8.md section 4).

Paddle 3 still ships the fluid-named initializer classes with the 1.8 signatures
(``NormalInitializer(loc, scale, seed)``: the third positional argument is the seed,
as 1.8's Conv2D passes it), so they are used directly.  ``MSRA`` is uniform by default
(limit ``sqrt(6/fan_in)``); ``Xavier`` is uniform with limit ``sqrt(6/(fan_in+fan_out))``.
A seed of 0 means "use the program's seed"; Paddle 3's generator does not reproduce
1.8's random draws bit for bit.
"""

import paddle.nn.initializer as _init

from legacy_fluid.fluid import _support

__all__ = [
    "Constant", "Uniform", "Normal", "TruncatedNormal", "Xavier", "Bilinear", "MSRA",
    "ConstantInitializer", "UniformInitializer", "NormalInitializer", "TruncatedNormalInitializer",
    "XavierInitializer", "BilinearInitializer", "MSRAInitializer", "NumpyArrayInitializer",
    "Initializer",
]

Initializer = _init.Initializer
ConstantInitializer = Constant = _init.ConstantInitializer
UniformInitializer = Uniform = _init.UniformInitializer
NormalInitializer = Normal = _init.NormalInitializer
TruncatedNormalInitializer = TruncatedNormal = _init.TruncatedNormalInitializer
XavierInitializer = Xavier = _init.XavierInitializer
MSRAInitializer = MSRA = _init.MSRAInitializer
BilinearInitializer = Bilinear = _init.Bilinear
NumpyArrayInitializer = _init.NumpyArrayInitializer


__getattr__ = _support.module_getattr(__name__)
