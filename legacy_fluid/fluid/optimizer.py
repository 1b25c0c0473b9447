"""``paddle.fluid.optimizer`` of 1.8 in dygraph (FLUID_1_8.md section 5), on Paddle 3's optimizers.

1.8's contract, kept here:

* ``learning_rate`` is a float or a dygraph ``LearningRateDecay`` (an int is a ``TypeError``);
  ``parameter_list`` is required (None is an ``AttributeError``);
* ``minimize(loss)`` does not call ``backward``; it updates every trainable parameter of
  ``parameter_list`` that has a gradient, after gradient clipping and regularization
  (``grad + coeff * param`` for ``L2Decay``), with **one** learning-rate step: the decay is
  evaluated (and advanced) exactly once per ``minimize`` (section 0 #5);
* ``state_dict()`` holds the accumulators under their 1.8 names
  (``<param.name>_velocity_0``, ``<param.name>_moment1_0`` ...) and, with a decay,
  ``'LR_Scheduler': {'step_num': n}`` and ``'global_step'`` (int32 ``[1]``);
  ``set_dict`` needs them back;
* ``current_step_lr()`` is the rate the most recent ``minimize`` used (before any: the
  decay's first value).

The update formulas are Paddle 3's kernels, which reproduce 1.8's (Momentum, SGD, Adam
checked to the last printed digit, FLUID_1_8.md section 0).
"""

import numpy as np
import paddle
from paddle.base import core as _core

from legacy_fluid.fluid import _support
from legacy_fluid.fluid.dygraph.learning_rate_scheduler import LearningRateDecay, _LearningRateEpochDecay

__all__ = [
    "SGD", "Momentum", "Adagrad", "Adam", "Adamax", "Adadelta", "RMSProp",
    "SGDOptimizer", "MomentumOptimizer", "AdagradOptimizer", "AdamOptimizer", "AdamaxOptimizer",
    "AdadeltaOptimizer", "RMSPropOptimizer", "Optimizer",
]


