"""``paddle.fluid.unique_name`` of 1.8: ``generate``, ``guard`` and ``switch`` (Paddle 3's generator)."""

from paddle.utils import unique_name as _unique_name

from legacy_fluid.fluid import _support

__all__ = ["generate", "guard", "switch"]

generate = _unique_name.generate
guard = _unique_name.guard
switch = _unique_name.switch

__getattr__ = _support.module_getattr(__name__)
