"""``paddle.fluid.layers.nn`` of 1.8 in dygraph (FLUID_1_8.md section 3).

Rules that differ from the modern functions and are kept here (section 0):

* ``mean`` and ``reduce_*`` over everything return shape ``[1]`` (1.8 has no 0-D tensors);
* ``dropout`` defaults to ``downgrade_in_infer`` and **ignores** ``is_test``: the global
  tracer flag decides (``Layer.eval()``/``no_grad`` switch it to inference) (#2, #3);
* ``flatten(x, axis=1)`` always gives a 2-D result (#10);
* ``elementwise_*(x, y, axis=-1)`` aligns ``y`` with ``x`` starting at dim ``axis`` (#11);
* ``leaky_relu`` uses alpha 0.02 (#12);
* ``fc`` creates new parameters at every call, as 1.8's did in dygraph (#15).
"""

import functools
import operator

import numpy as np
import paddle
import paddle.nn.functional as F

from legacy_fluid.fluid import _support
from legacy_fluid.fluid.dygraph.nn import _dropout, _pair, _pool2d
from legacy_fluid.fluid.initializer import Constant, Xavier

__all__ = [
    "fc", "pool2d", "adaptive_pool2d", "dropout", "softmax", "relu", "leaky_relu", "relu6", "elu", "swish",
    "hard_sigmoid", "hard_swish", "brelu", "soft_relu", "selu", "stanh", "gelu", "log", "pow",
    "mean", "reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_all", "reduce_any",
    "reshape", "transpose", "flatten", "split", "stack", "unstack", "unsqueeze", "squeeze", "expand",
    "expand_as", "slice", "strided_slice", "gather", "one_hot", "topk", "matmul", "mul", "scale", "clip",
    "clip_by_norm", "l2_normalize", "pad", "pad2d", "resize_bilinear", "resize_nearest", "image_resize",
    "elementwise_add", "elementwise_sub", "elementwise_mul", "elementwise_div", "elementwise_max",
    "elementwise_min", "elementwise_pow", "elementwise_mod", "elementwise_floordiv", "shape", "size",
    "label_smooth", "uniform_random", "gaussian_random", "where", "sign", "roll", "flip", "index_select",
    "logical_and", "logical_or", "logical_not", "logical_xor",
]


def _prod(values):
    return functools.reduce(operator.mul, values, 1)


def fc(input, size, num_flatten_dims=1, param_attr=None, bias_attr=None, act=None, name=None):
    """1.8 ``fc``: ``act(flatten(input) @ W + b)`` with **new** parameters at every call (as 1.8 in dygraph).

    ``W`` is ``[prod(input.shape[num_flatten_dims:]), size]`` (Xavier), ``b`` ``[size]`` (0).
    A list of inputs gives one ``W`` each and the products are summed.
    """
    inputs = input if isinstance(input, (list, tuple)) else [input]
    attrs = param_attr if isinstance(param_attr, (list, tuple)) else [param_attr] * len(inputs)
    total = None
    for x, attr in zip(inputs, attrs):
        shape = list(x.shape)
        rows, cols = _prod(shape[:num_flatten_dims]), _prod(shape[num_flatten_dims:])
        weight = paddle.create_parameter([cols, size], x.dtype, attr=attr, default_initializer=Xavier())
        out = paddle.matmul(x.reshape([rows, cols]), weight).reshape(shape[:num_flatten_dims] + [size])
        total = out if total is None else total + out
    if bias_attr is not False:
        bias = paddle.create_parameter([size], total.dtype, attr=bias_attr, is_bias=True,
                                       default_initializer=Constant(0.0))
        total = total + bias
    return _support.apply_act(total, act)


