"""``paddle.fluid.dygraph.nn`` of 1.8: the layers with their old arguments and defaults (FLUID_1_8.md section 2).

Numbers-changing 1.8 rules kept here (section 0):

* ``Pool2D`` strides by **1** unless ``pool_stride`` is given (#1);
* ``Dropout`` defaults to ``downgrade_in_infer``: train ``x * mask``, infer ``x * (1 - p)`` (#2);
* ``Linear`` stores its weight as ``[input_dim, output_dim]``, Xavier-uniform by default;
* ``Conv2D``'s default weight init is ``Normal(0, sqrt(2 / (kh * kw * num_channels)))``;
* ``BatchNorm``: momentum 0.9, epsilon 1e-5, biased batch variance, parameters created in the
  order ``weight, bias, _mean, _variance``; ``is_test`` of the constructor is ignored in
  dygraph (the layer's ``training`` flag decides);
* ``act=`` takes any provided activation name; ``leaky_relu`` uses alpha 0.02 (#12).
"""

import paddle
import paddle.nn.functional as F

from legacy_fluid.fluid import _support, framework
from legacy_fluid.fluid.dygraph.layers import Layer
from legacy_fluid.fluid.initializer import Constant, Normal
from legacy_fluid.fluid.param_attr import ParamAttr

__all__ = ["Conv2D", "Pool2D", "Linear", "BatchNorm", "Dropout", "Embedding", "LayerNorm", "PRelu"]


def _pair(value, name):
    """1.8's ``utils.convert_to_list(value, 2, name)``."""
    if isinstance(value, int):
        return [value, value]
    try:
        values = list(value)
    except TypeError:
        raise ValueError("The {}'s type must be list or tuple. Received: {!r}".format(name, value)) from None
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise ValueError("The {} must be an int or a list/tuple of 2 ints. Received: {!r}".format(name, value))
    return values


