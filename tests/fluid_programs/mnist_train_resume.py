# -*- coding: utf-8 -*-
"""The 2020 course's MNIST chapter, "resume training": train, checkpoint every epoch, resume.

A convolutional MNIST model (two Conv2D + Pool2D, a softmax Linear), Momentum with a
PolynomialDecay, ``float(avg_loss.numpy())`` bookkeeping, accuracy with
``fluid.layers.accuracy``, ``save_dygraph`` of model and optimizer after every epoch,
then a new model and optimizer restored from the epoch-1 checkpoint train epoch 2 again
and must print what the uninterrupted run printed.  Reads ``./work/mnist.json.gz``
(``mnist_data.py`` writes it).  Runs unchanged on PaddlePaddle 1.8.5 and under
``python -m legacy_fluid``; weights start from a numpy-seeded state dict.
"""

import gzip
import json
import random

import numpy as np
import paddle
import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import Conv2D, Linear, Pool2D

BATCH_SIZE = 50
EPOCH_NUM = 3


def load_data(mode="train"):
    datafile = "./work/mnist.json.gz"
    print("loading mnist dataset from {} ......".format(datafile))
    data = json.load(gzip.open(datafile))
    train_set, val_set, eval_set = data
    IMG_ROWS = 28
    IMG_COLS = 28
    if mode == "train":
        imgs, labels = train_set[0], train_set[1]
    elif mode == "valid":
        imgs, labels = val_set[0], val_set[1]
    else:
        imgs, labels = eval_set[0], eval_set[1]
    imgs_length = len(imgs)
    assert len(imgs) == len(labels), \
        "length of train_imgs({}) should be the same as train_labels({})".format(len(imgs), len(labels))
    index_list = list(range(imgs_length))

    def data_generator():
        if mode == "train":
            random.shuffle(index_list)
        imgs_list = []
        labels_list = []
        for i in index_list:
            img = np.reshape(imgs[i], [1, IMG_ROWS, IMG_COLS]).astype("float32")
            label = np.reshape(labels[i], [1]).astype("int64")
            imgs_list.append(img)
            labels_list.append(label)
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
        self.conv1 = Conv2D(num_channels=1, num_filters=8, filter_size=5, stride=1, padding=2, act="relu")
        self.pool1 = Pool2D(pool_size=2, pool_stride=2, pool_type="max")
        self.conv2 = Conv2D(num_channels=8, num_filters=8, filter_size=5, stride=1, padding=2, act="relu")
        self.pool2 = Pool2D(pool_size=2, pool_stride=2, pool_type="max")
        self.fc = Linear(input_dim=392, output_dim=10, act="softmax")

    def forward(self, inputs, label=None):
        x = self.conv1(inputs)
        x = self.pool1(x)
        x = self.conv2(x)
        x = self.pool2(x)
        x = fluid.layers.reshape(x, [x.shape[0], 392])
        x = self.fc(x)
        if label is not None:
            acc = fluid.layers.accuracy(input=x, label=label)
            return x, acc
        return x


def initial_weights(model):
    rs = np.random.RandomState(3)
    weights = {}
    for key, value in model.state_dict().items():
        shape = value.shape
        if key.endswith("bias"):
            weights[key] = np.zeros(shape, dtype="float32")
        else:
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            weights[key] = (rs.uniform(-1.0, 1.0, shape) * np.sqrt(1.0 / fan_in)).astype("float32")
    return weights


def make_optimizer(model):
    total_steps = (int(300 // BATCH_SIZE) + 1) * EPOCH_NUM
    lr = fluid.dygraph.PolynomialDecay(0.02, total_steps, 0.002)
    return fluid.optimizer.Momentum(learning_rate=lr, momentum=0.9, parameter_list=model.parameters())


def train_epoch(model, optimizer, train_loader, epoch_id):
    model.train()
    total_loss = 0.0
    total_acc = 0.0
    batches = 0
    for batch_id, data in enumerate(train_loader()):
        image_data, label_data = data
        image = fluid.dygraph.to_variable(image_data)
        label = fluid.dygraph.to_variable(label_data)
        predict, acc = model(image, label)
        loss = fluid.layers.cross_entropy(predict, label)
        avg_loss = fluid.layers.mean(loss)
        if batch_id % 2 == 0:
            print("epoch: {}, batch: {}, loss is: {}, acc is {}".format(
                epoch_id, batch_id, avg_loss.numpy(), acc.numpy()))
        total_loss += float(avg_loss.numpy())
        total_acc += float(acc.numpy())
        batches += 1
        avg_loss.backward()
        optimizer.minimize(avg_loss)
        model.clear_gradients()
    print("epoch {} mean loss %.5f mean acc %.4f lr %.6f".format(epoch_id) % (
        total_loss / batches, total_acc / batches, optimizer.current_step_lr()))


def evaluation(model):
    model.eval()
    eval_loader = load_data("eval")
    acc_set = []
    avg_loss_set = []
    for batch_id, data in enumerate(eval_loader()):
        x_data, y_data = data
        img = fluid.dygraph.to_variable(x_data)
        label = fluid.dygraph.to_variable(y_data)
        prediction, acc = model(img, label)
        loss = fluid.layers.cross_entropy(input=prediction, label=label)
        avg_loss = fluid.layers.mean(loss)
        acc_set.append(float(acc.numpy()))
        avg_loss_set.append(float(avg_loss.numpy()))
    acc_val_mean = np.array(acc_set).mean()
    avg_loss_val_mean = np.array(avg_loss_set).mean()
    print("loss={}, acc={}".format(avg_loss_val_mean, acc_val_mean))


if __name__ == "__main__":
    random.seed(2020)
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = MNIST()
        model.load_dict(initial_weights(model))
        optimizer = make_optimizer(model)
        train_loader = load_data("train")
        for epoch_id in range(EPOCH_NUM):
            train_epoch(model, optimizer, train_loader, epoch_id)
            fluid.save_dygraph(model.state_dict(), "./checkpoint/mnist_epoch{}".format(epoch_id))
            fluid.save_dygraph(optimizer.state_dict(), "./checkpoint/mnist_epoch{}".format(epoch_id))
        evaluation(model)

    print("resume from ./checkpoint/mnist_epoch1")
    random.seed(2020)
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = MNIST()
        params_dict, opt_dict = fluid.load_dygraph("./checkpoint/mnist_epoch1")
        model.load_dict(params_dict)
        optimizer = make_optimizer(model)
        optimizer.set_dict(opt_dict)
        train_loader = load_data("train")
        for _ in range(2):  # the shuffles of epochs 0 and 1, as in the uninterrupted run
            for _ in train_loader():
                pass
        train_epoch(model, optimizer, train_loader, 2)
        evaluation(model)