def pool2d(input, pool_size=-1, pool_type="max", pool_stride=1, pool_padding=0, global_pooling=False,
           use_cudnn=True, ceil_mode=False, name=None, exclusive=True, data_format="NCHW"):
    """1.8 ``pool2d``: the stride defaults to **1** (see ``dygraph.Pool2D``)."""
    if pool_type not in ("max", "avg"):
        raise ValueError("Unknown Attr(pool_type): '{}'. It can only be 'max' or 'avg'.".format(pool_type))
    if global_pooling is False and pool_size == -1:
        raise ValueError("When Attr(global_pooling) is False, Attr(pool_size) must be passed and be a valid "
                         "value. Received pool_size: {}".format(pool_size))
    if data_format != "NCHW":
        raise _support.not_provided("pool2d(data_format={!r})".format(data_format))
    if isinstance(pool_padding, str):
        raise _support.not_provided("pool2d(pool_padding={!r})".format(pool_padding))
    return _pool2d(input, _pair(pool_size, "pool_size"), pool_type, _pair(pool_stride, "pool_stride"),
                   _pair(pool_padding, "pool_padding"), global_pooling, ceil_mode, exclusive)


def adaptive_pool2d(input, pool_size, pool_type="max", require_index=False, name=None):
    """1.8 ``adaptive_pool2d``: adaptive max/avg pooling to ``pool_size``."""
    if require_index:
        raise _support.not_provided("adaptive_pool2d(require_index=True)")
    if pool_type == "max":
        return F.adaptive_max_pool2d(input, pool_size)
    if pool_type == "avg":
        return F.adaptive_avg_pool2d(input, pool_size)
    raise ValueError("Unknown pool_type: '{}'. It can only be 'max' or 'avg'.".format(pool_type))


def dropout(x, dropout_prob, is_test=False, seed=None, name=None, dropout_implementation="downgrade_in_infer"):
    """1.8 ``dropout``: ``downgrade_in_infer`` by default; **``is_test`` is ignored**: the global train flag decides.

    In train mode (after ``guard()``/``Layer.train()``): ``x * mask`` (no rescale for
    ``downgrade_in_infer``); in inference mode (after ``Layer.eval()`` or inside
    ``no_grad``): ``x * (1 - dropout_prob)`` (identity for ``upscale_in_train``).
    """
    return _dropout(x, dropout_prob, not _support.dropout_is_training(), seed, dropout_implementation)


def softmax(input, use_cudnn=False, name=None, axis=-1):
    """Softmax along ``axis`` (default the last)."""
    return F.softmax(input, axis=axis)


def relu(x, name=None):
    """``max(x, 0)``."""
    return F.relu(x)


def leaky_relu(x, alpha=0.02, name=None):
    """``x if x > 0 else alpha * x`` with 1.8's default **alpha 0.02** (modern default 0.01)."""
    return F.leaky_relu(x, alpha)


def relu6(x, threshold=6.0, name=None):
    """``min(max(x, 0), threshold)``."""
    return paddle.clip(F.relu(x), max=threshold)


def elu(x, alpha=1.0, name=None):
    """ELU with ``alpha``."""
    return F.elu(x, alpha)


def swish(x, beta=1.0, name=None):
    """``x * sigmoid(beta * x)``."""
    return x * F.sigmoid(x * beta)


def hard_sigmoid(x, slope=0.2, offset=0.5, name=None):
    """``clip(slope * x + offset, 0, 1)`` (1.8 defaults slope 0.2, offset 0.5)."""
    return F.hardsigmoid(x, slope=slope, offset=offset)


def hard_swish(x, threshold=6.0, scale=6.0, offset=3.0, name=None):
    """``x * min(max(x + offset, 0), threshold) / scale``."""
    return x * paddle.clip(x + offset, 0.0, threshold) / scale


def brelu(x, t_min=0.0, t_max=24.0, name=None):
    """``clip(x, t_min, t_max)``."""
    return paddle.clip(x, t_min, t_max)


def soft_relu(x, threshold=40.0, name=None):
    """``log(1 + exp(clip(x, -threshold, threshold)))``."""
    return paddle.log(1.0 + paddle.exp(paddle.clip(x, -threshold, threshold)))


def selu(x, scale=None, alpha=None, name=None):
    """SELU (1.8 defaults scale 1.0507009873554805, alpha 1.6732632423543772)."""
    return F.selu(x, scale=1.0507009873554804934193349852946 if scale is None else scale,
                  alpha=1.6732632423543772848170429916717 if alpha is None else alpha)


