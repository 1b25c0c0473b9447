"""``PalmDataset``: the PALM training or validation images as a ``paddle.io.Dataset`` (SPEC 1, 5).

Each item is ``(image, label)``: ``image`` ``float32 [3, S, S]`` from
preprocessing A (SPEC 1.3, BGR, [-1, 1]) or B (SPEC 1.4, RGB, padded to a
square, Normalize(0.5, 0.5)), ``label`` an ``int64`` scalar (1 = pathologic
myopia).  Training labels come from the file names (SPEC 1.2) and the files are
sorted by name; validation labels come from the sheet, in its row order.

An item is built in three steps: decode and resize to ``S x S`` (``uint8``;
the slow part with the ~2000-pixel originals), augment (training only, a
generator seeded from ``(seed, epoch, index)`` so that runs repeat exactly,
whatever worker handles the item), normalise.  With ``cache=True`` the first
step's result is kept in one ``uint8`` array; :meth:`PalmDataset.warm_cache`
fills it in the parent process, so that ``paddle.io.DataLoader`` workers started
afterwards share it (fork) instead of each decoding the images again.

Worker processes and threads: on Paddle 3.3.1 a ``DataLoader`` with
``num_workers > 0`` forks its workers each epoch; if a thread that used Paddle or
OpenCV is just exiting at that moment (the helper thread of a ``num_workers=0``
DataLoader, e.g. a validation pass), a worker can inherit a held lock and hang.
Start the training loader with ``persistent_workers=True`` before anything else
reads images, and read validation batches with :func:`iterate_batches` (main
thread) or with workers too.  With persistent workers, :meth:`PalmDataset.set_epoch`
cannot reach the worker copies: sample through :class:`EpochSampler`, whose
``(epoch, index)`` pairs carry the epoch to them (and make the batch order of an
epoch a function of the seed alone, so a resumed run repeats it exactly).
"""

from pathlib import Path

import numpy as np
import paddle

from paddle_palm.data.images import inspect_image
from paddle_palm.data.labels import label_from_filename, read_labels
from paddle_palm.data.layout import find_labels_file, list_images, training_dir, validation_dir
from paddle_palm.data.transforms import (
    check_method,
    check_size,
    make_augmentation,
    normalize_for,
    read_resized,
)
from paddle_palm.errors import ConfigError, DataError, MissingFileError
from paddle_palm.progress import progress_bar

#: The splits a dataset folder holds.
SPLITS = ("train", "valid")


def training_samples(data_dir):
    """``(path, label)`` for every training image of a dataset folder, sorted by file name.

    Raises:
        MissingFileError: the folder is missing.
        DataError: it holds no images.
        LabelError: a file name does not start with H, N or P.
    """
    folder = training_dir(data_dir)
    paths = list_images(folder)
    if not paths:
        raise DataError(f"{folder}: no training images found; expected H*/N*/P*.jpg files")
    return [(str(p), label_from_filename(p)) for p in paths]


