"""The course's generator readers (SPEC 1.3, seeds 000 and 001), as the 2020 course wrote them.

``cv2.imread`` (BGR kept) -> ``cv2.resize`` to ``image_size`` (224) -> CHW -> float32 ->
``/255`` -> ``*2-1``.  ``data_loader`` labels training files by the first letter of their
name (``P`` -> 1, ``H``/``N`` -> 0) and shuffles with ``random.shuffle`` in train mode;
``valid_data_loader`` reads ``imgName``/``Label`` from the csv rows after the header.  Both
return a ``reader()`` generator function yielding ``(float32 [N,3,S,S], float32 [N,1])``
batches, the last partial batch included.

As the legacy reference, the seeds' two bugs are kept and named (SPEC 1.2, 1.3): a file
name with another first letter hits ``raise('Not excepted file name')``, which raises a
``TypeError`` (a string is not an exception); an unreadable image makes ``cv2.resize``
fail on ``None``.  ``paddle_palm.data.readers`` is the fixed version.
Python 3.7 compatible; needs only numpy and OpenCV.
"""

import os
import random

import cv2
import numpy as np

__all__ = ["transform_img", "data_loader", "valid_data_loader"]


def transform_img(img, image_size=224):
    """Resize to ``image_size`` square, HWC -> CHW, float32 in [-1, 1]."""
    img = cv2.resize(img, (image_size, image_size))
    img = np.transpose(img, (2, 0, 1))
    img = img.astype("float32")
    img = img / 255.0
    img = img * 2.0 - 1.0
    return img


def _batch_arrays(batch_imgs, batch_labels):
    imgs_array = np.array(batch_imgs).astype("float32")
    labels_array = np.array(batch_labels).astype("float32").reshape(-1, 1)
    return imgs_array, labels_array


def data_loader(datadir, batch_size=10, mode="train", image_size=224):
    """Training reader over the images of ``datadir``, labelled by file name (SPEC 1.3)."""
    filenames = os.listdir(datadir)

    def reader():
        if mode == "train":
            random.shuffle(filenames)
        batch_imgs = []
        batch_labels = []
        for name in filenames:
            filepath = os.path.join(datadir, name)
            img = cv2.imread(filepath)
            img = transform_img(img, image_size)
            if name[0] == "H" or name[0] == "N":
                label = 0
            elif name[0] == "P":
                label = 1
            else:
                # seed bug kept on purpose: raising a str is itself a TypeError
                raise ("Not excepted file name")  # noqa: B016
            batch_imgs.append(img)
            batch_labels.append(label)
            if len(batch_imgs) == batch_size:
                yield _batch_arrays(batch_imgs, batch_labels)
                batch_imgs = []
                batch_labels = []
        if len(batch_imgs) > 0:
            yield _batch_arrays(batch_imgs, batch_labels)

    return reader


def valid_data_loader(datadir, csvfile, batch_size=10, mode="valid", image_size=224):
    """Validation reader: images of ``datadir`` named in ``csvfile`` (``ID,imgName,Label,...``)."""
    with open(csvfile) as fh:
        filelists = fh.readlines()

    def reader():
        batch_imgs = []
        batch_labels = []
        for line in filelists[1:]:
            line = line.strip().split(",")
            name = line[1]
            label = int(line[2])
            filepath = os.path.join(datadir, name)
            img = cv2.imread(filepath)
            img = transform_img(img, image_size)
            batch_imgs.append(img)
            batch_labels.append(label)
            if len(batch_imgs) == batch_size:
                yield _batch_arrays(batch_imgs, batch_labels)
                batch_imgs = []
                batch_labels = []
        if len(batch_imgs) > 0:
            yield _batch_arrays(batch_imgs, batch_labels)

    return reader
