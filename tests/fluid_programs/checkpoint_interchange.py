# -*- coding: utf-8 -*-
"""Checkpoints of model and optimizer state, written by one fluid 1.8 and resumed by another.

Runs unchanged on a real PaddlePaddle 1.8.5 (Python 3.7) and on Paddle 3 under
``python -m legacy_fluid``::

    checkpoint_interchange.py write DIR    # train 2 steps per case, save_dygraph to DIR/<case>
    checkpoint_interchange.py resume DIR   # load_dygraph DIR/<case>, set_dict, 2 more steps, print

``resume`` prints one line per case and step (loss, learning rate, sum and L2 norm of the
parameters), so resuming a file written by either side on either side must print the
same numbers (float32 rounding aside).  The cases cover model state with BatchNorm
statistics and optimizer state with and without a learning-rate decay
(``LR_Scheduler`` and ``global_step`` entries): SGD, Momentum + PolynomialDecay,
Adam, Adam + PiecewiseDecay, Adagrad + ExponentialDecay, and SGD without state (no
``.pdopt``) and with NaturalExpDecay (only the decay's state).
"""

import os
import sys

import numpy as np
import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import BatchNorm, Conv2D, Linear, Pool2D

CASES = ["sgd", "sgd_natural_exp", "momentum_poly", "adam", "adam_piecewise", "adagrad_exp"]


class Net(fluid.dygraph.Layer):
    def __init__(self):
        super(Net, self).__init__()
        self.conv = Conv2D(1, 4, 3, padding=1, bias_attr=False)
        self.bn = BatchNorm(4, act="relu")
        self.pool = Pool2D(pool_size=2, pool_type="max", pool_stride=2)
        self.fc = Linear(4 * 4 * 4, 3)

    def forward(self, x):
        y = self.pool(self.bn(self.conv(x)))
        y = fluid.layers.reshape(y, [y.shape[0], -1])
        return self.fc(y)


def make_optimizer(case, params):
    if case == "sgd":
        return fluid.optimizer.SGD(learning_rate=0.1, parameter_list=params)
    if case == "sgd_natural_exp":
        lr = fluid.dygraph.NaturalExpDecay(0.1, 2, 0.5)
        return fluid.optimizer.SGD(learning_rate=lr, parameter_list=params)
    if case == "momentum_poly":
        lr = fluid.dygraph.PolynomialDecay(0.05, 6, 0.005)
        return fluid.optimizer.Momentum(learning_rate=lr, momentum=0.9, parameter_list=params,
                                        regularization=fluid.regularizer.L2Decay(1e-3))
    if case == "adam":
        return fluid.optimizer.Adam(learning_rate=0.01, parameter_list=params)
    if case == "adam_piecewise":
        lr = fluid.dygraph.PiecewiseDecay([1, 3], [0.02, 0.01, 0.005], 0)
        return fluid.optimizer.Adam(learning_rate=lr, parameter_list=params)
    if case == "adagrad_exp":
        lr = fluid.dygraph.ExponentialDecay(0.1, 2, 0.5)
        return fluid.optimizer.Adagrad(learning_rate=lr, parameter_list=params)
    raise ValueError(case)


def initial_weights(model):
    rs = np.random.RandomState(11)
    weights = {}
    for key, value in model.state_dict().items():
        shape = value.shape
        if key.endswith("_variance"):
            weights[key] = (1.0 + 0.5 * rs.uniform(0, 1, shape)).astype("float32")
        elif key.endswith("_mean") or key.endswith("bias"):
            weights[key] = (0.1 * rs.uniform(-1, 1, shape)).astype("float32")
        else:
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            weights[key] = (rs.uniform(-1.0, 1.0, shape) * np.sqrt(3.0 / fan_in)).astype("float32")
    return weights


def batch(step):
    rs = np.random.RandomState(100 + step)
    x = rs.uniform(-1, 1, (6, 1, 8, 8)).astype("float32")
    y = (np.arange(6) % 3).astype("int64").reshape(-1, 1)
    x[np.arange(6), 0, y[:, 0], y[:, 0]] += 2.0
    return x, y


def train_step(model, opt, step):
    x, y = batch(step)
    logits = model(fluid.dygraph.to_variable(x))
    loss = fluid.layers.softmax_with_cross_entropy(logits, fluid.dygraph.to_variable(y))
    avg_loss = fluid.layers.mean(loss)
    avg_loss.backward()
    opt.minimize(avg_loss)
    model.clear_gradients()
    total = 0.0
    norm = 0.0
    for value in model.state_dict().values():
        array = value.numpy().astype("float64")
        total += array.sum()
        norm += (array * array).sum()
    return float(avg_loss.numpy()), float(opt.current_step_lr()), total, np.sqrt(norm)


def write(folder):
    for case in CASES:
        with fluid.dygraph.guard(fluid.CPUPlace()):
            model = Net()
            model.load_dict(initial_weights(model))
            opt = make_optimizer(case, model.parameters())
            for step in range(2):
                train_step(model, opt, step)
            fluid.save_dygraph(model.state_dict(), os.path.join(folder, case))
            state = opt.state_dict()
            if state:  # plain SGD has no state (and save_dygraph refuses an empty dict)
                fluid.save_dygraph(state, os.path.join(folder, case))
    print("wrote", sorted(os.listdir(folder)))


def resume(folder):
    for case in CASES:
        with fluid.dygraph.guard(fluid.CPUPlace()):
            model = Net()
            params, opt_state = fluid.load_dygraph(os.path.join(folder, case))
            model.load_dict(params)
            opt = make_optimizer(case, model.parameters())
            if opt_state is not None:
                opt.set_dict(opt_state)
            for step in range(2, 4):
                loss, lr, total, norm = train_step(model, opt, step)
                print("%s step %d loss %.7g lr %.7g sum %.9g norm %.9g" % (case, step, loss, lr, total, norm))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "resume"):
        print("usage: checkpoint_interchange.py write|resume DIR")
        sys.exit(2)
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        resume(sys.argv[2])
