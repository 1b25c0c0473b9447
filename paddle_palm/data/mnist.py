"""MNIST from local files in the standard idx format (SPEC 1.5, seed 002).

Seed 002 downloads MNIST with torchvision; nothing can be downloaded here, so
this module reads the four standard files from a folder
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
``.gz``; gzip is recognised from the content) and writes files in the same
format (:func:`write_mnist_files`) so that tests and notebooks can make tiny ones.

The seed's transform is ``ToTensor`` (``/ 255``), ``Normalize(0.1307, 0.3081)``,
then ``Resize((224, 224))`` on the normalised tensor (bilinear); :class:`MNIST`
applies the same steps, with the size configurable (None keeps 28 x 28).
"""

import gzip
import struct
from pathlib import Path

import cv2
import numpy as np
import paddle

from paddle_palm.errors import DataError, MissingFileError
from paddle_palm.fileio import atomic_path

#: Mean and standard deviation of seed 002's Normalize.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: File-name prefixes of the two standard splits.
MNIST_PREFIXES = {"train": "train", "test": "t10k"}
#: Largest accepted decompressed file (the real training images are 47 MB).
MAX_DECOMPRESSED_BYTES = 1 << 30
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_MAX_ITEMS = 10_000_000


def _read_bytes(path):
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"MNIST file not found: {path}")
    with open(path, "rb") as fh:
        compressed = fh.read(2) == b"\x1f\x8b"
    if not compressed:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: damaged gzip file ({exc})") from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise DataError(f"{path}: decompresses to more than {MAX_DECOMPRESSED_BYTES:,} bytes; refusing it")
    return data


def read_idx_images(path):
    """Read an idx3 image file (magic 2051) into ``uint8 [N, rows, cols]``.

    Raises:
        MissingFileError: the file does not exist.
        DataError: wrong magic number, or fewer bytes than the header declares.
    """
    data = _read_bytes(path)
    if len(data) < 16:
        raise DataError(f"{path}: too short for an MNIST image file (expected a 16-byte idx3 header)")
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != _IMAGES_MAGIC:
        raise DataError(f"{path}: magic number {magic}; expected {_IMAGES_MAGIC} (an idx3 MNIST image file)")
    if count > _MAX_ITEMS or rows * cols == 0 or rows > 4096 or cols > 4096:
        raise DataError(f"{path}: implausible header ({count} images of {rows}x{cols})")
    needed = 16 + count * rows * cols
    if len(data) < needed:
        raise DataError(f"{path}: truncated ({len(data)} bytes; the header declares {needed})")
    return np.frombuffer(data, dtype=np.uint8, count=count * rows * cols, offset=16).reshape(count, rows, cols).copy()


def read_idx_labels(path):
    """Read an idx1 label file (magic 2049) into ``int64 [N]``.

    Raises:
        MissingFileError: the file does not exist.
        DataError: wrong magic number, or fewer bytes than the header declares.
    """
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataError(f"{path}: too short for an MNIST label file (expected an 8-byte idx1 header)")
    magic, count = struct.unpack(">II", data[:8])
    if magic != _LABELS_MAGIC:
        raise DataError(f"{path}: magic number {magic}; expected {_LABELS_MAGIC} (an idx1 MNIST label file)")
    if count > _MAX_ITEMS:
        raise DataError(f"{path}: implausible header ({count} labels)")
    if len(data) < 8 + count:
        raise DataError(f"{path}: truncated ({len(data)} bytes; the header declares {8 + count})")
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=8).astype(np.int64)