def stanh(x, scale_a=0.67, scale_b=1.7159, name=None):
    """``scale_b * tanh(scale_a * x)``."""
    return paddle.tanh(x * scale_a) * scale_b


def gelu(x, approximate=False):
    """GELU (exact, or the tanh approximation)."""
    return F.gelu(x, approximate=approximate)


def prelu(x, mode, param_attr=None, name=None):
    """Not provided: 1.8's functional ``prelu`` creates parameters; use ``dygraph.PRelu``."""
    raise _support.not_provided("paddle.fluid.layers.prelu", "use fluid.dygraph.PRelu")


def log(x, name=None):
    """Natural logarithm."""
    return paddle.log(x)


def pow(x, factor=1.0, name=None):
    """``x ** factor``."""
    return paddle.pow(x, factor)


def mean(x, name=None):
    """Mean of all elements, shape **[1]** (1.8; the modern ``paddle.mean`` is 0-D)."""
    return paddle.mean(x).reshape([1])


def _reduce(fn, input, dim, keep_dim):
    if dim is not None and not isinstance(dim, (list, tuple)):
        dim = [dim]
    if dim is not None and len(dim) == 0:
        dim = None
    return _support.no_0d(fn(input, axis=dim, keepdim=keep_dim))


def reduce_mean(input, dim=None, keep_dim=False, name=None):
    """Mean over ``dim`` (None: all, giving shape ``[1]``)."""
    return _reduce(paddle.mean, input, dim, keep_dim)


def reduce_sum(input, dim=None, keep_dim=False, name=None):
    """Sum over ``dim`` (None: all, giving shape ``[1]``)."""
    return _reduce(paddle.sum, input, dim, keep_dim)


def reduce_max(input, dim=None, keep_dim=False, name=None):
    """Maximum over ``dim`` (None: all, giving shape ``[1]``)."""
    return _reduce(paddle.max, input, dim, keep_dim)


def reduce_min(input, dim=None, keep_dim=False, name=None):
    """Minimum over ``dim`` (None: all, giving shape ``[1]``)."""
    return _reduce(paddle.min, input, dim, keep_dim)


def reduce_prod(input, dim=None, keep_dim=False, name=None):
    """Product over ``dim`` (None: all, giving shape ``[1]``)."""
    return _reduce(paddle.prod, input, dim, keep_dim)


def reduce_all(input, dim=None, keep_dim=False, name=None):
    """Logical and over ``dim``."""
    return _reduce(paddle.all, input, dim, keep_dim)


def reduce_any(input, dim=None, keep_dim=False, name=None):
    """Logical or over ``dim``."""
    return _reduce(paddle.any, input, dim, keep_dim)


def reshape(x, shape, actual_shape=None, act=None, inplace=False, name=None):
    """Reshape to ``shape`` (a list of ints; ``0`` copies the input dim, one ``-1`` is inferred), then ``act``."""
    if actual_shape is not None:
        raise _support.not_provided("reshape(actual_shape=...)")
    if isinstance(shape, paddle.Tensor):
        shape = [int(v) for v in shape.numpy().reshape(-1)]
    elif not isinstance(shape, (list, tuple)):
        raise TypeError("Input shape of reshape must be a list or tuple, but received {}".format(type(shape)))
    shape = [int(v.numpy().reshape(-1)[0]) if isinstance(v, paddle.Tensor) else v for v in shape]
    return _support.apply_act(paddle.reshape(x, shape), act)


def transpose(x, perm, name=None):
    """Permute the axes by ``perm``."""
    if len(perm) != len(x.shape):
        raise ValueError("Input(perm) is the permutation of dimensions of Input(x), its length should be equal to "
                         "dimensions of Input(x), but received dimension of Input(x) is {}, the length of "
                         "Input(perm) is {}.".format(len(x.shape), len(perm)))
    return paddle.transpose(x, list(perm))


def flatten(x, axis=1, name=None):
    """Always **2-D**: ``[prod(shape[:axis]), prod(shape[axis:])]`` with ``0 <= axis <= rank``."""
    shape = list(x.shape)
    if not isinstance(axis, int) or axis < 0 or axis > len(shape):
        raise ValueError("The axis should be a int, and in range [0, rank(x)]")
    return paddle.reshape(x, [_prod(shape[:axis]), _prod(shape[axis:])])


