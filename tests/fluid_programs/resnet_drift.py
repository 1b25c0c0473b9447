# -*- coding: utf-8 -*-
"""Where the course ResNet-50's float32 difference between two fluid implementations comes from.

``resnet_drift.py DTYPE STEPS`` trains the reference ResNet-50 (``legacy_fluid.models.
resnet_fluid``, the course's model) from numpy-seeded weights on one seeded batch of
2 images (64x64) in train mode (BatchNorm on batch statistics), Momentum 0.9 with a
constant rate 0.005, in ``float32`` or ``float64``, and prints the loss, the L2 norm of the trainable weights and that of the BatchNorm
statistics after every step with 17 digits.  Run on PaddlePaddle 1.8.5 and under
``python -m legacy_fluid`` with both dtypes: if the two implementations compute the same
function, the difference between them shrinks with the dtype's rounding in float64; a
semantic difference would stay.  ``resnet_drift.py DTYPE STEPS perturb`` moves every input
pixel by one unit in the last place; ``swap`` feeds the two images in the other order,
which is the same computation with other summation orders in BatchNorm's statistics, the
loss mean and the weight gradients: how far rounding inside the network alone carries one
implementation away from itself.  ``f32lr`` uses the float32 value of the rate (what
Paddle 2.x/3.x store) also on 1.8.5, which keeps it in the loss's dtype.
"""

import sys
import zlib

import numpy as np
import paddle.fluid as fluid
import paddle.fluid.dygraph.nn as nn

DTYPE = sys.argv[1] if len(sys.argv) > 1 else "float32"
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 12
PERTURB = len(sys.argv) > 3 and sys.argv[3] == "perturb"
SWAP = len(sys.argv) > 3 and sys.argv[3] == "swap"
# 1.8.5 keeps a float learning rate in the loss's dtype (float64 here), Paddle 2.x/3.x in float32;
# "f32lr" gives both the float32 value 0.004999999888 in float64 runs
LR = float(np.float32(0.005)) if len(sys.argv) > 3 and sys.argv[3] == "f32lr" else 0.005


def with_dtype(cls):
    def make(*args, **kwargs):
        kwargs["dtype"] = DTYPE
        return cls(*args, **kwargs)
    return make


from legacy_fluid.models import resnet_fluid  # noqa: E402

# the course model is written with the default float32 layers: its module gets layers of DTYPE
for _name in ("Conv2D", "BatchNorm", "Linear"):
    setattr(resnet_fluid, _name, with_dtype(getattr(nn, _name)))


def seeded(key, shape):
    rs = np.random.RandomState(zlib.crc32(key.encode("utf-8")) & 0xFFFFFFFF)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "_mean":
        values = 0.1 * rs.uniform(-1.0, 1.0, shape)
    elif leaf == "_variance":
        values = 1.0 + 0.5 * rs.uniform(0.0, 1.0, shape)
    elif leaf == "bias":
        values = 0.05 * rs.uniform(-1.0, 1.0, shape)
    elif len(shape) == 1:
        values = 1.0 + 0.1 * rs.uniform(-1.0, 1.0, shape)
    else:
        fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
        values = np.sqrt(2.0 / fan_in) * rs.uniform(-1.0, 1.0, shape)
    return values.astype("float32").astype(DTYPE)  # the same start for both dtypes


if __name__ == "__main__":
    with fluid.dygraph.guard(fluid.CPUPlace()):
        model = resnet_fluid.ResNet(layers=50, class_dim=1)
        model.set_dict({k: seeded(k, tuple(v.shape)) for k, v in model.state_dict().items()})
        rs = np.random.RandomState(2020)
        images = rs.uniform(-1, 1, (2, 3, 64, 64)).astype("float32").astype(DTYPE)
        if PERTURB:  # every pixel moved to the next representable number: the sensitivity to rounding
            images = np.nextafter(images, np.inf).astype(DTYPE)
        labels = np.array([[0.0], [1.0]], dtype=DTYPE)
        if SWAP:  # the same batch in the other order: the same function, other summation orders
            images, labels = images[::-1].copy(), labels[::-1].copy()
        img = fluid.dygraph.to_variable(images)
        label = fluid.dygraph.to_variable(labels)
        opt = fluid.optimizer.Momentum(learning_rate=LR, momentum=0.9, parameter_list=model.parameters())
        model.train()
        for step in range(STEPS):
            loss = fluid.layers.mean(fluid.layers.sigmoid_cross_entropy_with_logits(model(img), label))
            loss.backward()
            opt.minimize(loss)
            model.clear_gradients()
            norm = np.sqrt(sum(float((p.numpy().astype("float64") ** 2).sum()) for p in model.parameters()
                               if p.trainable))
            stats = np.sqrt(sum(float((p.numpy().astype("float64") ** 2).sum()) for p in model.parameters()
                                if not p.trainable))
            print("%s step %d loss %.17g norm %.17g stats %.17g" % (DTYPE, step, float(loss.numpy()), norm, stats))
