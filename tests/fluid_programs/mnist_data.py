# -*- coding: utf-8 -*-
"""A small digit data set in the format of the 2020 course's ``mnist.json.gz``, and a PNG digit.

The course's MNIST chapter reads ``./work/mnist.json.gz``: gzip-compressed JSON of
``[train_set, val_set, eval_set]``, each ``[images, labels]`` with every image a list of
784 floats in [-1, 1] (28x28, row by row) and every label an int.  :func:`write_dataset`
writes such a file with seeded, learnable "digits" (ten stroke patterns, randomly shifted
and noised), and :func:`write_png` a larger grey-scale PNG of one digit, dark on white, as
the course's ``example_0.png``.  The same numbers come out on numpy 1.19 and numpy 2.x.
"""

import gzip
import json
import os
import sys

import numpy as np

SIZES = (300, 100, 100)

# ten 7x7 stroke patterns, scaled up to the 28x28 canvas
_PATTERNS = [
    ["0111110", "1100011", "1100011", "1100011", "1100011", "1100011", "0111110"],
    ["0001100", "0011100", "0001100", "0001100", "0001100", "0001100", "0011110"],
    ["0111110", "1100011", "0000110", "0011100", "0110000", "1100000", "1111111"],
    ["1111110", "0000011", "0000011", "0111110", "0000011", "0000011", "1111110"],
    ["0000110", "0001110", "0011010", "0110010", "1111111", "0000010", "0000010"],
    ["1111111", "1100000", "1111110", "0000011", "0000011", "1100011", "0111110"],
    ["0011110", "0110000", "1100000", "1111110", "1100011", "1100011", "0111110"],
    ["1111111", "0000011", "0000110", "0001100", "0011000", "0011000", "0011000"],
    ["0111110", "1100011", "1100011", "0111110", "1100011", "1100011", "0111110"],
    ["0111110", "1100011", "1100011", "0111111", "0000011", "0000110", "0111100"],
]


def digit(label, rs):
    """One 28x28 image in [-1, 1] (ink high, background -1) of ``label``, shifted and noised by ``rs``."""
    pattern = np.array([[int(c) for c in row] for row in _PATTERNS[label]], dtype=np.float64)
    canvas = np.zeros((28, 28))
    big = np.kron(pattern, np.ones((3, 3)))  # 21x21
    dy, dx = rs.randint(0, 8), rs.randint(0, 8)
    canvas[dy:dy + 21, dx:dx + 21] = big
    canvas = canvas * (0.7 + 0.3 * rs.rand()) + rs.normal(0, 0.15, canvas.shape)
    return np.clip(canvas * 2.0 - 1.0, -1.0, 1.0)


def make_split(count, rs):
    images, labels = [], []
    for i in range(count):
        label = int(rs.randint(0, 10))
        images.append([round(float(v), 4) for v in digit(label, rs).reshape(-1)])
        labels.append(label)
    return [images, labels]


def write_dataset(path, sizes=SIZES, seed=2020):
    """Write ``path`` (``mnist.json.gz`` format) with ``sizes`` = (train, validation, evaluation) images."""
    rs = np.random.RandomState(seed)
    data = [make_split(n, rs) for n in sizes]
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        os.makedirs(folder)
    with gzip.open(path, "wt") as fh:
        json.dump(data, fh)


def write_png(path, label=3, seed=7):
    """Write a 56x56 grey-scale PNG of digit ``label``: dark ink on a white background."""
    from PIL import Image

    rs = np.random.RandomState(seed)
    image = digit(label, rs)
    grey = np.clip((1.0 - (image + 1.0) / 2.0) * 255.0, 0, 255).astype(np.uint8)
    Image.fromarray(np.kron(grey, np.ones((2, 2), dtype=np.uint8))).save(path)


def prepare(workdir):
    """Write ``workdir/work/mnist.json.gz`` and ``workdir/work/example_0.png``."""
    write_dataset(os.path.join(workdir, "work", "mnist.json.gz"))
    write_png(os.path.join(workdir, "work", "example_0.png"))


if __name__ == "__main__":
    prepare(sys.argv[1] if len(sys.argv) > 1 else os.getcwd())
