"""The dygraph learning-rate decays of 1.8 (FLUID_1_8.md section 6).

Each decay is **stepped once per** ``optimizer.minimize()`` (section 0 #5): the optimizer
calls it, the k-th call (0-based) returns ``f(begin + k * step)`` and then advances
``step_num`` by ``step``.  1.8 computed the value with float32 tensor ops (``scale``,
``pow``, ``exp``, ``cos`` ...); :class:`_F32` repeats those operations in float32 in
the same order, so the values match 1.8's to the bit (e.g. 0.0082000000402 rather than
0.0082).  ``StepDecay``, ``MultiStepDecay``, ``LambdaDecay`` and ``ReduceLROnPlateau``
are epoch-driven (``.epoch()`` / ``.step(loss)``), not stepped by ``minimize``.
"""

import math
import warnings

import numpy as np
import paddle

from legacy_fluid.fluid import _support

__all__ = [
    "NoamDecay", "PiecewiseDecay", "NaturalExpDecay", "ExponentialDecay", "InverseTimeDecay",
    "PolynomialDecay", "CosineDecay", "LinearLrWarmup", "ReduceLROnPlateau", "StepDecay",
    "MultiStepDecay", "LambdaDecay", "LearningRateDecay",
]

_f32 = np.float32


class _F32(object):
    """The float32 ops 1.8's dygraph tensors used for scalar arithmetic."""

    @staticmethod
    def var(value):
        """``create_lr_var``: a Python number stored as float32."""
        return _f32(value)

    @staticmethod
    def scale(x, scale, bias=0.0):
        """The ``scale`` op: ``x * float32(scale) + float32(bias)`` in float32."""
        return _f32(_f32(x) * _f32(scale) + _f32(bias))

    @staticmethod
    def div(x, y):
        return _f32(_f32(x) / _f32(y))

    @staticmethod
    def pow(x, y):
        """``elementwise_pow`` of two float32 scalars (Paddle's kernel, as 1.8's)."""
        return _F32._op(paddle.pow, x, y)

    @staticmethod
    def exp(x):
        """The ``exp`` op on a float32 scalar (Paddle's kernel, as 1.8's; numpy's differs in the last bit)."""
        return _F32._op(paddle.exp, x)

    @staticmethod
    def cos(x):
        """The ``cos`` op on a float32 scalar (numpy's float32 cos rounds as 1.8's kernel did)."""
        return _f32(np.cos(_f32(x)))

    @staticmethod
    def _op(fn, *args):
        tensors = [paddle.to_tensor(np.array([v], dtype="float32")) for v in args]
        with paddle.no_grad():
            return _f32(fn(*tensors).numpy().reshape(-1)[0])


class LearningRateDecay(object):
    """Base of the decays stepped by ``minimize``: ``LearningRateDecay(begin=0, step=1, dtype='float32')``."""

    def __init__(self, begin=0, step=1, dtype="float32"):
        self.step_num = begin
        self.step_size = step
        self.dtype = dtype

    def __call__(self):
        """The learning rate for the current step as a ``[1]`` tensor; then advance ``step_num``."""
        return self.create_lr_var(self._next_value())

    def _next_value(self):
        value = self.step()
        if isinstance(value, LearningRateDecay):
            value = value._next_value()
        self.step_num += self.step_size
        return _f32(value)

    def _peek_value(self):
        """``step()`` at the current ``step_num`` without advancing ``step_num`` (``current_step_lr`` before any
        minimize).  As in 1.8 this calls ``step()``, so a ``LinearLrWarmup`` over another decay advances that one."""
        return _f32(self.step())

    def create_lr_var(self, lr):
        """A ``[1]`` tensor of ``self.dtype`` holding ``lr``."""
        return paddle.to_tensor(np.array([lr], dtype=self.dtype))

    def state_dict(self):
        """``{'step_num': n}`` (more keys for the epoch-driven schedulers)."""
        self._state_keys()
        state = {}
        for key in self.keys:
            if key not in self.__dict__:
                continue
            value = self.__dict__[key]
            if isinstance(value, paddle.Tensor):
                value = value.numpy().reshape(-1)[0]
            state[key] = value
        return state

    def _state_keys(self):
        self.keys = ["step_num"]

    def set_dict(self, state_dict):
        """Load a :meth:`state_dict`; a missing key is a ``RuntimeError``."""
        self._state_keys()
        for key in self.keys:
            if key in state_dict:
                self.__dict__[key] = state_dict[key]
            else:
                raise RuntimeError("Please check whether state_dict is correct for optimizer. "
                                   "Can't find [ {} ] in state_dict".format(key))
        if len(state_dict) > len(self.keys):
            warnings.warn("There are some unused values in state_dict. Maybe the optimizer have different "
                          "'LearningRateDecay' when invoking state_dict and set_dict")

    def step(self):
        """The learning rate at ``self.step_num`` (subclasses)."""
        raise NotImplementedError()