class Optimizer(object):
    """1.8 base ``Optimizer(learning_rate, parameter_list=None, regularization=None, grad_clip=None, name=None)``."""

    _modern_class = None

    def __init__(self, learning_rate, parameter_list=None, regularization=None, grad_clip=None, name=None,
                 **modern_kwargs):
        if not isinstance(learning_rate, (float, LearningRateDecay)):
            raise TypeError("learning rate should be float or LearningRateDecay, got {} here".format(
                type(learning_rate)))
        if parameter_list is None:
            raise AttributeError("parameter_list argument given to the Optimizer should not be None in dygraph mode.")
        self._learning_rate = learning_rate
        self._parameter_list = list(parameter_list)
        self.regularization = regularization
        self._grad_clip = grad_clip
        self._name = name
        self._last_lr = None
        # the real rate is set before every update (set_lr); a decay must not be stepped here
        first = learning_rate if isinstance(learning_rate, float) else 0.0
        self._inner = self._modern_class(
            learning_rate=float(first), parameters=self._parameter_list, weight_decay=regularization,
            grad_clip=grad_clip, **modern_kwargs
        )

    def _lr_for_this_step(self):
        if isinstance(self._learning_rate, LearningRateDecay):
            return np.float32(self._learning_rate._next_value())
        return self._learning_rate

    def minimize(self, loss, startup_program=None, parameter_list=None, no_grad_set=None):
        """Apply one update with the current gradients (call ``loss.backward()`` first).

        Returns:
            ``(optimize_ops, params_grads)``: ``[]`` and the ``(param, grad)`` pairs updated.
        """
        if no_grad_set:
            raise _support.not_provided("Optimizer.minimize(no_grad_set=...)")
        params_grads = [(p, p.grad) for p in self._parameter_list
                        if not p.stop_gradient and p.grad is not None]
        lr = self._lr_for_this_step()
        # 1.8.5 holds the rate in a float32 variable whatever the parameters' dtype; Paddle 2.x/3.x
        # hold it in the parameters' dtype (float64 programs: 0.005 instead of 0.004999999888)
        self._inner.set_lr(float(np.float32(lr)))
        with paddle.no_grad():
            self._inner.step()
        self._last_lr = np.float32(lr)
        return [], params_grads

    def clear_gradients(self):
        """Clear the gradients of the trainable parameters in ``parameter_list``."""
        for param in self._parameter_list:
            if not param.stop_gradient:
                param.clear_gradient()

    def current_step_lr(self):
        """The learning rate of the most recent ``minimize`` (before the first: the first one)."""
        if self._last_lr is not None:
            return self._last_lr
        if isinstance(self._learning_rate, LearningRateDecay):
            return np.float32(self._learning_rate._peek_value())
        return self._learning_rate

    def state_dict(self):
        """The accumulators by their 1.8 names, plus the decay's state when a decay is used."""
        state = {}
        for key, value in self._inner.state_dict().items():
            if key in ("LR_Scheduler", "master_weights"):
                continue
            state[key] = value
        if isinstance(self._learning_rate, LearningRateDecay):
            state["LR_Scheduler"] = self._learning_rate.state_dict()
            if not isinstance(self._learning_rate, _LearningRateEpochDecay):
                state["global_step"] = _core.eager.Tensor(
                    value=np.array([self._learning_rate.step_num], dtype="int32"), place=paddle.CPUPlace(),
                    persistable=False, zero_copy=False, name="global_step", stop_gradient=True,
                )
        return state

    def set_dict(self, state_dict):
        """Load a :meth:`state_dict` (tensors or the numpy arrays of ``load_dygraph``)."""
        state = dict(state_dict)
        if isinstance(self._learning_rate, LearningRateDecay):
            self._learning_rate.set_dict(state.pop("LR_Scheduler"))
            if not isinstance(self._learning_rate, _LearningRateEpochDecay):
                if "global_step" not in state:
                    raise AssertionError("Global step not in state dict, Dygraph use LearningRateDecay, "
                                         "global_step must in state_dict")
                step = state.pop("global_step")
                step = step.numpy() if isinstance(step, paddle.Tensor) else np.asarray(step)
                if step.shape != (1,):
                    raise AssertionError("global step shape is (1,), the shape is {}".format(step.shape))
                self._learning_rate.step_num = int(step[0])
        else:
            state.pop("LR_Scheduler", None)
            state.pop("global_step", None)
        state.pop("StructuredToParameterName@@", None)
        tensors = {}
        for key, value in state.items():
            tensors[key] = value if isinstance(value, paddle.Tensor) else paddle.to_tensor(np.asarray(value))
        self._inner.set_state_dict(tensors)

    load_dict = set_dict

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise _support.not_provided("{}.{}".format(type(self).__name__, name))


class SGDOptimizer(Optimizer):
    """1.8 ``SGD(learning_rate, parameter_list=None, regularization=None, grad_clip=None, name=None)``: ``p -= lr * g``."""

    _modern_class = paddle.optimizer.SGD

    def __init__(self, learning_rate, parameter_list=None, regularization=None, grad_clip=None, name=None):
        super(SGDOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name)


class MomentumOptimizer(Optimizer):
    """1.8 ``Momentum(learning_rate, momentum, parameter_list=None, use_nesterov=False, ...)``.

    ``v = momentum * v + g; p -= lr * v`` (nesterov: ``p -= (g + momentum * v) * lr``).
    """

    _modern_class = paddle.optimizer.Momentum

    def __init__(self, learning_rate, momentum, parameter_list=None, use_nesterov=False, regularization=None,
                 grad_clip=None, name=None):
        super(MomentumOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name,
                                                momentum=momentum, use_nesterov=use_nesterov)
        self._momentum = momentum


