"""Seed 004's list files (``train.txt`` / ``valid.txt``) and the dataset that reads them (SPEC 1.2, 1.4).

A list file has one sample per line: the image path, a space, the integer
label.  Seed 004 splits each line on every space, so a path with a space in it
breaks; :func:`read_list_file` splits on the last space (or tab) instead, and
what :func:`write_list_file` writes reads back unchanged.  Seed 004 also builds its validation set with the training flag on
(random flips at validation); :class:`ListFileDataset` flips only when
``train=True``.
"""

import os
from pathlib import Path

import numpy as np
import paddle

from paddle_palm.data.dataset import check_image_files, training_samples, validation_samples
from paddle_palm.data.images import read_image_rgb_pil
from paddle_palm.data.transforms import Augmentation, check_size, normalize_b, resize_b
from paddle_palm.errors import DataError, LabelError, MissingFileError
from paddle_palm.fileio import atomic_path


def format_list_line(path, label):
    """One list-file line (without the newline) for ``(path, label)``.

    Raises:
        LabelError: a path that could not be read back unchanged (empty, with a line break,
            ending with a space or tab, with a leading byte-order mark, or not encodable as
            UTF-8), or a label that is not a non-negative int.
    """
    path = os.fspath(path)
    if not path or "\n" in path or "\r" in path or path.startswith("\ufeff") or path[-1] in " \t":
        raise LabelError(f"cannot write image path {path!r} to a list file; expected a non-empty single-line "
                         f"path that does not end with a space or tab")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise LabelError(f"cannot write image path {path!r} to a list file; it is not valid Unicode text") from None
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise LabelError(f"{path}: label {label!r} cannot be written; expected a non-negative integer")
    return f"{path} {int(label)}"


def write_list_file(samples, path):
    """Write ``(image path, label)`` pairs as a list file, one ``path label`` line each, atomically.

    Args:
        samples: iterable of ``(path, label)``.
        path: the list file to write (UTF-8).

    Returns:
        pathlib.Path: ``path``.
    """
    lines = [format_list_line(p, label) + "\n" for p, label in samples]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
    return Path(path)


def parse_list_line(line, where="list file"):
    """Parse one list-file line into ``(path, label)``; None for a blank line.

    The label is what follows the last space or tab; the path is everything before that run
    of spaces and tabs, so it may contain spaces (but not end with one: :func:`write_list_file`
    refuses such paths).  Whitespace at the end of the line (``\r`` of Windows line ends,
    stray spaces) is ignored.

    Raises:
        LabelError: no separator, an empty path, or a label that is not a non-negative integer.
    """
    text = line.rstrip()
    if not text.strip():
        return None
    cut = max(text.rfind(" "), text.rfind("\t"))
    if cut < 0:
        raise LabelError(f"{where}: expected '<image path> <label>', got {text[:200]!r}")
    path, label = text[:cut].rstrip(" \t"), text[cut + 1:]
    if not path:
        raise LabelError(f"{where}: empty image path in {text[:200]!r}")
    if not (label.isascii() and label.isdigit()):
        raise LabelError(f"{where}: label {label[:50]!r} of {path[:200]!r} is not a non-negative integer")
    return path, int(label)


def read_list_file(path):
    """Read a list file into ``[(image path, label), ...]`` (paths as written).

    Raises:
        MissingFileError: the file does not exist.
        LabelError: a malformed line (the message names the file and the line number) or a file
            that is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"list file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    samples = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): paths may hold \x85, \u2028
        parsed = parse_list_line(line, f"{path}, line {number}")
        if parsed is not None:
            samples.append(parsed)
    return samples


def write_palm_list_files(data_dir, out_dir):
    """Seed 004's first step: write ``train.txt`` and ``valid.txt`` for a dataset folder.

    Paths are absolute; training labels come from the file names, validation labels from the
    sheet.  ``valid.txt`` is written only when the folder has validation images and labels.

    Returns:
        dict: ``{"train": path, "valid": path or None}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = [(str(Path(p).resolve()), label) for p, label in training_samples(data_dir)]
    result = {"train": write_list_file(train, out_dir / "train.txt"), "valid": None}
    try:
        valid = [(str(Path(p).resolve()), label) for p, label in validation_samples(data_dir)]
    except MissingFileError:
        return result
    result["valid"] = write_list_file(valid, out_dir / "valid.txt")
    return result


class ListFileDataset(paddle.io.Dataset):
    """Seed 004's ``LoadData``, fixed: images listed in a list file, preprocessing B (SPEC 1.4).

    Args:
        list_file: the list file.
        train: random horizontal and vertical flips (seed 004's training transforms); False gives
            the validation transforms.
        image_size: side of the square images (224 in seed 004).
        root: folder that relative paths in the list file are relative to (default: the list
            file's folder).
        seed: seed of the flips (``(seed, epoch, index)`` seeds each item); None: fresh randomness.

    Items are ``(float32 [3, S, S] RGB in [-1, 1], int64 label)``.

    Raises:
        MissingFileError: the list file or an image it names is missing.
        LabelError: a malformed line.
    """

    def __init__(self, list_file, train=False, image_size=224, root=None, seed=None):
        super().__init__()
        self.list_file = Path(list_file)
        self.train = bool(train)
        self.image_size = check_size(image_size)
        self.seed = None if seed is None else int(seed)
        self.epoch = 0
        base = Path(root) if root is not None else self.list_file.parent
        entries = read_list_file(self.list_file)
        if not entries:
            raise DataError(f"{self.list_file}: the list file names no images")
        self.samples = [(str(p if Path(p).is_absolute() else base / p), label) for p, label in entries]
        missing = [p for p, _ in self.samples if not Path(p).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise MissingFileError(f"image named in {self.list_file} not found: {missing[0]}{more}")
        check_image_files(p for p, _ in self.samples)
        self._augmentation = Augmentation() if self.train else None

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch):
        """Set the epoch used with ``seed`` to seed each item's flips."""
        self.epoch = int(epoch)

    def __getitem__(self, index):
        """Item ``index`` (or an ``(epoch, index)`` pair from :class:`~paddle_palm.data.dataset.EpochSampler`)."""
        epoch = self.epoch
        if isinstance(index, (tuple, list)):
            epoch, index = index
        path, label = self.samples[int(index)]
        rgb = resize_b(read_image_rgb_pil(path), self.image_size)
        if self._augmentation is not None:
            seed = None if self.seed is None else [self.seed, int(epoch), int(index)]
            rng = np.random.default_rng(seed)
            rgb = self._augmentation(rgb, rng)
        return normalize_b(rgb), np.int64(label)