class PiecewiseDecay(LearningRateDecay):
    """``PiecewiseDecay(boundaries, values, begin, step=1, dtype='float32')`` (``begin`` is required)."""

    def __init__(self, boundaries, values, begin, step=1, dtype="float32"):
        super(PiecewiseDecay, self).__init__(begin, step, dtype)
        self.boundaries = boundaries
        self.values = values
        self.vars = list(values)

    def step(self):
        for i in range(len(self.boundaries)):
            if self.step_num < self.boundaries[i]:
                return _F32.var(self.vars[i])
        return _F32.var(self.vars[len(self.values) - 1])


class NaturalExpDecay(LearningRateDecay):
    """``lr * exp(-rate * n / decay_steps)`` (floor of ``n / decay_steps`` with ``staircase``)."""

    def __init__(self, learning_rate, decay_steps, decay_rate, staircase=False, begin=0, step=1, dtype="float32"):
        super(NaturalExpDecay, self).__init__(begin, step, dtype)
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase

    def step(self):
        div_res = _F32.var(self.step_num / self.decay_steps)
        if self.staircase:
            div_res = np.floor(div_res)
        exponent = _F32.scale(div_res, -1 * self.decay_rate)
        return _F32.scale(_F32.exp(exponent), self.learning_rate)


class ExponentialDecay(LearningRateDecay):
    """``lr * rate ** (n / decay_steps)`` (floor of ``n / decay_steps`` with ``staircase``)."""

    def __init__(self, learning_rate, decay_steps, decay_rate, staircase=False, begin=0, step=1, dtype="float32"):
        super(ExponentialDecay, self).__init__(begin, step, dtype)
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase

    def step(self):
        div_res = _F32.var(self.step_num / self.decay_steps)
        if self.staircase:
            div_res = np.floor(div_res)
        return _F32.scale(_F32.pow(self.decay_rate, div_res), self.learning_rate)


class InverseTimeDecay(LearningRateDecay):
    """``lr / (1 + rate * n / decay_steps)`` (floor of ``n / decay_steps`` with ``staircase``)."""

    def __init__(self, learning_rate, decay_steps, decay_rate, staircase=False, begin=0, step=1, dtype="float32"):
        super(InverseTimeDecay, self).__init__(begin, step, dtype)
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase

    def step(self):
        div_res = _F32.var(self.step_num / self.decay_steps)
        if self.staircase:
            div_res = np.floor(div_res)
        denominator = _F32.scale(_F32.scale(div_res, self.decay_rate), 1.0, 1.0)
        return _F32.div(self.learning_rate, denominator)


class PolynomialDecay(LearningRateDecay):
    """``PolynomialDecay(learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False, begin=0, step=1, dtype='float32')``.

    Without ``cycle``: ``(lr - end) * (1 - min(n, decay_steps) / decay_steps) ** power + end``.
    With ``cycle`` the horizon is ``decay_steps * ceil(n / decay_steps)`` (``decay_steps`` at n=0).
    """

    def __init__(self, learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False, begin=0,
                 step=1, dtype="float32"):
        super(PolynomialDecay, self).__init__(begin, step, dtype)
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle

    def step(self):
        n = self.step_num
        if self.cycle:
            div_res = np.ceil(_F32.var(n / float(self.decay_steps)))
            if n == 0:
                div_res = _F32.var(1.0)
            horizon = _F32.scale(div_res, self.decay_steps)
            fraction = _F32.div(n, horizon)
        else:
            clipped = _F32.var(n if n < self.decay_steps else self.decay_steps)
            fraction = _F32.scale(clipped, 1.0 / self.decay_steps)
        remaining = _F32.scale(fraction, -1.0, 1.0)
        decayed = _F32.scale(_F32.pow(remaining, self.power), self.learning_rate - self.end_learning_rate)
        return _F32.scale(decayed, 1.0, self.end_learning_rate)