def mnist_paths(root, mode="train"):
    """The image and label files of one split in ``root`` (``.gz`` or not, whichever exists).

    Raises:
        DataError: unknown mode.
        MissingFileError: a file is missing (the message lists both names tried).
    """
    if mode not in MNIST_PREFIXES:
        raise DataError(f"unknown MNIST mode {mode!r}; expected 'train' or 'test'")
    root = Path(root)
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        name = f"{MNIST_PREFIXES[mode]}-{kind}"
        candidates = [root / name, root / (name + ".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise MissingFileError(f"MNIST file not found: {candidates[0]} (or {candidates[1].name})")
        found.append(path)
    return tuple(found)


def load_mnist(root=None, mode="train", image_path=None, label_path=None):
    """Read one MNIST split: ``(images uint8 [N, 28, 28], labels int64 [N])``.

    Args:
        root: folder with the standard file names (see :func:`mnist_paths`).
        mode: ``"train"`` or ``"test"``.
        image_path, label_path: explicit files instead of ``root``.

    Raises:
        MissingFileError, DataError: missing or malformed files, or different counts.
    """
    if image_path is None or label_path is None:
        if root is None:
            raise DataError("give either root or both image_path and label_path")
        image_path, label_path = mnist_paths(root, mode)
    images, labels = read_idx_images(image_path), read_idx_labels(label_path)
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{label_path}: label {int(labels.max())} out of range; expected digits 0-9")
    return images, labels


def write_mnist_files(directory, images, labels, mode="train", compress=True):
    """Write images and labels as a standard MNIST split (idx3 + idx1 files), atomically.

    Args:
        directory: folder to write into (created if needed).
        images: ``uint8`` array ``[N, rows, cols]``.
        labels: integer array ``[N]`` of digits 0-9.
        mode: ``"train"`` (``train-*``) or ``"test"`` (``t10k-*``).
        compress: write ``.gz`` files (as distributed) or raw ones.

    Returns:
        tuple: ``(image_path, label_path)``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"MNIST images must be uint8 [N, rows, cols], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"MNIST labels must be [N] with N = {len(images)}, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 255):
        raise DataError("MNIST labels must fit in one byte")
    if mode not in MNIST_PREFIXES:
        raise DataError(f"unknown MNIST mode {mode!r}; expected 'train' or 'test'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    payloads = {
        "images-idx3-ubyte": struct.pack(">IIII", _IMAGES_MAGIC, n, rows, cols) + images.tobytes(),
        "labels-idx1-ubyte": struct.pack(">II", _LABELS_MAGIC, n) + labels.astype(np.uint8).tobytes(),
    }
    paths = []
    for kind, payload in payloads.items():
        path = directory / (f"{MNIST_PREFIXES[mode]}-{kind}" + (".gz" if compress else ""))
        data = gzip.compress(payload, mtime=0) if compress else payload
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        paths.append(path)
    return tuple(paths)


def mnist_transform(image, image_size=224):
    """Seed 002's transform of one ``uint8 [rows, cols]`` digit: ToTensor, Normalize, Resize.

    Returns:
        numpy.ndarray: ``float32 [1, S, S]`` (``S = image_size``, or the input size when None).
    """
    img = image.astype(np.float32) / np.float32(255.0)
    img = (img - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    if image_size is not None and (img.shape[0], img.shape[1]) != (image_size, image_size):
        img = cv2.resize(img, (int(image_size), int(image_size)), interpolation=cv2.INTER_LINEAR)
    return img[None, :, :]


class MNIST(paddle.io.Dataset):
    """MNIST digits from local files, transformed as in seed 002, for ``paddle.io.DataLoader``.

    Args:
        root: folder with the standard files (or give ``image_path`` and ``label_path``).
        mode: ``"train"`` or ``"test"``.
        image_size: side of the returned images (224 in seed 002; None keeps 28).
        image_path, label_path: explicit files.

    Items are ``(float32 [1, S, S], int64 label)``.
    """

    def __init__(self, root=None, mode="train", image_size=224, image_path=None, label_path=None):
        super().__init__()
        self.images, self.labels = load_mnist(root, mode, image_path, label_path)
        self.image_size = image_size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return mnist_transform(self.images[index], self.image_size), np.int64(self.labels[index])
