"""``paddle.fluid.clip`` of 1.8: the gradient clippers passed as ``grad_clip=`` to optimizers."""

import paddle

from legacy_fluid.fluid import _support

__all__ = ["GradientClipByValue", "GradientClipByNorm", "GradientClipByGlobalNorm"]


class GradientClipByValue(paddle.nn.ClipGradByValue):
    """1.8 ``GradientClipByValue(max, min=None)``: clip every gradient element to [min, max] (min=-max)."""

    def __init__(self, max, min=None):
        super(GradientClipByValue, self).__init__(max=max, min=min)


class GradientClipByNorm(paddle.nn.ClipGradByNorm):
    """1.8 ``GradientClipByNorm(clip_norm)``: rescale each gradient to L2 norm <= clip_norm."""

    def __init__(self, clip_norm):
        super(GradientClipByNorm, self).__init__(clip_norm=clip_norm)


class GradientClipByGlobalNorm(paddle.nn.ClipGradByGlobalNorm):
    """1.8 ``GradientClipByGlobalNorm(clip_norm, group_name='default_group')``."""

    def __init__(self, clip_norm, group_name="default_group"):
        super(GradientClipByGlobalNorm, self).__init__(clip_norm=clip_norm, group_name=group_name)


__getattr__ = _support.module_getattr(__name__)