def validation_samples(data_dir, labels_file=None):
    """``(path, label)`` for every row of the validation sheet, in the sheet's order.

    Args:
        data_dir: the dataset folder.
        labels_file: the sheet to use (csv or xlsx); default: the folder's own
            (:func:`paddle_palm.data.layout.find_labels_file`).  Images not named in it are left out.

    Raises:
        MissingFileError: the folder, the sheet, or an image the sheet names is missing.
        LabelError: the sheet is malformed.
    """
    folder = validation_dir(data_dir)
    sheet = Path(labels_file) if labels_file is not None else find_labels_file(data_dir)
    table = read_labels(sheet)
    samples = [(str(folder / name), int(label)) for name, label in zip(table["imgName"], table["Label"])]
    missing = [path for path, _ in samples if not Path(path).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingFileError(f"image named in {sheet} not found: {missing[0]}{more}")
    return samples


def check_image_files(paths):
    """Quick up-front check of image files (:func:`~paddle_palm.data.images.inspect_image`, quick mode).

    Raises:
        MissingFileError, ImageError: for the first bad file, naming it.
    """
    for path in paths:
        inspect_image(path, quick=True)


class PalmDataset(paddle.io.Dataset):
    """PALM fundus images of one split of a dataset folder, for ``paddle.io.DataLoader``.

    Args:
        data_dir: a dataset folder in the layout of SPEC 5 (``prepare_palm``'s output,
            ``../shared/palm`` or ``make_synthetic_palm``'s output).
        split: ``"train"`` (``PALM-Training400``, labels from file names) or ``"valid"``
            (``PALM-Validation400``, labels from the sheet).
        image_size: side ``S`` of the square images returned.
        preprocess: ``"A"`` (SPEC 1.3, the SENet/ResNet recipes) or ``"B"`` (SPEC 1.4, SqueezeNet),
            optionally with a contrast enhancement (``"B+clahe"``, ``"B+graham"``;
            :mod:`~paddle_palm.data.transforms`).
        augment: None (training: yes, validation: no), a bool, a dict of
            :class:`~paddle_palm.data.transforms.Augmentation` fields or an ``Augmentation``.
            The default augmentation is seed 004's random horizontal and vertical flips.
        cache: keep the decoded and resized ``uint8`` images in memory (``S*S*3`` bytes each).
        labels_file: the validation sheet to use instead of the folder's own (its rows pick the
            images).
        seed: seed of the augmentation; None draws fresh randomness for every item.
        check_images: check every file up front (header, size limit, a complete JPEG/PNG;
            well under a millisecond per file), so that an empty, truncated or non-image file
            is reported here, in the calling process, rather than later inside a
            ``DataLoader`` worker.

    Attributes:
        samples: list of ``(path, label)``.
        labels: ``int64`` array of the labels.

    Raises:
        ConfigError: a bad ``split``, ``image_size``, ``preprocess`` or ``augment``.
        MissingFileError: a missing folder, sheet or image named in the sheet.
        ImageError: an empty, truncated, oversized or non-image file (with ``check_images``).
        DataError: an empty training folder.
        LabelError: a bad file-name prefix or a malformed sheet.
    """

    def __init__(self, data_dir, split, image_size=224, preprocess="A", augment=None, cache=False,
                 labels_file=None, seed=None, check_images=True):
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.data_dir = Path(data_dir)
        self.split = split
        self.image_size = check_size(image_size)
        self.preprocess = check_method(preprocess)
        self.augmentation = make_augmentation(split == "train" if augment is None else augment)
        self.seed = None if seed is None else int(seed)
        self.epoch = 0
        if split == "train":
            if labels_file is not None:
                raise ConfigError("labels_file applies to the 'valid' split only")
            self.samples = training_samples(self.data_dir)
        else:
            self.samples = validation_samples(self.data_dir, labels_file)
        if check_images:
            check_image_files(path for path, _ in self.samples)
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)
        self.cache = bool(cache)
        self._cache = None
        self._cached = None
        if self.cache:
            self._cache = np.zeros((len(self.samples), self.image_size, self.image_size, 3), dtype=np.uint8)
            self._cached = np.zeros(len(self.samples), dtype=bool)

    def __len__(self):
        return len(self.samples)

    def __repr__(self):
        return (f"PalmDataset({str(self.data_dir)!r}, split={self.split!r}, n={len(self)}, "
                f"positive={int(self.labels.sum())}, image_size={self.image_size}, preprocess={self.preprocess!r}, "
                f"augment={self.augmentation is not None}, cache={self.cache})")

    @property
    def augment(self):
        """True when items are augmented."""
        return self.augmentation is not None

    def set_epoch(self, epoch):
        """Set the epoch that, with ``seed`` and the index, seeds each item's augmentation.

        Call it before iterating a ``DataLoader`` (its workers start afresh each epoch and copy it).
        """
        self.epoch = int(epoch)

    def class_counts(self):
        """``{0: n_negative, 1: n_positive}``."""
        return {0: int((self.labels == 0).sum()), 1: int((self.labels == 1).sum())}

    def load_resized(self, index):
        """The decoded image ``index`` resized (and enhanced) to ``S x S``: ``uint8 (S, S, 3)``, BGR for A, RGB for B.

        Served from the cache when it holds the image.
        """
        if self._cache is not None and self._cached[index]:
            return self._cache[index]
        image = read_resized(self.samples[index][0], self.preprocess, self.image_size)
        if self._cache is not None:
            self._cache[index] = image
            self._cached[index] = True
        return image

    def warm_cache(self, progress=False):
        """Decode and resize every image into the cache now (``cache=True`` only).

        Args:
            progress: show a tqdm progress bar.

        Returns:
            PalmDataset: ``self``.
        """
        if self._cache is None:
            raise ConfigError("warm_cache() needs a dataset made with cache=True")
        for index in progress_bar(range(len(self)), desc=f"caching {self.split} images", unit="img", disable=not progress):
            self.load_resized(index)
        return self

    def _rng(self, epoch, index):
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __getitem__(self, index):
        """Item ``index``: ``(float32 [3, S, S], int64 label)``.

        ``index`` may also be an ``(epoch, index)`` pair, as :class:`EpochSampler` yields: the
        epoch then travels with the index, so augmentation stays reproducible with
        ``persistent_workers=True`` (where :meth:`set_epoch` cannot reach the workers).
        """
        epoch = self.epoch
        if isinstance(index, (tuple, list)):
            epoch, index = index
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        image = self.load_resized(index)
        if self.augmentation is not None:
            image = self.augmentation(image, self._rng(epoch, index))
        return normalize_for(self.preprocess, image), np.int64(self.samples[index][1])


class EpochSampler(paddle.io.Sampler):
    """A sampler of ``(epoch, index)`` pairs: a seeded permutation per epoch, or the plain order.

    Use it through ``paddle.io.BatchSampler(sampler=EpochSampler(...), batch_size=...)``.  The
    order of epoch ``e`` is a function of ``(seed, e)`` only, so a run resumed at epoch ``e``
    sees exactly the batches an uninterrupted run would, and :class:`PalmDataset` seeds each
    item's augmentation from the epoch that comes with its index (also in persistent workers).

    Args:
        data_source: the dataset (or its length).
        shuffle: permute the indices each epoch.
        seed: seed of the permutations.
    """

    def __init__(self, data_source, shuffle=True, seed=0):
        self.length = data_source if isinstance(data_source, (int, np.integer)) else len(data_source)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __iter__(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        for index in order:
            yield (self.epoch, int(index))

    def __len__(self):
        return self.length


def iterate_batches(dataset, batch_size, order=None):
    """Batches of a dataset read in the calling thread: ``(images float32 [N,...], labels int64 [N])``.

    A thread-free alternative to ``paddle.io.DataLoader(num_workers=0)`` for evaluation.  Paddle's
    single-process DataLoader reads in a helper thread; when a DataLoader with worker processes is
    started right after that thread exits, the forked workers can inherit a lock the exiting thread
    held (in Paddle's allocator or OpenCV) and hang.  Reading in the main thread avoids that.

    Args:
        dataset: any map-style dataset returning ``(image, label)``.
        batch_size: items per batch; the last batch may be smaller.
        order: indices to read, in order (default: all, in order).

    Yields:
        tuple: ``(images, labels)`` as numpy arrays.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    indices = list(range(len(dataset))) if order is None else [int(i) for i in order]
    for start in range(0, len(indices), batch_size):
        pairs = [dataset[i] for i in indices[start:start + batch_size]]
        yield np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)