class _Adam18(paddle.optimizer.Adam):
    """Paddle's Adam with 1.8's epsilon: ``p -= lr_t * m1 / (sqrt(m2) + eps)``.

    PaddlePaddle 1.8.5's kernel adds ``epsilon`` itself to ``sqrt(m2)``; Paddle 2.x and 3.x
    add ``epsilon * sqrt(1 - beta2^t)`` (measured on both: with gradients near ``1e-6`` a
    1.8 step is 10% shorter).  Passing ``epsilon / sqrt(1 - beta2^t)`` for each parameter
    (its own ``beta2^t``, which skips steps without a gradient as 1.8's does) gives 1.8's
    update with Paddle's kernel.
    """

    def _append_optimize_op(self, block, param_and_grad):
        beta2_pow = self._get_accumulator_master(self._beta2_pow_acc_str, param_and_grad[0])
        epsilon = self._epsilon
        self._epsilon = float(epsilon / np.sqrt(1.0 - float(np.asarray(beta2_pow.numpy()).reshape(-1)[0])))
        try:
            return super(_Adam18, self)._append_optimize_op(block, param_and_grad)
        finally:
            self._epsilon = epsilon


class AdamOptimizer(Optimizer):
    """1.8 ``Adam(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, parameter_list=None, ...)``.

    The update is 1.8's: ``epsilon`` is added to ``sqrt(moment2)`` unscaled (see ``_Adam18``).
    """

    _modern_class = _Adam18

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, parameter_list=None,
                 regularization=None, grad_clip=None, name=None, lazy_mode=False):
        super(AdamOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name,
                                            beta1=beta1, beta2=beta2, epsilon=epsilon, lazy_mode=lazy_mode)


class AdamaxOptimizer(Optimizer):
    """1.8 ``Adamax(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, parameter_list=None, ...)``."""

    _modern_class = paddle.optimizer.Adamax

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, parameter_list=None,
                 regularization=None, grad_clip=None, name=None):
        super(AdamaxOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name,
                                              beta1=beta1, beta2=beta2, epsilon=epsilon)


class AdagradOptimizer(Optimizer):
    """1.8 ``Adagrad(learning_rate, epsilon=1e-06, parameter_list=None, ..., initial_accumulator_value=0.0)``."""

    _modern_class = paddle.optimizer.Adagrad

    def __init__(self, learning_rate, epsilon=1e-06, parameter_list=None, regularization=None, grad_clip=None,
                 name=None, initial_accumulator_value=0.0):
        super(AdagradOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name,
                                               epsilon=epsilon, initial_accumulator_value=initial_accumulator_value)


class AdadeltaOptimizer(Optimizer):
    """1.8 ``Adadelta(learning_rate, epsilon=1e-06, rho=0.95, parameter_list=None, ...)``."""

    _modern_class = paddle.optimizer.Adadelta

    def __init__(self, learning_rate, epsilon=1e-06, rho=0.95, parameter_list=None, regularization=None,
                 grad_clip=None, name=None):
        super(AdadeltaOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name,
                                                epsilon=epsilon, rho=rho)


class RMSPropOptimizer(Optimizer):
    """1.8 ``RMSProp(learning_rate, rho=0.95, epsilon=1e-06, momentum=0.0, centered=False, parameter_list=None, ...)``."""

    _modern_class = paddle.optimizer.RMSProp

    def __init__(self, learning_rate, rho=0.95, epsilon=1e-06, momentum=0.0, centered=False, parameter_list=None,
                 regularization=None, grad_clip=None, name=None):
        super(RMSPropOptimizer, self).__init__(learning_rate, parameter_list, regularization, grad_clip, name,
                                               rho=rho, epsilon=epsilon, momentum=momentum, centered=centered)


SGD = SGDOptimizer
Momentum = MomentumOptimizer
Adam = AdamOptimizer
Adamax = AdamaxOptimizer
Adagrad = AdagradOptimizer
Adadelta = AdadeltaOptimizer
RMSProp = RMSPropOptimizer

__getattr__ = _support.module_getattr(__name__)
