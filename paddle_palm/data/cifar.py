"""CIFAR-10 from the local "python version" files (SPEC 1.5, seed 003).

Reads ``cifar-10-python.tar.gz`` as distributed, or the folder it unpacks to
(``cifar-10-batches-py`` with ``data_batch_1`` ... ``data_batch_5`` and
``test_batch``), without extracting anything to disk.  The batches are pickles;
they are loaded with an unpickler that accepts only what a CIFAR batch holds
(dicts, lists, bytes and numpy arrays), so a crafted archive cannot run code.
:func:`write_cifar10_archive` writes tiny archives in the same format for tests
and notebooks.

Seed 003's transform is ``ToTensor`` then ``Normalize(0.5, 0.5)``; its
prediction transform adds ``Resize(32)`` in front.  :class:`Cifar10` applies
them; items are ``float32 [3, 32, 32]`` in RGB order with an ``int64`` label.
"""

import io
import pickle
import tarfile
from pathlib import Path

import cv2
import numpy as np
import paddle

from paddle_palm.compat import NUMPY_CORE_NAMES, installed_numpy_core_module
from paddle_palm.errors import DataError, MissingFileError
from paddle_palm.fileio import atomic_path

#: Seed 003's class names, indexed by label.
CIFAR10_CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: The names stored in the official ``batches.meta``.
CIFAR10_META_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Batch file names of each split.
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
#: Folder inside the official archive.
CIFAR10_FOLDER = "cifar-10-batches-py"
#: Default archive name.
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
_MAX_MEMBER_BYTES = 512 * 1024 ** 2
_SIDE = 32

_ALLOWED_GLOBALS = {
    *((core + module, name) for core in NUMPY_CORE_NAMES
      for module, name in ((".multiarray", "_reconstruct"), (".multiarray", "scalar"), (".numeric", "_frombuffer"))),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global a CIFAR batch does not need."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(installed_numpy_core_module(module), name)


def _unpickle(data, where):
    try:
        return _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... from damaged data
        raise DataError(f"{where}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None


def _read_members(source, names):
    """``{name: bytes}`` for the wanted batch files of an archive or a folder."""
    source = Path(source)
    if not source.exists():
        raise MissingFileError(f"CIFAR-10 data not found: {source} (expected {CIFAR10_ARCHIVE} or its "
                               f"{CIFAR10_FOLDER} folder)")
    found = {}
    if source.is_dir():
        folder = source / CIFAR10_FOLDER if (source / CIFAR10_FOLDER).is_dir() else source
        for name in names:
            path = folder / name
            if not path.is_file():
                raise MissingFileError(f"CIFAR-10 batch not found: {path}")
            if path.stat().st_size > _MAX_MEMBER_BYTES:
                raise DataError(f"{path}: larger than any CIFAR-10 batch; refusing it")
            found[name] = path.read_bytes()
        return found
    try:
        with tarfile.open(source, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for name in names:
                member = members.get(name)
                if member is None:
                    raise DataError(f"{source}: no {name} inside; expected the CIFAR-10 python version "
                                    f"({CIFAR10_FOLDER}/data_batch_1..5, test_batch)")
                if member.size > _MAX_MEMBER_BYTES:
                    raise DataError(f"{source}: member {member.name} declares {member.size:,} bytes; refusing it")
                found[name] = tar.extractfile(member).read()
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{source}: damaged or not a tar.gz archive ({exc})") from None
    return found


def _decode_batch(batch, where):
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: expected a dict with b'data' and b'labels' (a CIFAR-10 python batch)")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE ** 2:
        raise DataError(f"{where}: data must be uint8 [N, 3072], got {getattr(data, 'dtype', type(data))} "
                        f"{getattr(data, 'shape', '')}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: labels must be a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: label out of range 0-9")
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(source, mode="train"):
    """Read one CIFAR-10 split: ``(images uint8 [N, 32, 32, 3] RGB, labels int64 [N])``.

    Args:
        source: ``cifar-10-python.tar.gz`` or the extracted folder (or the folder holding it).
        mode: ``"train"`` (``data_batch_1`` ... ``5``) or ``"test"`` (``test_batch``).

    Raises:
        MissingFileError: the archive, folder or a batch file is missing.
        DataError: a damaged archive or a batch that is not CIFAR-10 data.
    """
    if mode not in CIFAR10_BATCHES:
        raise DataError(f"unknown CIFAR-10 mode {mode!r}; expected 'train' or 'test'")
    names = CIFAR10_BATCHES[mode]
    members = _read_members(source, names)
    parts = [_decode_batch(_unpickle(members[n], f"{source}: {n}"), f"{source}: {n}") for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_cifar10_archive(path, train_images, train_labels, test_images, test_labels):
    """Write a CIFAR-10 "python version" ``tar.gz`` (5 training batches, a test batch, the meta file).

    Args:
        path: the archive to write (atomically).
        train_images, test_images: ``uint8 [N, 32, 32, 3]`` RGB.
        train_labels, test_labels: integers 0-9, ``[N]``.

    Returns:
        pathlib.Path: ``path``.
    """
    def batch(images, labels, label):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.shape[1:] != (_SIDE, _SIDE, 3):
            raise DataError(f"CIFAR-10 images must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}")
        if labels.shape != (len(images),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
            raise DataError("CIFAR-10 labels must be [N] integers 0-9")
        data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
        return {b"batch_label": label.encode(), b"labels": [int(x) for x in labels], b"data": data,
                b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(images))]}

    payloads = {}
    splits = np.array_split(np.arange(len(train_images)), 5)
    for i, idx in enumerate(splits, start=1):
        payloads[f"data_batch_{i}"] = batch(np.asarray(train_images)[idx], np.asarray(train_labels)[idx],
                                            f"training batch {i} of 5")
    payloads["test_batch"] = batch(test_images, test_labels, "testing batch 1 of 1")
    payloads["batches.meta"] = {b"label_names": [n.encode() for n in CIFAR10_META_NAMES],
                                b"num_cases_per_batch": max(len(s) for s in splits), b"num_vis": 3 * _SIDE ** 2}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w:gz", format=tarfile.GNU_FORMAT) as tar:
            for name, obj in payloads.items():
                data = pickle.dumps(obj, protocol=2)
                info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return path


def cifar10_transform(image, image_size=None):
    """Seed 003's transform of one ``uint8 [32, 32, 3]`` RGB image: (Resize,) ToTensor, Normalize(0.5, 0.5).

    Returns:
        numpy.ndarray: ``float32 [3, S, S]`` in [-1, 1].
    """
    if image_size is not None and image.shape[:2] != (image_size, image_size):
        image = cv2.resize(image, (int(image_size), int(image_size)), interpolation=cv2.INTER_LINEAR)
    img = np.transpose(image, (2, 0, 1)).astype(np.float32) / np.float32(255.0)
    return (img - np.float32(0.5)) / np.float32(0.5)


class Cifar10(paddle.io.Dataset):
    """CIFAR-10 from local files, transformed as in seed 003, for ``paddle.io.DataLoader``.

    Args:
        source: ``cifar-10-python.tar.gz`` or its extracted folder.
        mode: ``"train"`` or ``"test"``.
        image_size: resize to this side first (None keeps 32).

    Items are ``(float32 [3, S, S] RGB in [-1, 1], int64 label)``; ``CIFAR10_CLASSES[label]`` names it.
    """

    classes = CIFAR10_CLASSES

    def __init__(self, source, mode="train", image_size=None):
        super().__init__()
        self.images, self.labels = load_cifar10(source, mode)
        self.image_size = image_size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return cifar10_transform(self.images[index], self.image_size), np.int64(self.labels[index])
