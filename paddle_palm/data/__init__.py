"""PALM data: archives -> dataset folder -> readers and datasets (SPEC 1, 5).

Modules, in the order data flows through them:

* :mod:`~paddle_palm.data.archives`: :func:`prepare_palm`, the three archives to a dataset folder;
* :mod:`~paddle_palm.data.layout`: the dataset folder's names;
* :mod:`~paddle_palm.data.labels`: :func:`label_from_filename`, :func:`read_labels`;
* :mod:`~paddle_palm.data.images`: :func:`read_image` and its accepted/refused input policy;
* :mod:`~paddle_palm.data.transforms`: preprocessing A and B, augmentation;
* :mod:`~paddle_palm.data.readers`: the course's generator readers;
* :mod:`~paddle_palm.data.listfile`: seed 004's list files and their dataset;
* :mod:`~paddle_palm.data.dataset`: :class:`PalmDataset`, a ``paddle.io.Dataset``;
* :mod:`~paddle_palm.data.synthetic`: a small fundus-like dataset folder for tests and demos;
* :mod:`~paddle_palm.data.mnist`, :mod:`~paddle_palm.data.cifar`: the other seed data sets from local files.

Importing this package does not import Paddle; :class:`PalmDataset` (and the modules that define
datasets) import it when first used.
"""

from paddle_palm.data.archives import prepare_palm
from paddle_palm.data.images import read_image
from paddle_palm.data.labels import label_from_filename, read_labels
from paddle_palm.data.layout import describe_dataset

__all__ = ["PalmDataset", "describe_dataset", "label_from_filename", "make_synthetic_palm", "prepare_palm",
           "read_image", "read_labels"]


def __getattr__(name):
    # Lazy: PalmDataset needs paddle, make_synthetic_palm needs nothing heavy but keeps import light.
    if name == "PalmDataset":
        from paddle_palm.data.dataset import PalmDataset

        return PalmDataset
    if name == "make_synthetic_palm":
        from paddle_palm.data.synthetic import make_synthetic_palm

        return make_synthetic_palm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
