# -*- coding: utf-8 -*-
"""A PaddlePaddle 1.8 course-style program: PM screening with a small CNN (2020 course style).

It runs unchanged on a real PaddlePaddle 1.8.5 (Python 3.7) and on Paddle 3 through
``python -m legacy_fluid course_palm_cnn.py``; the tests compare what the two print
(``tests/golden/fluid/course_program.txt`` holds the 1.8.5 output).

The program writes its own tiny data set (PNG fundus-like images, ``P``/``H``/``N``
names, a ``labels.csv`` for validation) into ``./palm_course_data``, reads it with the
course's generator readers, builds the model in one ``guard()`` and trains it in another
(Momentum, PolynomialDecay, L2Decay), validates after every epoch with the course's
``concat([1 - p, p])`` + ``accuracy`` recipe, saves model and optimizer with
``save_dygraph``, reloads both with ``load_dygraph`` into a new model and optimizer in
a third guard, checks the reloaded model and continues training for one epoch.
Weights start from a numpy-seeded state dict so that both frameworks start equal.
"""

import os
import random

import cv2
import numpy as np
import paddle  # noqa: F401  (course programs import it)
import paddle.fluid as fluid
from paddle.fluid.dygraph.base import to_variable
from paddle.fluid.dygraph.nn import BatchNorm, Conv2D, Linear, Pool2D
from paddle.fluid.layer_helper import LayerHelper

DATA_DIR = os.path.join(os.getcwd(), "palm_course_data")
TRAIN_DIR = os.path.join(DATA_DIR, "PALM-Training400")
VALID_DIR = os.path.join(DATA_DIR, "PALM-Validation400")
CSVFILE = os.path.join(DATA_DIR, "labels.csv")
IMAGE_SIZE = 32


def make_dataset():
    """Write 12 training and 6 validation images: PM eyes carry a large bright atrophy disc."""
    rs = np.random.RandomState(2020)
    for folder in (TRAIN_DIR, VALID_DIR):
        if not os.path.isdir(folder):
            os.makedirs(folder)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]

    def fundus(pm):
        img = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float64)
        img[:, :, 2] = 150 + 30 * rs.rand()
        img[:, :, 1] = 60 + 20 * rs.rand()
        img[:, :, 0] = 30
        cy, cx = 12 + 8 * rs.rand(), 12 + 8 * rs.rand()
        radius = (7 if pm else 3) + 2 * rs.rand()
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
        img[disc] = [200, 230, 250]
        img += rs.normal(0, 12, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)

    names = ["P0001", "P0002", "P0003", "P0004", "P0005", "P0006",
             "H0001", "H0002", "N0001", "N0002", "N0003", "N0004"]
    for name in names:
        cv2.imwrite(os.path.join(TRAIN_DIR, name + ".png"), fundus(name[0] == "P"))
    rows = ["ID,imgName,Label,Fovea_X,Fovea_Y"]
    for i, label in enumerate([1, 0, 1, 0, 0, 1]):
        name = "V%04d.png" % (i + 1)
        cv2.imwrite(os.path.join(VALID_DIR, name), fundus(label == 1))
        rows.append("%d,%s,%d,%.2f,%.2f" % (i + 1, name, label, 16.0, 16.0))
    with open(CSVFILE, "w") as f:
        f.write("\n".join(rows) + "\n")


def transform_img(img):
    img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE))
    img = np.transpose(img, (2, 0, 1))
    img = img.astype("float32")
    img = img / 255.0
    img = img * 2.0 - 1.0
    return img


def data_loader(datadir, batch_size=4, mode="train"):
    filenames = sorted(os.listdir(datadir))

    def reader():
        if mode == "train":
            random.shuffle(filenames)
        batch_imgs = []
        batch_labels = []
        for name in filenames:
            img = transform_img(cv2.imread(os.path.join(datadir, name)))
            label = 1 if name[0] == "P" else 0
            batch_imgs.append(img)
            batch_labels.append(label)
            if len(batch_imgs) == batch_size:
                yield np.array(batch_imgs).astype("float32"), \
                    np.array(batch_labels).astype("float32").reshape(-1, 1)
                batch_imgs = []
                batch_labels = []
        if len(batch_imgs) > 0:
            yield np.array(batch_imgs).astype("float32"), np.array(batch_labels).astype("float32").reshape(-1, 1)

    return reader


def valid_data_loader(datadir, csvfile, batch_size=3):
    filelists = open(csvfile).readlines()

    def reader():
        batch_imgs = []
        batch_labels = []
        for line in filelists[1:]:
            line = line.strip().split(",")
            img = transform_img(cv2.imread(os.path.join(datadir, line[1])))
            batch_imgs.append(img)
            batch_labels.append(int(line[2]))
            if len(batch_imgs) == batch_size:
                yield np.array(batch_imgs).astype("float32"), \
                    np.array(batch_labels).astype("float32").reshape(-1, 1)
                batch_imgs = []
                batch_labels = []
        if len(batch_imgs) > 0:
            yield np.array(batch_imgs).astype("float32"), np.array(batch_labels).astype("float32").reshape(-1, 1)

    return reader


class ConvBNLayer(fluid.dygraph.Layer):
    def __init__(self, num_channels, num_filters, filter_size, act="relu"):
        super(ConvBNLayer, self).__init__()
        self._conv = Conv2D(num_channels, num_filters, filter_size, padding=(filter_size - 1) // 2,
                            bias_attr=False)
        self._batch_norm = BatchNorm(num_filters, act=act)

    def forward(self, x):
        return self._batch_norm(self._conv(x))


