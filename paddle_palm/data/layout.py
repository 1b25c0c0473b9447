"""The PALM dataset folder: its fixed names and how to find things in it (SPEC 5).

A dataset folder, as written by :func:`paddle_palm.data.prepare_palm` and
:func:`paddle_palm.data.synthetic.make_synthetic_palm` and as ``../shared/palm``
is laid out::

    <data_dir>/
        PALM-Training400/H0001.jpg ... N0001.jpg ... P0001.jpg
        PALM-Validation400/V0001.jpg ...
        PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx
        PALM-Validation-GT/labels.csv
        labels.csv                      (the same rows; where the course keeps it)

The course itself unzips the nested training archive one level deeper
(``PALM-Training400/PALM-Training400/*.jpg``, seeds 000/001); :func:`training_dir`
accepts that layout too.
"""

import os
from pathlib import Path

from paddle_palm.data.labels import read_labels
from paddle_palm.errors import MissingFileError

#: Folder of the 400 training images, labelled by the first letter of their names (SPEC 1.2).
TRAIN_DIR = "PALM-Training400"
#: Folder of the validation images ``V0001.jpg`` ... (SPEC 1.1).
VALID_DIR = "PALM-Validation400"
#: Folder of the validation ground truth (SPEC 1.1).
GT_DIR = "PALM-Validation-GT"
#: The validation label sheet as distributed in ``valid_gt.zip``.
LABELS_XLSX = "PM_Label_and_Fovea_Location.xlsx"
#: The csv copy of the sheet that the course readers use (seeds 000/001).
LABELS_CSV = "labels.csv"
#: Columns of the label sheet (SPEC 1.2).
LABEL_COLUMNS = ("ID", "imgName", "Label", "Fovea_X", "Fovea_Y")
#: File extensions treated as images when listing a folder (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def is_image_name(name):
    """True for a visible file name with an image extension (``.jpg``, ``.png``, ...)."""
    name = os.path.basename(os.fspath(name))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder):
    """The image files directly inside ``folder``, sorted by name.

    Hidden files (``.DS_Store``, ``._H0001.jpg``) and files with other extensions
    (README, annotation zips) are left out.

    Raises:
        MissingFileError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p.name))


def training_dir(data_dir):
    """The folder holding the training images of a dataset folder.

    ``<data_dir>/PALM-Training400``, or the course layout's
    ``<data_dir>/PALM-Training400/PALM-Training400`` when the images are there.

    Raises:
        MissingFileError: neither exists.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MissingFileError(f"dataset folder not found: {data_dir}")
    folder = data_dir / TRAIN_DIR
    if not folder.is_dir():
        raise MissingFileError(
            f"training folder not found: {folder} (expected a dataset folder with {TRAIN_DIR}/ and {VALID_DIR}/; "
            f"run tools/prepare_data.py on the PALM archives first)"
        )
    nested = folder / TRAIN_DIR
    if nested.is_dir() and not any(is_image_name(n) for n in os.listdir(folder)):
        return nested
    return folder


def validation_dir(data_dir):
    """``<data_dir>/PALM-Validation400``.

    Raises:
        MissingFileError: the folder does not exist.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MissingFileError(f"dataset folder not found: {data_dir}")
    folder = data_dir / VALID_DIR
    if not folder.is_dir():
        raise MissingFileError(f"validation folder not found: {folder} (expected a dataset folder with {TRAIN_DIR}/ and {VALID_DIR}/)")
    return folder


def label_file_candidates(data_dir):
    """Where a dataset folder may keep its validation labels, in the order they are tried."""
    data_dir = Path(data_dir)
    return [data_dir / GT_DIR / LABELS_CSV, data_dir / LABELS_CSV, data_dir / GT_DIR / LABELS_XLSX]


def find_labels_file(data_dir):
    """The validation label sheet of a dataset folder: ``labels.csv`` or the xlsx.

    Raises:
        MissingFileError: none of :func:`label_file_candidates` exists.
    """
    candidates = label_file_candidates(data_dir)
    for path in candidates:
        if path.is_file():
            return path
    raise MissingFileError(
        "validation labels not found; looked for " + ", ".join(str(p) for p in candidates)
    )


def describe_dataset(data_dir):
    """Counts that summarise a dataset folder (for the command-line tools and notebooks).

    Returns:
        dict: ``train`` (number of training images), ``train_by_prefix`` (``{"H": n, "N": n, "P": n}``
        and any other first letter found), ``train_positive``, ``valid`` (validation images),
        ``label_rows`` and ``label_positive`` (rows of the label sheet; 0 when there is none),
        ``labels_file`` (its path or None).
    """
    data_dir = Path(data_dir)
    summary = {"data_dir": str(data_dir), "train": 0, "train_by_prefix": {}, "train_positive": 0,
               "valid": 0, "label_rows": 0, "label_positive": 0, "labels_file": None}
    if (data_dir / TRAIN_DIR).is_dir():
        names = [p.name for p in list_images(training_dir(data_dir))]
        summary["train"] = len(names)
        for prefix in ("H", "N", "P"):
            summary["train_by_prefix"][prefix] = 0
        for name in names:
            summary["train_by_prefix"][name[0]] = summary["train_by_prefix"].get(name[0], 0) + 1
        summary["train_positive"] = summary["train_by_prefix"].get("P", 0)
    if (data_dir / VALID_DIR).is_dir():
        summary["valid"] = len(list_images(data_dir / VALID_DIR))
    try:
        labels_file = find_labels_file(data_dir)
    except MissingFileError:
        labels_file = None
    if labels_file is not None:
        table = read_labels(labels_file)
        summary["labels_file"] = str(labels_file)
        summary["label_rows"] = int(len(table))
        summary["label_positive"] = int(table["Label"].sum())
    return summary
