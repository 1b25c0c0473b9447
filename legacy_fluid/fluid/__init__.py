"""``paddle.fluid`` of PaddlePaddle 1.8, dygraph part, on Paddle 3.x (SPEC 3; facts in FLUID_1_8.md).

After ``legacy_fluid.install()`` this package is ``paddle.fluid``.  Top-level names as in
1.8: ``dygraph``, ``layers``, ``optimizer``, ``initializer``, ``param_attr``/``ParamAttr``,
``layer_helper``, ``regularizer``, ``clip``, ``io``, ``framework``, ``unique_name``,
``core``, ``save_dygraph``/``load_dygraph``, the places, and the dygraph layers exported
at top level in 1.8 (``Linear``, ``Conv2D``, ``Pool2D``, ``BatchNorm``, ``Embedding``,
``Dropout`` ...).  A 1.8 name that is not provided (``Executor``, ``program_guard``, ...)
raises ``legacy_fluid.NotProvidedError`` naming it.
"""

import paddle

from legacy_fluid.fluid import (  # noqa: F401
    _support,
    clip,
    core,
    dygraph,
    framework,
    initializer,
    io,
    layer_helper,
    layers,
    optimizer,
    param_attr,
    regularizer,
    unique_name,
)
from legacy_fluid.fluid.dygraph.base import disable_dygraph, disable_imperative, enable_dygraph, enable_imperative
from legacy_fluid.fluid.dygraph.checkpoint import load_dygraph, save_dygraph
from legacy_fluid.fluid.dygraph.layers import Layer
from legacy_fluid.fluid.dygraph.nn import BatchNorm, Conv2D, Dropout, Embedding, LayerNorm, Linear, Pool2D, PRelu
from legacy_fluid.fluid.framework import (
    Program,
    Variable,
    default_main_program,
    default_startup_program,
    in_dygraph_mode,
    name_scope,
)
from legacy_fluid.fluid.param_attr import ParamAttr, WeightNormParamAttr  # noqa: F401  (fluid.WeightNormParamAttr)

CPUPlace = paddle.CPUPlace
CUDAPlace = paddle.CUDAPlace
CUDAPinnedPlace = paddle.CUDAPinnedPlace
is_compiled_with_cuda = paddle.is_compiled_with_cuda


def cpu_places(device_count=None):
    """``device_count`` CPU places (1 by default)."""
    return [paddle.CPUPlace()] * (device_count or 1)


def cuda_places(device_ids=None):
    """The CUDA places of ``device_ids`` (all visible GPUs by default)."""
    if device_ids is None:
        device_ids = range(paddle.device.cuda.device_count())
    return [paddle.CUDAPlace(i) for i in device_ids]


def require_version(min_version, max_version=None):
    """Accepted: legacy_fluid provides the 1.8 API, which satisfies 1.x version checks of course code."""


__all__ = [
    "dygraph", "layers", "optimizer", "initializer", "param_attr", "layer_helper", "regularizer", "clip", "io",
    "framework", "unique_name", "core", "ParamAttr", "save_dygraph", "load_dygraph",
    "enable_dygraph", "disable_dygraph", "enable_imperative", "disable_imperative", "in_dygraph_mode",
    "default_main_program", "default_startup_program", "Program", "Variable", "name_scope", "Layer",
    "Linear", "Conv2D", "Pool2D", "BatchNorm", "Embedding", "Dropout", "LayerNorm", "PRelu",
    "CPUPlace", "CUDAPlace", "CUDAPinnedPlace", "is_compiled_with_cuda", "cpu_places", "cuda_places",
    "require_version",
]

__getattr__ = _support.module_getattr(__name__)
