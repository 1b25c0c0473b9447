# -*- coding: utf-8 -*-
"""The 2020 course's MNIST chapter, "predict": train briefly, save, reload and classify a PNG.

Trains a small convolutional model for three epochs with Adam, saves it with
``save_dygraph``, reloads it into a fresh model in a new guard, and classifies
``./work/example_0.png`` read with PIL exactly as the course did
(``convert('L')``, ``resize((28, 28), Image.ANTIALIAS)``, ``np.float32``, ``1 - im / 127.5``).
Reads ``./work/mnist.json.gz``.  Runs unchanged on PaddlePaddle 1.8.5 and under
``python -m legacy_fluid``.
"""

import gzip
import json
import random

import numpy as np
import paddle.fluid as fluid
from paddle.fluid.dygraph.nn import Conv2D, Linear, Pool2D
from PIL import Image


class MNIST(fluid.dygraph.Layer):
    def __init__(self):
        super(MNIST, self).__init__()
        self.conv1 = Conv2D(num_channels=1, num_filters=6, filter_size=3, padding=1, act="relu")
        self.pool1 = Pool2D(pool_size=2, pool_stride=2, pool_type="max")
        self.fc = Linear(input_dim=6 * 14 * 14, output_dim=10, act="softmax")

    def forward(self, inputs):
        x = self.pool1(self.conv1(inputs))
        x = fluid.layers.reshape(x, [x.shape[0], -1])
        return self.fc(x)


def initial_weights(model):
    rs = np.random.RandomState(9)
    weights = {}
    for key, value in model.state_dict().items():
        shape = value.shape
        if key.endswith("bias"):
            weights[key] = np.zeros(shape, dtype="float32")
        else:
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            weights[key] = (rs.uniform(-1.0, 1.0, shape) * np.sqrt(1.0 / fan_in)).astype("float32")
    return weights


def load_image(img_path):
    im = Image.open(img_path).convert("L")
    im = im.resize((28, 28), Image.ANTIALIAS)
    im = np.array(im).reshape(1, 1, 28, 28).astype(np.float32)
    im = 1.0 - im / 127.5
    return im


def train():
    data = json.load(gzip.open("./work/mnist.json.gz"))
    imgs, labels = data[0]
    random.seed(4)
    index = list(range(len(imgs)))
    with fluid.dygraph.guard():
        model = MNIST()
        model.load_dict(initial_weights(model))
        optimizer = fluid.optimizer.AdamOptimizer(learning_rate=0.01, parameter_list=model.parameters())
        for step in range(3 * (len(index) // 25)):
            batch_id = step % (len(index) // 25)
            if batch_id == 0:
                random.shuffle(index)
            ids = index[batch_id * 25:(batch_id + 1) * 25]
            img = fluid.dygraph.to_variable(np.array([imgs[i] for i in ids], dtype="float32").reshape(-1, 1, 28, 28))
            label = fluid.dygraph.to_variable(np.array([[labels[i]] for i in ids], dtype="int64"))
            avg_loss = fluid.layers.mean(fluid.layers.cross_entropy(model(img), label))
            if step % 6 == 0:
                print("step {} loss {:.5f}".format(step, float(avg_loss.numpy())))
            avg_loss.backward()
            optimizer.minimize(avg_loss)
            model.clear_gradients()
        fluid.save_dygraph(model.state_dict(), "mnist")


if __name__ == "__main__":
    train()
    with fluid.dygraph.guard():
        model = MNIST()
        model_dict, _ = fluid.load_dygraph("mnist")
        model.load_dict(model_dict)
        model.eval()
        tensor_img = load_image("./work/example_0.png")
        print("input shape:", fluid.dygraph.to_variable(tensor_img).shape)
        results = model(fluid.dygraph.to_variable(tensor_img))
        lab = np.argsort(results.numpy())
        print("probabilities:", np.round(results.numpy(), 4))
        print("top-3:", lab[0][-3:][::-1], "score %.4f" % results.numpy()[0][lab[0][-1]])
        print("the predicted digit is: {}".format(lab[0][-1]))