class PalmCNN(fluid.dygraph.Layer):
    def __init__(self):
        super(PalmCNN, self).__init__()
        self.conv1 = ConvBNLayer(3, 8, 3)
        self.pool1 = Pool2D(pool_size=2, pool_type="max", pool_stride=2)
        self.conv2 = ConvBNLayer(8, 16, 3, act=None)
        self.short = Conv2D(8, 16, 1, act="leaky_relu")
        # 1.8 Pool2D strides by 1 unless told otherwise: 16x16 -> 15x15
        self.pool2 = Pool2D(pool_size=2, pool_type="avg")
        self.fc1 = Linear(16 * 15 * 15, 16, act="relu")
        self.fc2 = Linear(16, 1)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        y = fluid.layers.elementwise_add(x=self.short(x), y=self.conv2(x))
        y = LayerHelper(self.full_name(), act="relu").append_activation(y)
        y = self.pool2(y)
        y = fluid.layers.flatten(y, axis=1)
        y = self.fc1(y)
        return self.fc2(y)


def initial_weights(model):
    rs = np.random.RandomState(7)
    weights = {}
    for key, value in model.state_dict().items():
        shape = value.shape
        if key.endswith("_variance") or (key.endswith("weight") and len(shape) == 1):
            weights[key] = np.ones(shape, dtype="float32")
        elif key.endswith("_mean") or key.endswith("bias"):
            weights[key] = np.zeros(shape, dtype="float32")
        else:
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            weights[key] = (rs.uniform(-1.0, 1.0, shape) * np.sqrt(3.0 / fan_in)).astype("float32")
    return weights


def evaluate(model, valid_loader):
    model.eval()
    accuracies = []
    losses = []
    for batch_id, data in enumerate(valid_loader()):
        x_data, y_data = data
        img = to_variable(x_data)
        label = to_variable(y_data)
        logits = model(img)
        pred = fluid.layers.sigmoid(logits)
        loss = fluid.layers.sigmoid_cross_entropy_with_logits(logits, label)
        pred2 = pred * (-1.0) + 1.0
        pred = fluid.layers.concat([pred2, pred], axis=1)
        acc = fluid.layers.accuracy(pred, fluid.layers.cast(label, dtype="int64"))
        accuracies.append(acc.numpy())
        losses.append(loss.numpy())
    model.train()
    return np.mean(accuracies), np.mean(losses)


def train_epochs(model, opt, train_loader, valid_loader, first_epoch, epoch_num):
    for epoch in range(first_epoch, first_epoch + epoch_num):
        for batch_id, data in enumerate(train_loader()):
            x_data, y_data = data
            img = to_variable(x_data)
            label = to_variable(y_data)
            logits = model(img)
            loss = fluid.layers.sigmoid_cross_entropy_with_logits(logits, label)
            avg_loss = fluid.layers.mean(loss)
            avg_loss.backward()
            opt.minimize(avg_loss)
            model.clear_gradients()
            print("epoch: {}, batch_id: {}, loss is: {}, lr: {}".format(
                epoch, batch_id, avg_loss.numpy(), opt.current_step_lr()))
        acc, vloss = evaluate(model, valid_loader)
        print("[validation] accuracy/loss: {}/{}".format(acc, vloss))


def train(model):
    with fluid.dygraph.guard(fluid.CPUPlace()):
        print("start training ... ")
        model.train()
        lr = fluid.dygraph.PolynomialDecay(0.01, 8, 0.002)
        opt = fluid.optimizer.Momentum(learning_rate=lr, momentum=0.9, parameter_list=model.parameters(),
                                       regularization=fluid.regularizer.L2Decay(1e-4))
        train_loader = data_loader(TRAIN_DIR, batch_size=4, mode="train")
        valid_loader = valid_data_loader(VALID_DIR, CSVFILE)
        train_epochs(model, opt, train_loader, valid_loader, 0, 3)
        fluid.save_dygraph(model.state_dict(), os.path.join(DATA_DIR, "checkpoints", "palm"))
        fluid.save_dygraph(opt.state_dict(), os.path.join(DATA_DIR, "checkpoints", "palm"))
        print("saved:", sorted(os.listdir(os.path.join(DATA_DIR, "checkpoints"))))


def resume():
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = PalmCNN()
        params, opt_state = fluid.load_dygraph(os.path.join(DATA_DIR, "checkpoints", "palm"))
        model.load_dict(params)
        lr = fluid.dygraph.PolynomialDecay(0.01, 8, 0.002)
        opt = fluid.optimizer.Momentum(learning_rate=lr, momentum=0.9, parameter_list=model.parameters(),
                                       regularization=fluid.regularizer.L2Decay(1e-4))
        opt.set_dict(opt_state)
        valid_loader = valid_data_loader(VALID_DIR, CSVFILE)
        acc, vloss = evaluate(model, valid_loader)
        print("[reloaded] accuracy/loss: {}/{}".format(acc, vloss))
        train_epochs(model, opt, data_loader(TRAIN_DIR, batch_size=4), valid_loader, 3, 1)


if __name__ == "__main__":
    random.seed(0)
    make_dataset()
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = PalmCNN()
        model.load_dict(initial_weights(model))
    train(model)
    resume()
