# -*- coding: utf-8 -*-
"""How often the course's MNIST network with Adam collapses to chance: ``mnist_adam_runs.py FIRST_SEED RUNS [paddle-epsilon]``.

For each seed, the course's convolutional MNIST network (softmax output,
``cross_entropy`` on probabilities, Adam with learning rate 0.01) starts from weights drawn
with numpy from 1.8's default initializers (Conv2D ``Normal(0, sqrt(2 / fan_in))``,
Linear Xavier-uniform) and trains 4 epochs on ``./work/mnist.json.gz`` (``mnist_data.py``)
in a seeded order; it prints the final validation accuracy and whether the run
collapsed (every validation image given the same class).  The same seed gives the
same start and batches on PaddlePaddle 1.8.5 and under ``python -m legacy_fluid``, so
the runs are paired.  ``paddle-epsilon`` (legacy_fluid only) uses Paddle 3's own Adam,
whose epsilon is scaled by ``sqrt(1 - beta2^t)``, instead of 1.8's.
"""

import gzip
import json
import random
import sys

import numpy as np
import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import Conv2D, Linear, Pool2D


class MNIST(fluid.dygraph.Layer):
    def __init__(self):
        super(MNIST, self).__init__()
        self.conv1 = Conv2D(num_channels=1, num_filters=20, filter_size=5, stride=1, padding=2, act="relu")
        self.pool1 = Pool2D(pool_size=2, pool_stride=2, pool_type="max")
        self.conv2 = Conv2D(num_channels=20, num_filters=20, filter_size=5, stride=1, padding=2, act="relu")
        self.pool2 = Pool2D(pool_size=2, pool_stride=2, pool_type="max")
        self.fc = Linear(input_dim=980, output_dim=10, act="softmax")

    def forward(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc(fluid.layers.reshape(x, [x.shape[0], 980]))


def default_init(model, seed):
    rs = np.random.RandomState(seed)
    weights = {}
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        if key.endswith("bias"):
            weights[key] = np.zeros(shape, dtype="float32")
        elif len(shape) == 4:
            std = np.sqrt(2.0 / (shape[1] * shape[2] * shape[3]))
            weights[key] = rs.normal(0.0, std, shape).astype("float32")
        else:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            weights[key] = rs.uniform(-limit, limit, shape).astype("float32")
    return weights


def run(seed, data):
    (train_x, train_y), (val_x, val_y) = data
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = MNIST()
        model.load_dict(default_init(model, seed))
        opt = fluid.optimizer.AdamOptimizer(learning_rate=0.01, parameter_list=model.parameters())
        order = list(range(len(train_x)))
        rand = random.Random(seed)
        for epoch in range(4):
            rand.shuffle(order)
            for start in range(0, len(order), 50):
                ids = order[start:start + 50]
                img = fluid.dygraph.to_variable(train_x[ids])
                label = fluid.dygraph.to_variable(train_y[ids])
                avg_loss = fluid.layers.mean(fluid.layers.cross_entropy(model(img), label))
                avg_loss.backward()
                opt.minimize(avg_loss)
                model.clear_gradients()
        model.eval()
        prob = model(fluid.dygraph.to_variable(val_x)).numpy()
        pred = prob.argmax(axis=1)
        acc = float((pred == val_y[:, 0]).mean())
        collapsed = len(set(pred.tolist())) == 1
        print("seed %d final loss %.4f val acc %.2f collapsed %s" % (seed, float(avg_loss.numpy()), acc, collapsed))
        return collapsed


if __name__ == "__main__":
    first, runs = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3 and sys.argv[3] == "paddle-epsilon":
        import paddle

        fluid.optimizer.AdamOptimizer._modern_class = paddle.optimizer.Adam
    raw = json.load(gzip.open("./work/mnist.json.gz"))
    data = [(np.array(split[0], dtype="float32").reshape(-1, 1, 28, 28),
             np.array(split[1], dtype="int64").reshape(-1, 1)) for split in raw[:2]]
    count = sum(run(seed, data) for seed in range(first, first + runs))
    print("collapsed in %d of %d runs" % (count, runs))