class CosineDecay(LearningRateDecay):
    """``lr * 0.5 * (cos(floor(n / step_each_epoch) * pi / epochs) + 1)``."""

    def __init__(self, learning_rate, step_each_epoch, epochs, begin=0, step=1, dtype="float32"):
        super(CosineDecay, self).__init__(begin, step, dtype)
        self.learning_rate = learning_rate
        self.step_each_epoch = step_each_epoch
        self.epochs = epochs

    def step(self):
        cur_epoch = np.floor(_F32.var(self.step_num / self.step_each_epoch))
        angle = _F32.scale(_F32.scale(cur_epoch, math.pi), 1.0 / self.epochs)
        shifted = _F32.scale(_F32.cos(angle), 1.0, 1.0)
        return _F32.scale(shifted, self.learning_rate * 0.5)


class NoamDecay(LearningRateDecay):
    """``lr * d_model ** -0.5 * min(n ** -0.5, warmup_steps ** -1.5 * n)``; ``begin`` defaults to 1."""

    def __init__(self, d_model, warmup_steps, begin=1, step=1, dtype="float32", learning_rate=1.0):
        super(NoamDecay, self).__init__(begin, step, dtype)
        self.learning_rate = learning_rate
        self.d_model = d_model
        self.warmup_steps = warmup_steps

    def step(self):
        a = _F32.var(self.step_num ** -0.5)
        b = _F32.var((self.warmup_steps ** -1.5) * self.step_num)
        return _F32.scale(min(a, b), self.learning_rate * (self.d_model ** -0.5))


class LinearLrWarmup(LearningRateDecay):
    """``LinearLrWarmup(learning_rate, warmup_steps, start_lr, end_lr, begin=1, step=1, dtype='float32')``.

    As 1.8.5 computes it: ``(end_lr - start_lr) / warmup_steps * n`` while
    ``n < warmup_steps`` (``start_lr`` is not added), then ``learning_rate`` (a number
    or another decay, which is stepped at every call, also during the warm-up).
    """

    def __init__(self, learning_rate, warmup_steps, start_lr, end_lr, begin=1, step=1, dtype="float32"):
        super(LinearLrWarmup, self).__init__(begin, step, dtype)
        if not isinstance(learning_rate, (float, int, LearningRateDecay)):
            raise TypeError("the type of learning_rate should be [int, float or LearningRateDecay], "
                            "the current type is {}".format(learning_rate))
        if not end_lr > start_lr:
            raise AssertionError("end_lr {} must be greater than start_lr {}".format(end_lr, start_lr))
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.lr_ratio_before_warmup = (float(end_lr) - float(start_lr)) / float(warmup_steps)

    def step(self):
        base_lr = self.learning_rate
        if isinstance(base_lr, LearningRateDecay):
            base_lr = base_lr._next_value()
        if self.step_num < self.warmup_steps:
            return _F32.var(self.lr_ratio_before_warmup * self.step_num)
        return _F32.var(base_lr)