def split(input, num_or_sections, dim=-1, name=None):
    """Split along ``dim`` into equal parts or given section sizes; returns a list."""
    return paddle.split(input, num_or_sections, axis=dim)


def stack(x, axis=0):
    """Stack a list of tensors along a new ``axis``."""
    if isinstance(x, paddle.Tensor):
        x = [x]
    return paddle.stack(list(x), axis=axis)


def unstack(x, axis=0, num=None):
    """Split along ``axis`` into ``shape[axis]`` tensors without that axis."""
    return paddle.unstack(x, axis=axis, num=num)


def unsqueeze(input, axes, name=None):
    """Insert size-1 dims at ``axes``."""
    return paddle.unsqueeze(input, axes)


def squeeze(input, axes, name=None):
    """Remove size-1 dims at ``axes`` (``[]``: all of them; never to 0-D)."""
    out = paddle.squeeze(input, axes if axes else None)
    return _support.no_0d(out)


def expand(x, expand_times, name=None):
    """Tile ``x``: dim i is repeated ``expand_times[i]`` times."""
    return paddle.tile(x, list(expand_times))


def expand_as(x, target_tensor, name=None):
    """Tile ``x`` to the shape of ``target_tensor`` (each dim must divide)."""
    times = [t // s for t, s in zip(target_tensor.shape, x.shape)]
    return paddle.tile(x, times)


def slice(input, axes, starts, ends):
    """``input[starts:ends]`` along ``axes``."""
    return paddle.slice(input, axes, starts, ends)


def strided_slice(input, axes, starts, ends, strides):
    """Strided slicing along ``axes``."""
    return paddle.strided_slice(input, axes, starts, ends, strides)


def gather(input, index, overwrite=True):
    """Rows of ``input`` at ``index`` (1-D int)."""
    return paddle.gather(input, index)


def one_hot(input, depth, allow_out_of_range=False):
    """1.8 ``one_hot``: input ``[..., 1]`` int64 -> ``[..., depth]`` float32 (the last size-1 dim is replaced)."""
    shape = list(input.shape)
    if shape and shape[-1] == 1:
        input = input.reshape(shape[:-1])
    if allow_out_of_range:
        valid = paddle.logical_and(input >= 0, input < depth)
        safe = paddle.where(valid, input, paddle.zeros_like(input))
        return F.one_hot(safe, depth) * valid.astype("float32").unsqueeze(-1)
    return F.one_hot(input, depth)


def topk(input, k, name=None):
    """The ``k`` largest values along the last axis and their int64 indices."""
    if isinstance(k, paddle.Tensor):
        k = int(k.numpy().reshape(-1)[0])
    return paddle.topk(input, k)


def matmul(x, y, transpose_x=False, transpose_y=False, alpha=1.0, name=None):
    """``alpha * op(x) @ op(y)``."""
    out = paddle.matmul(x, y, transpose_x=transpose_x, transpose_y=transpose_y)
    return out if alpha == 1.0 else out * alpha


def mul(x, y, x_num_col_dims=1, y_num_col_dims=1, name=None):
    """1.8 ``mul``: flatten ``x`` and ``y`` to 2-D at the given dims, multiply, restore the leading dims."""
    xs, ys = list(x.shape), list(y.shape)
    x2 = x.reshape([_prod(xs[:x_num_col_dims]), _prod(xs[x_num_col_dims:])])
    y2 = y.reshape([_prod(ys[:y_num_col_dims]), _prod(ys[y_num_col_dims:])])
    return paddle.matmul(x2, y2).reshape(xs[:x_num_col_dims] + ys[y_num_col_dims:])


def scale(x, scale=1.0, bias=0.0, bias_after_scale=True, act=None, name=None):
    """``scale * x + bias`` (or ``scale * (x + bias)``), then ``act``."""
    if isinstance(scale, paddle.Tensor):
        scale = float(scale.numpy().reshape(-1)[0])
    return _support.apply_act(paddle.scale(x, scale, bias, bias_after_scale), act)


def clip(x, min, max, name=None):
    """Clip every element to ``[min, max]``."""
    return paddle.clip(x, min, max)


def clip_by_norm(x, max_norm, name=None):
    """Rescale ``x`` so that its L2 norm is at most ``max_norm``."""
    norm = paddle.sqrt(paddle.sum(x * x))
    return paddle.where(norm > max_norm, x * (max_norm / norm), x)


def l2_normalize(x, axis, epsilon=1e-12, name=None):
    """``x / sqrt(max(sum(x^2, axis), epsilon))``."""
    norm = paddle.sqrt(paddle.clip(paddle.sum(x * x, axis=axis, keepdim=True), min=epsilon))
    return x / norm


def pad(x, paddings, pad_value=0.0, name=None):
    """Constant padding; ``paddings`` is ``[before_0, after_0, before_1, after_1, ...]`` over all dims."""
    return paddle.nn.functional.pad(x, list(paddings), value=pad_value, mode="constant")


def pad2d(input, paddings=[0, 0, 0, 0], mode="constant", pad_value=0.0, data_format="NCHW", name=None):  # noqa: B006  (1.8)
    """Pad H and W by ``[top, bottom, left, right]`` (constant, reflect or edge)."""
    top, bottom, left, right = paddings
    modern_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    return F.pad(input, [left, right, top, bottom], mode=modern_mode, value=pad_value, data_format=data_format)


def image_resize(input, out_shape=None, scale=None, name=None, resample="BILINEAR", actual_shape=None,
                 align_corners=True, align_mode=1, data_format="NCHW"):
    """Resize the H, W of ``input`` (1.8 defaults: ``align_corners=True``, ``align_mode=1``)."""
    mode = {"BILINEAR": "bilinear", "NEAREST": "nearest"}.get(resample)
    if mode is None:
        raise _support.not_provided("image_resize(resample={!r})".format(resample))
    if actual_shape is not None:
        out_shape = actual_shape
    if out_shape is not None:
        out_shape = [int(v) for v in out_shape]
    return F.interpolate(input, size=out_shape, scale_factor=None if out_shape is not None else scale, mode=mode,
                         align_corners=align_corners if mode == "bilinear" else False,
                         align_mode=align_mode, data_format=data_format)


def resize_bilinear(input, out_shape=None, scale=None, name=None, actual_shape=None, align_corners=True,
                    align_mode=1, data_format="NCHW"):
    """Bilinear ``image_resize``."""
    return image_resize(input, out_shape, scale, name, "BILINEAR", actual_shape, align_corners, align_mode,
                        data_format)


def resize_nearest(input, out_shape=None, scale=None, name=None, actual_shape=None, align_corners=True,
                   data_format="NCHW"):
    """Nearest-neighbour ``image_resize``."""
    if align_corners:
        raise _support.not_provided("resize_nearest(align_corners=True)", "pass align_corners=False")
    return image_resize(input, out_shape, scale, name, "NEAREST", actual_shape, False, 1, data_format)


def _align_y(x, y, axis):
    """Reshape ``y`` so that it lines up with ``x`` from dim ``axis`` (1.8 elementwise broadcasting)."""
    if not isinstance(y, paddle.Tensor):
        return y
    xs, ys = list(x.shape), list(y.shape)
    if xs == ys or len(ys) > len(xs):
        return y
    if axis == -1:
        axis = len(xs) - len(ys)
    trimmed = list(ys)
    while trimmed and trimmed[-1] == 1 and axis + len(trimmed) > 0 and len(trimmed) > 1:
        trimmed.pop()
    if axis < 0 or axis + len(trimmed) > len(xs):
        raise ValueError("elementwise op: Y of shape {} cannot be aligned to X of shape {} at axis {}".format(
            ys, xs, axis))
    for i, dim in enumerate(trimmed):
        if dim != xs[axis + i] and dim != 1 and xs[axis + i] != 1:
            raise ValueError("elementwise op: Y of shape {} does not match X of shape {} at axis {}".format(
                ys, xs, axis))
    return y.reshape([1] * axis + trimmed + [1] * (len(xs) - axis - len(trimmed)))


def _elementwise(fn, doc):
    def op(x, y, axis=-1, act=None, name=None):
        return _support.apply_act(fn(x, _align_y(x, y, axis)), act)

    op.__doc__ = doc + " ``y`` is aligned to ``x`` from dim ``axis`` (-1: trailing), then ``act``."
    return op


elementwise_add = _elementwise(paddle.add, "``x + y``.")
elementwise_sub = _elementwise(paddle.subtract, "``x - y``.")
elementwise_mul = _elementwise(paddle.multiply, "``x * y``.")
elementwise_div = _elementwise(paddle.divide, "``x / y``.")
elementwise_max = _elementwise(paddle.maximum, "``max(x, y)``.")
elementwise_min = _elementwise(paddle.minimum, "``min(x, y)``.")
elementwise_pow = _elementwise(paddle.pow, "``x ** y``.")
def _trunc_quotient(x, y):
    return paddle.trunc(x.astype("float64") / y.astype("float64"))


def _c_floordiv(x, y):
    """1.8 (C) integer division: the quotient truncated toward zero (-7 // 2 == -3)."""
    return _trunc_quotient(x, y).astype(x.dtype)


def _c_mod(x, y):
    """1.8 (C) remainder: the sign of the dividend (-7 % 3 == -1)."""
    return (x.astype("float64") - _trunc_quotient(x, y) * y.astype("float64")).astype(x.dtype)


elementwise_mod = _elementwise(_c_mod, "``x % y`` with C semantics (the sign of ``x``, as 1.8).")
elementwise_floordiv = _elementwise(_c_floordiv, "``x // y`` truncated toward zero (C semantics, as 1.8).")


def shape(input):
    """The shape of ``input`` as an int32 tensor."""
    return paddle.shape(input).astype("int32")


def size(input):
    """The number of elements as an int64 ``[1]`` tensor."""
    return paddle.to_tensor([int(np.prod(input.shape))], dtype="int64")


def label_smooth(label, prior_dist=None, epsilon=0.1, dtype="float32", name=None):
    """``(1 - epsilon) * label + epsilon * prior`` (uniform prior by default)."""
    return F.label_smooth(label, prior_dist=prior_dist, epsilon=epsilon)


def uniform_random(shape, dtype="float32", min=-1.0, max=1.0, seed=0):
    """Uniform samples in ``[min, max)`` (Paddle 3's generator; draws differ from 1.8's)."""
    return paddle.uniform(list(shape), dtype=dtype, min=min, max=max, seed=seed)


def gaussian_random(shape, mean=0.0, std=1.0, seed=0, dtype="float32"):
    """Normal samples (Paddle 3's generator; draws differ from 1.8's)."""
    return paddle.tensor.random.gaussian(list(shape), mean=mean, std=std, seed=seed, dtype=dtype)


def where(condition):
    """1.8 ``where(condition)``: the int64 indices ``[K, rank]`` of the True elements (not a select)."""
    return paddle.nonzero(condition)


def sign(x):
    """-1, 0 or 1, element-wise."""
    return paddle.sign(x)


def roll(input, shifts, dims=None):
    """Roll elements along ``dims``."""
    return paddle.roll(input, shifts, axis=dims)


def flip(input, dims, name=None):
    """Reverse along ``dims``."""
    return paddle.flip(input, dims)


def index_select(input, index, dim=0):
    """Entries of ``input`` at ``index`` along ``dim``."""
    return paddle.index_select(input, index, axis=dim)


def logical_and(x, y, out=None, name=None):
    """Element-wise and."""
    return paddle.logical_and(x, y)


def logical_or(x, y, out=None, name=None):
    """Element-wise or."""
    return paddle.logical_or(x, y)


def logical_xor(x, y, out=None, name=None):
    """Element-wise xor."""
    return paddle.logical_xor(x, y)


def logical_not(x, out=None, name=None):
    """Element-wise not."""
    return paddle.logical_not(x)


__getattr__ = _support.module_getattr(__name__)
