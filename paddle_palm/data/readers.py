"""The course's generator readers (SPEC 1.3, seeds 000 and 001), with clear errors.

:func:`data_loader` and :func:`valid_data_loader` give, batch for batch and bit
for bit, what the course's readers give: each returns a ``reader()`` generator
function to call once per epoch, yielding ``(imgs, labels)`` with ``imgs``
``float32 [N, 3, 224, 224]`` (preprocessing A, BGR, values in [-1, 1]) and
``labels`` ``float32 [N, 1]``; batches of ``batch_size`` and a last, partial
batch.  In ``train`` mode the list from ``os.listdir`` is shuffled in place with
the ``random`` module at the start of each epoch, so after ``random.seed(s)``
the order is the course's.

What differs from the seeds, on bad input only:

* an unknown file-name prefix is a :class:`LabelError` naming the file (the seeds
  ``raise`` a string, itself a ``TypeError``), raised when the reader is made;
* an unreadable image is an :class:`ImageError` naming the file (the seeds pass
  ``None`` on to ``cv2.resize``);
* a validation image named in the sheet but absent is a :class:`MissingFileError`
  raised when the reader is made; the sheet is checked by
  :func:`paddle_palm.data.read_labels` (csv or xlsx);
* hidden files (``.DS_Store``, ``._H0001.jpg``) and sub-folders in the training folder
  are skipped;
* an empty training folder is a :class:`DataError`.
"""

import os
import random

import numpy as np

from paddle_palm.data.images import read_image
from paddle_palm.data.labels import label_from_filename, read_labels
from paddle_palm.data.transforms import check_size, preprocess_a
from paddle_palm.errors import ConfigError, DataError, MissingFileError


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _batches(items, batch_size, image_size):
    """Yield the course's batches from ``(filepath, label)`` pairs."""
    batch_imgs, batch_labels = [], []
    for filepath, label in items:
        batch_imgs.append(preprocess_a(read_image(filepath), image_size))
        batch_labels.append(label)
        if len(batch_imgs) == batch_size:
            yield (np.array(batch_imgs).astype("float32"),
                   np.array(batch_labels).astype("float32").reshape(-1, 1))
            batch_imgs, batch_labels = [], []
    if batch_imgs:
        yield (np.array(batch_imgs).astype("float32"),
               np.array(batch_labels).astype("float32").reshape(-1, 1))


def data_loader(datadir, batch_size=10, mode="train", image_size=224):
    """The course's training reader: labels from file names, shuffled each epoch in ``train`` mode.

    Args:
        datadir: the folder of training images (``PALM-Training400``), listed with ``os.listdir``.
        batch_size: images per batch (10 in the course); the last batch may be smaller.
        mode: ``"train"`` shuffles with ``random.shuffle`` at the start of each epoch; any other
            value keeps the ``os.listdir`` order.
        image_size: side of the resized images (224 in the course).

    Returns:
        callable: ``reader()``, a generator function yielding ``(imgs float32 [N,3,S,S],
        labels float32 [N,1])``.

    Raises:
        MissingFileError: ``datadir`` does not exist.
        DataError: it holds no images.
        LabelError: a file name does not start with H, N or P.
    """
    batch_size = _check_batch_size(batch_size)
    image_size = check_size(image_size)
    if not os.path.isdir(datadir):
        raise MissingFileError(f"training image folder not found: {datadir}")
    filenames = os.listdir(datadir)
    labels = {name: label_from_filename(os.path.join(datadir, name))
              for name in filenames
              if not name.startswith(".") and os.path.isfile(os.path.join(datadir, name))}
    if not labels:
        raise DataError(f"{datadir}: no training images found; expected H*/N*/P*.jpg files")

    def reader():
        if mode == "train":
            random.shuffle(filenames)
        items = ((os.path.join(datadir, name), labels[name]) for name in filenames if name in labels)
        yield from _batches(items, batch_size, image_size)

    return reader


def valid_data_loader(datadir, csvfile, batch_size=10, mode="valid", image_size=224):
    """The course's validation reader: images named by the label sheet, in its row order.

    Args:
        datadir: the folder of validation images (``PALM-Validation400``).
        csvfile: ``labels.csv`` (or the xlsx) with columns ``imgName`` and ``Label``.
        batch_size: images per batch; the last batch may be smaller.
        mode: kept for the course's signature; the order is never shuffled.
        image_size: side of the resized images (224 in the course).

    Returns:
        callable: ``reader()``, a generator function yielding ``(imgs, labels)`` as
        :func:`data_loader` does.

    Raises:
        MissingFileError: the folder, the sheet, or an image it names does not exist.
        LabelError: the sheet is malformed (see :func:`paddle_palm.data.read_labels`).
    """
    batch_size = _check_batch_size(batch_size)
    image_size = check_size(image_size)
    if not os.path.isdir(datadir):
        raise MissingFileError(f"validation image folder not found: {datadir}")
    table = read_labels(csvfile)
    rows = [(os.path.join(datadir, name), int(label)) for name, label in zip(table["imgName"], table["Label"])]
    missing = [path for path, _ in rows if not os.path.isfile(path)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MissingFileError(f"image named in {csvfile} not found: {missing[0]}{more}")

    def reader():
        yield from _batches(iter(rows), batch_size, image_size)

    return reader