class ReduceLROnPlateau(LearningRateDecay):
    """``ReduceLROnPlateau(learning_rate, mode='min', decay_rate=0.1, patience=10, ...)``: call ``step(loss)`` per epoch.

    Not stepped by ``minimize``; ``loss`` must be a ``[1]`` tensor (``fluid.layers.mean``).
    """

    def __init__(self, learning_rate, mode="min", decay_rate=0.1, patience=10, verbose=False, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8, dtype="float32"):
        super(ReduceLROnPlateau, self).__init__(dtype=dtype)
        mode = mode.lower()
        if mode not in ("min", "max"):
            raise ValueError("mode " + mode + " is unknown!")
        if decay_rate >= 1.0:
            raise ValueError("new_lr = origin_lr * decay_rate and decay_rate should be < 1.0.")
        threshold_mode = threshold_mode.lower()
        if threshold_mode not in ("rel", "abs"):
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        if not isinstance(learning_rate, (float, int)):
            raise TypeError("The type of 'learning_rate' in 'ReduceLROnPlateau' must be 'float, int', "
                            "but received {}.".format(type(learning_rate)))
        self.mode = mode
        self.decay_rate = _F32.var(decay_rate)
        self.threshold_mode = threshold_mode
        self.learning_rate = _F32.var(learning_rate)
        self.verbose = verbose
        self.patience = patience
        self.threshold = threshold
        self.cooldown = cooldown
        self.min_lr = _F32.var(min_lr)
        self.eps = eps
        self.cooldown_counter = 0
        self.best_loss = None
        self.num_bad_epochs = 0
        self.epoch_num = 0

    def _state_keys(self):
        self.keys = ["cooldown_counter", "best_loss", "num_bad_epochs", "epoch_num", "learning_rate"]

    def _next_value(self):
        return _f32(self.learning_rate)

    def _peek_value(self):
        return _f32(self.learning_rate)

    def step(self, loss):
        """Record the epoch's ``loss`` and reduce the rate after ``patience`` bad epochs."""
        shape = list(loss.shape)
        if shape != [1]:
            raise AssertionError("the loss.shape should be (1L,), but the current loss.shape is {}. Maybe that you "
                                 "should call fluid.layers.mean to process it first.".format(shape))
        current = _f32(loss.numpy().reshape(-1)[0])
        self.epoch_num += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            return
        if self.best_loss is None or self._is_better(current, self.best_loss):
            self.best_loss = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            new_lr = max(_f32(self.learning_rate * self.decay_rate), self.min_lr)
            if self.learning_rate - new_lr > self.eps:
                if self.verbose:
                    print("Epoch {}: reducing learning rate from {} to {}.".format(
                        self.epoch_num, self.learning_rate, new_lr))
                self.learning_rate = _f32(new_lr)

    def _is_better(self, current, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return current < best - best * self.threshold
        if self.mode == "min" and self.threshold_mode == "abs":
            return current < best - self.threshold
        if self.mode == "max" and self.threshold_mode == "rel":
            return current > best + best * self.threshold
        return current > best + self.threshold


class _LearningRateEpochDecay(LearningRateDecay):
    """Base of the epoch-driven decays: the rate changes only on ``epoch()``."""

    def __init__(self, learning_rate, dtype=None):
        if not isinstance(learning_rate, (float, int)):
            raise TypeError("The type of 'learning_rate' must be 'float, int', but received {}.".format(
                type(learning_rate)))
        if learning_rate < 0:
            raise ValueError("Invalid learning rate: {}".format(learning_rate))
        self.base_lr = float(learning_rate)
        self.epoch_num = -1
        self.dtype = dtype or "float32"
        self.learning_rate = _F32.var(self.base_lr)
        self.epoch()

    def _state_keys(self):
        self.keys = ["epoch_num", "learning_rate"]

    def _next_value(self):
        return _f32(self.learning_rate)

    def _peek_value(self):
        return _f32(self.learning_rate)

    def epoch(self, epoch=None):
        """Advance to the next epoch (or to ``epoch``) and recompute the rate."""
        if epoch is None:
            self.epoch_num += 1
        else:
            self.epoch_num = epoch
        self.learning_rate = self.get_lr()

    def get_lr(self):
        raise NotImplementedError


class StepDecay(_LearningRateEpochDecay):
    """``base_lr * decay_rate ** (epoch // step_size)``."""

    def __init__(self, learning_rate, step_size, decay_rate=0.1):
        if not isinstance(step_size, int):
            raise TypeError("The type of 'step_size' must be 'int', but received {}.".format(type(step_size)))
        if decay_rate >= 1.0:
            raise ValueError("decay_rate should be < 1.0.")
        self.step_size = step_size
        self.decay_rate = decay_rate
        super(StepDecay, self).__init__(learning_rate)

    def get_lr(self):
        i = self.epoch_num // self.step_size
        return _F32.scale(_F32.pow(self.decay_rate, i), self.base_lr)


class MultiStepDecay(_LearningRateEpochDecay):
    """``base_lr * decay_rate ** (number of milestones passed)``."""

    def __init__(self, learning_rate, milestones, decay_rate=0.1):
        if not isinstance(milestones, (tuple, list)):
            raise TypeError("The type of 'milestones' in 'MultiStepDecay' must be 'tuple, list', but received "
                            "{}.".format(type(milestones)))
        if not all(milestones[i] < milestones[i + 1] for i in range(len(milestones) - 1)):
            raise ValueError("The elements of milestones must be incremented")
        if decay_rate >= 1.0:
            raise ValueError("decay_rate should be < 1.0.")
        self.milestones = milestones
        self.decay_rate = decay_rate
        super(MultiStepDecay, self).__init__(learning_rate)

    def get_lr(self):
        for i in range(len(self.milestones)):
            if self.epoch_num < self.milestones[i]:
                return _F32.scale(_F32.pow(self.decay_rate, i), self.base_lr)
        return _F32.scale(_F32.pow(self.decay_rate, len(self.milestones)), self.base_lr)


class LambdaDecay(_LearningRateEpochDecay):
    """``base_lr * lr_lambda(epoch)``."""

    def __init__(self, learning_rate, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError("The type of 'lr_lambda' in 'LambdaDecay' must be 'function', but received {}.".format(
                type(lr_lambda)))
        self.lr_lambda = lr_lambda
        super(LambdaDecay, self).__init__(learning_rate)

    def get_lr(self):
        return _F32.var(self.base_lr * self.lr_lambda(self.epoch_num))


__getattr__ = _support.module_getattr(__name__)
