# -*- coding: utf-8 -*-
"""The 2020 course's MNIST chapter, "optimizers": SGD, Momentum, Adagrad and Adam from the same start.

A fully connected MNIST network (784-64-10, sigmoid hidden layer), trained one epoch
per optimizer from the same numpy-seeded weights on the same batches, with the course's
bookkeeping: ``losses.append(float(avg_loss.numpy()))``, printed loss lists, and the
validation accuracy of each.  Uses the numpy names of 2020 (``np.int``, ``np.float``).
Reads ``./work/mnist.json.gz``.  Runs unchanged on PaddlePaddle 1.8.5 and under
``python -m legacy_fluid``.
"""

import gzip
import json
import random

import numpy as np
import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import Linear

BATCH_SIZE = 30


def load_data(mode="train"):
    data = json.load(gzip.open("./work/mnist.json.gz"))
    train_set, val_set, eval_set = data
    imgs, labels = train_set if mode == "train" else val_set
    index_list = list(range(len(imgs)))

    def data_generator():
        if mode == "train":
            random.shuffle(index_list)
        imgs_list = []
        labels_list = []
        for i in index_list:
            imgs_list.append(np.array(imgs[i], dtype=np.float).astype("float32"))
            labels_list.append(np.array([labels[i]], dtype=np.int))
            if len(imgs_list) == BATCH_SIZE:
                yield np.array(imgs_list), np.array(labels_list)
                imgs_list = []
                labels_list = []
        if len(imgs_list) > 0:
            yield np.array(imgs_list), np.array(labels_list)

    return data_generator


class MNIST(fluid.dygraph.Layer):
    def __init__(self):
        super(MNIST, self).__init__()
        self.fc1 = Linear(input_dim=784, output_dim=64, act="sigmoid")
        self.fc2 = Linear(input_dim=64, output_dim=10)

    def forward(self, inputs):
        return self.fc2(self.fc1(inputs))


def initial_weights(model):
    rs = np.random.RandomState(5)
    weights = {}
    for key, value in model.state_dict().items():
        shape = value.shape
        if key.endswith("bias"):
            weights[key] = np.zeros(shape, dtype="float32")
        else:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            weights[key] = rs.uniform(-limit, limit, shape).astype("float32")
    return weights


def make_optimizer(name, params):
    if name == "SGD":
        return fluid.optimizer.SGDOptimizer(learning_rate=0.1, parameter_list=params)
    if name == "Momentum":
        return fluid.optimizer.MomentumOptimizer(learning_rate=0.05, momentum=0.9, parameter_list=params)
    if name == "Adagrad":
        return fluid.optimizer.AdagradOptimizer(learning_rate=0.05, parameter_list=params)
    return fluid.optimizer.AdamOptimizer(learning_rate=0.005, parameter_list=params)


def run(name):
    random.seed(1)
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = MNIST()
        model.load_dict(initial_weights(model))
        optimizer = make_optimizer(name, model.parameters())
        losses = []
        for batch_id, (images, labels) in enumerate(load_data("train")()):
            image = fluid.dygraph.to_variable(images)
            label = fluid.dygraph.to_variable(labels)
            predict = model(image)
            loss = fluid.layers.softmax_with_cross_entropy(predict, label)
            avg_loss = fluid.layers.mean(loss)
            losses.append(float(avg_loss.numpy()))
            avg_loss.backward()
            optimizer.minimize(avg_loss)
            model.clear_gradients()
        print("{} losses: {}".format(name, ["%.4f" % v for v in losses]))
        print("{} last loss: {}, first/last: {}".format(name, losses[-1], [losses[0], losses[-1]]))
        model.eval()
        acc_set = []
        scores = []
        for images, labels in load_data("valid")():
            predict = fluid.layers.softmax(model(fluid.dygraph.to_variable(images)))
            acc = fluid.layers.accuracy(input=predict, label=fluid.dygraph.to_variable(labels))
            acc_set.append(float(acc.numpy()))
            scores.append(acc.numpy()[0])
        print("{} validation acc: {:.4f} per batch: {}".format(name, np.array(acc_set).mean(), scores))
        return losses[-1]


if __name__ == "__main__":
    results = {}
    for name in ["SGD", "Momentum", "Adagrad", "Adam"]:
        results[name] = run(name)
    best = min(results, key=results.get)
    print("lowest final loss: {} ({:.4f})".format(best, results[best]))