class Conv2D(Layer):
    """1.8 ``Conv2D(num_channels, num_filters, filter_size, stride=1, padding=0, dilation=1, groups=None, param_attr=None, bias_attr=None, use_cudnn=True, act=None, dtype='float32')``.

    Parameters: ``weight`` ``[num_filters, num_channels // groups, kh, kw]`` (default
    ``Normal(0, sqrt(2 / (kh * kw * num_channels)))``, full ``num_channels`` even when
    grouped) and ``bias`` ``[num_filters]`` (0; ``bias_attr=False``: none).
    """

    def __init__(self, num_channels, num_filters, filter_size, stride=1, padding=0, dilation=1, groups=None,
                 param_attr=None, bias_attr=None, use_cudnn=True, act=None, dtype="float32"):
        _support.refuse_name_scope("Conv2D", num_channels)
        super(Conv2D, self).__init__()
        if param_attr is False:
            raise AssertionError("param_attr should not be False here.")
        self._num_channels = num_channels
        self._groups = 1 if groups is None else groups
        if num_channels % self._groups != 0:
            raise ValueError("num_channels must be divisible by groups.")
        self._filter_size = _pair(filter_size, "filter_size")
        self._stride = _pair(stride, "stride")
        self._padding = _pair(padding, "padding")
        self._dilation = _pair(dilation, "dilation")
        self._act = act
        self._dtype = dtype
        shape = [num_filters, num_channels // self._groups] + self._filter_size
        std = (2.0 / (self._filter_size[0] * self._filter_size[1] * num_channels)) ** 0.5
        self.weight = self.create_parameter(attr=param_attr, shape=shape, dtype=dtype,
                                            default_initializer=Normal(0.0, std, 0))
        self.bias = self.create_parameter(attr=bias_attr, shape=[num_filters], dtype=dtype, is_bias=True)

    def forward(self, input):
        out = F.conv2d(input, self.weight, self.bias, stride=self._stride, padding=self._padding,
                       dilation=self._dilation, groups=self._groups)
        return _support.apply_act(out, self._act)


class Pool2D(Layer):
    """1.8 ``Pool2D(pool_size=-1, pool_type='max', pool_stride=1, pool_padding=0, global_pooling=False, use_cudnn=True, ceil_mode=False, exclusive=True)``.

    The stride defaults to **1** (modern pools default to the kernel size).  Average
    pooling with ``exclusive=True`` divides by the number of non-padded cells; max pooling
    ignores padded cells; ``global_pooling`` gives ``[N, C, 1, 1]``.
    """

    def __init__(self, pool_size=-1, pool_type="max", pool_stride=1, pool_padding=0, global_pooling=False,
                 use_cudnn=True, ceil_mode=False, exclusive=True):
        super(Pool2D, self).__init__()
        if pool_type not in ("max", "avg"):
            raise ValueError("Unknown pool_type: '{}'. It can only be 'max' or 'avg'.".format(pool_type))
        if global_pooling is False and pool_size == -1:
            raise ValueError("When the global_pooling is False, pool_size must be passed and be a valid value. "
                             "Received pool_size: {}".format(pool_size))
        if not isinstance(use_cudnn, bool):
            raise ValueError("use_cudnn should be True or False")
        self._pool_type = pool_type
        self._pool_size = _pair(pool_size, "pool_size")
        self._pool_stride = _pair(pool_stride, "pool_stride")
        self._pool_padding = _pair(pool_padding, "pool_padding")
        self._global_pooling = global_pooling
        self._ceil_mode = ceil_mode
        self._exclusive = exclusive

    def forward(self, input):
        return _pool2d(input, self._pool_size, self._pool_type, self._pool_stride, self._pool_padding,
                       self._global_pooling, self._ceil_mode, self._exclusive)


def _pool2d(x, size, pool_type, stride, padding, global_pooling, ceil_mode, exclusive):
    if global_pooling:
        if pool_type == "max":
            return F.adaptive_max_pool2d(x, 1)
        return F.adaptive_avg_pool2d(x, 1)
    if pool_type == "max":
        return F.max_pool2d(x, size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    return F.avg_pool2d(x, size, stride=stride, padding=padding, ceil_mode=ceil_mode, exclusive=exclusive)


class Linear(Layer):
    """1.8 ``Linear(input_dim, output_dim, param_attr=None, bias_attr=None, act=None, dtype='float32')``.

    ``weight`` is ``[input_dim, output_dim]`` (Xavier uniform by default), ``bias``
    ``[output_dim]`` (0).  The product is taken over the last axis of any-rank input.
    """

    def __init__(self, input_dim, output_dim, param_attr=None, bias_attr=None, act=None, dtype="float32"):
        _support.refuse_name_scope("Linear", input_dim)
        super(Linear, self).__init__()
        self._act = act
        self._dtype = dtype
        self.weight = self.create_parameter(shape=[input_dim, output_dim], attr=param_attr, dtype=dtype,
                                            is_bias=False)
        self.bias = self.create_parameter(shape=[output_dim], attr=bias_attr, dtype=dtype, is_bias=True)

    def forward(self, input):
        out = paddle.matmul(input, self.weight)
        if self.bias is not None:
            out = out + self.bias
        return _support.apply_act(out, self._act)


class BatchNorm(Layer):
    """1.8 ``BatchNorm(num_channels, act=None, is_test=False, momentum=0.9, epsilon=1e-05, ...)``.

    Parameters in this order: ``weight`` (1), ``bias`` (0), ``_mean`` (0, not trainable),
    ``_variance`` (1, not trainable).  Training normalises with the batch mean and the
    biased batch variance and updates ``running = momentum * running + (1 - momentum) * batch``.
    """

    def __init__(self, num_channels, act=None, is_test=False, momentum=0.9, epsilon=1e-05, param_attr=None,
                 bias_attr=None, dtype="float32", data_layout="NCHW", in_place=False, moving_mean_name=None,
                 moving_variance_name=None, do_model_average_for_mean_and_var=True, use_global_stats=False,
                 trainable_statistics=False):
        super(BatchNorm, self).__init__()
        if bias_attr is False:
            raise AssertionError("bias_attr should not be False in batch_norm.")
        if data_layout not in ("NCHW", "NHWC"):
            raise _support.not_provided("BatchNorm(data_layout={!r})".format(data_layout))
        if trainable_statistics:
            raise _support.not_provided("BatchNorm(trainable_statistics=True)")
        self._act = act
        self._momentum = momentum
        self._epsilon = epsilon
        self._data_layout = data_layout
        self._use_global_stats = use_global_stats
        param_dtype = "float32" if dtype == "float16" else dtype
        shape = [num_channels]
        self.weight = self.create_parameter(attr=param_attr, shape=shape, dtype=param_dtype,
                                            default_initializer=Constant(1.0))
        if use_global_stats and isinstance(param_attr, paddle.ParamAttr) and param_attr.learning_rate == 0.0:
            self.weight.stop_gradient = True
        self.bias = self.create_parameter(attr=bias_attr, shape=shape, dtype=param_dtype, is_bias=True)
        self._mean = self.create_parameter(
            attr=ParamAttr(name=moving_mean_name, initializer=Constant(0.0), trainable=False,
                           do_model_average=do_model_average_for_mean_and_var),
            shape=shape, dtype=param_dtype)
        self._mean.stop_gradient = True
        self._variance = self.create_parameter(
            attr=ParamAttr(name=moving_variance_name, initializer=Constant(1.0), trainable=False,
                           do_model_average=do_model_average_for_mean_and_var),
            shape=shape, dtype=param_dtype)
        self._variance.stop_gradient = True

    def forward(self, input):
        out = F.batch_norm(input, self._mean, self._variance, weight=self.weight, bias=self.bias,
                           training=self.training, momentum=self._momentum, epsilon=self._epsilon,
                           data_format=self._data_layout, use_global_stats=True if self._use_global_stats else None)
        return _support.apply_act(out, self._act)


def _dropout(x, p, is_test, seed, implementation):
    if implementation not in ("downgrade_in_infer", "upscale_in_train"):
        raise ValueError("dropout_implementation must be 'downgrade_in_infer' or 'upscale_in_train', "
                         "got {!r}".format(implementation))
    if not 0.0 <= p <= 1.0:
        raise ValueError("dropout probability must be in [0, 1], got {}".format(p))
    prog_seed = framework.default_main_program().random_seed
    if (seed is None or seed == 0) and prog_seed != 0:
        seed = prog_seed
    result = paddle._C_ops.dropout(x, None, float(p), bool(is_test), implementation,
                                   seed if seed is not None else 0, seed is not None)
    return result[0] if isinstance(result, (tuple, list)) else result


class Dropout(Layer):
    """1.8 ``Dropout(p=0.5, seed=None, dropout_implementation='downgrade_in_infer', is_test=False)``.

    ``downgrade_in_infer``: train ``x * mask`` (no rescale), eval ``x * (1 - p)``.  The
    layer's ``training`` flag decides (the ``is_test`` argument is ignored in dygraph).
    """

    def __init__(self, p=0.5, seed=None, dropout_implementation="downgrade_in_infer", is_test=False):
        super(Dropout, self).__init__()
        if not isinstance(p, (float, int)) or not 0.0 <= p <= 1.0:
            raise ValueError("p argument should between 0 and 1, got {!r}".format(p))
        if dropout_implementation not in ("downgrade_in_infer", "upscale_in_train"):
            raise ValueError("dropout_implementation must be 'downgrade_in_infer' or 'upscale_in_train', "
                             "got {!r}".format(dropout_implementation))
        self._p = float(p)
        self._seed = seed
        self._implementation = dropout_implementation

    def forward(self, input):
        return _dropout(input, self._p, not self.training, self._seed, self._implementation)


class Embedding(Layer):
    """1.8 ``Embedding(size, is_sparse=False, is_distributed=False, padding_idx=None, param_attr=None, dtype='float32')``.

    ``weight`` is ``size`` = ``[vocab, dim]`` (Xavier uniform); the output shape is
    ``ids.shape + [dim]`` (ids ``[N, 1]`` give ``[N, 1, dim]``); ids equal to
    ``padding_idx`` (negative: counted from the end) give zeros, the weight row itself is
    not zeroed.
    """

    def __init__(self, size, is_sparse=False, is_distributed=False, padding_idx=None, param_attr=None,
                 dtype="float32"):
        super(Embedding, self).__init__()
        if is_distributed:
            raise _support.not_provided("Embedding(is_distributed=True)")
        self._size = list(size)
        self._is_sparse = is_sparse
        if padding_idx is None:
            self._padding_idx = None
        else:
            self._padding_idx = padding_idx if padding_idx >= 0 else size[0] + padding_idx
        self.weight = self.create_parameter(attr=param_attr, shape=self._size, dtype=dtype, is_bias=False)

    def forward(self, input):
        return F.embedding(input, self.weight, padding_idx=self._padding_idx, sparse=self._is_sparse)


class LayerNorm(Layer):
    """1.8 ``LayerNorm(normalized_shape, scale=True, shift=True, epsilon=1e-05, param_attr=None, bias_attr=None, act=None, dtype='float32')``."""

    def __init__(self, normalized_shape, scale=True, shift=True, epsilon=1e-05, param_attr=None, bias_attr=None,
                 act=None, dtype="float32"):
        super(LayerNorm, self).__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = [normalized_shape]
        self._shape = list(normalized_shape)
        self._epsilon = epsilon
        self._act = act
        numel = 1
        for dim in self._shape:
            numel *= dim
        self.weight = None
        self.bias = None
        if scale:
            self.weight = self.create_parameter(attr=param_attr, shape=[numel], dtype=dtype,
                                                default_initializer=Constant(1.0))
        if shift:
            if bias_attr is False:
                raise AssertionError("bias_attr should not be False when shift is True")
            self.bias = self.create_parameter(attr=bias_attr, shape=[numel], dtype=dtype, is_bias=True)

    def forward(self, input):
        out = F.layer_norm(input, self._shape, weight=self.weight, bias=self.bias, epsilon=self._epsilon)
        return _support.apply_act(out, self._act)


class PRelu(Layer):
    """1.8 ``PRelu(mode, channel=None, input_shape=None, param_attr=None, dtype='float32')``; alpha starts at 0.25."""

    def __init__(self, mode, channel=None, input_shape=None, param_attr=None, dtype="float32"):
        super(PRelu, self).__init__()
        self._mode = mode
        if mode == "all":
            shape = [1]
        elif mode == "channel":
            if channel is None:
                raise AssertionError("channel argument is required when mode is 'channel'.")
            shape = [1, channel, 1, 1]
        elif mode == "element":
            if input_shape is None:
                raise AssertionError("input_shape argument is required when mode is 'element'.")
            shape = [1] + list(input_shape[1:])
        else:
            raise ValueError("mode should be one of all, channel, element.")
        self.weight = self.create_parameter(attr=param_attr, shape=shape, dtype=dtype, is_bias=False,
                                            default_initializer=Constant(0.25))

    def forward(self, input):
        if self._mode == "all":
            alpha = self.weight.reshape([1] * len(input.shape))
        elif self._mode == "channel":
            alpha = self.weight.reshape([1, -1] + [1] * (len(input.shape) - 2))
        else:
            alpha = self.weight.reshape([1] + list(input.shape[1:]))
        return paddle.where(input > 0, input, input * alpha)


__getattr__ = _support.module_getattr(__name__)
