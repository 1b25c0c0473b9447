"""PALM labels: from a training file's name, and from the validation sheet (SPEC 1.2).

Training images are labelled by the first letter of their file name: ``P``
(pathologic myopia) is 1, ``H`` (high myopia) and ``N`` (normal) are 0.  The
seeds (000, 001, 004) meet any other letter with ``raise('...')``, which raises
a ``TypeError`` about raising a string; here it is a :class:`LabelError` naming
the file.

Validation images are labelled by ``PM_Label_and_Fovea_Location.xlsx`` or its
csv copy ``labels.csv`` (columns ``ID,imgName,Label,Fovea_X,Fovea_Y``).
:func:`read_labels` reads either and checks what the readers rely on: the
``imgName`` and ``Label`` columns exist, every label is 0 or 1, every image name
is a plain file name and appears once.
"""

import os
from pathlib import Path

import numpy as np

from paddle_palm.errors import LabelError, MissingFileError

#: Label of each training file-name prefix (SPEC 1.2).
PREFIX_LABELS = {"P": 1, "H": 0, "N": 0}

#: Largest accepted uncompressed size of an xlsx label sheet (the real one is a few kB).
MAX_WORKBOOK_BYTES = 64 * 1024 ** 2

_EXCEL_SUFFIXES = (".xlsx", ".xlsm")
_CSV_SUFFIXES = (".csv", ".txt")


def label_from_filename(name):
    """The label of a training image, from the first letter of its file name (SPEC 1.2).

    Args:
        name: a file name or a path (only its last component counts), e.g. ``"P0001.jpg"``.

    Returns:
        int: 1 for ``P``, 0 for ``H`` and ``N``.

    Raises:
        LabelError: any other first letter (the check is case-sensitive, as in the course).
    """
    base = os.path.basename(os.fspath(name))
    prefix = base[:1]
    try:
        return PREFIX_LABELS[prefix]
    except KeyError:
        raise LabelError(
            f"{name}: unexpected file-name prefix {prefix!r}; a training image name must start with "
            f"H (high myopia, label 0), N (normal, label 0) or P (pathologic myopia, label 1)"
        ) from None


def _check_workbook_size(path):
    """Refuse a workbook whose parts declare more than :data:`MAX_WORKBOOK_BYTES` (an xlsx is a zip)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise LabelError(f"{path}: cannot read the label sheet as a xlsx workbook ({exc})") from None
    if total > MAX_WORKBOOK_BYTES:
        raise LabelError(f"{path}: the workbook expands to {total:,} bytes, over the {MAX_WORKBOOK_BYTES:,}-byte "
                         f"limit for a label sheet")


def _read_table(path):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in _EXCEL_SUFFIXES + _CSV_SUFFIXES:
        with open(path, "rb") as fh:
            head = fh.read(4)
        suffix = ".xlsx" if head.startswith(b"PK\x03\x04") else ".csv"
    dtypes = {"imgName": str, "Label": object}
    if suffix in _EXCEL_SUFFIXES:
        _check_workbook_size(path)
    try:
        if suffix in _EXCEL_SUFFIXES:
            return pd.read_excel(path, sheet_name=0, dtype=dtypes, engine="openpyxl")
        return pd.read_csv(path, dtype=dtypes, encoding="utf-8-sig")
    except Exception as exc:  # pandas, openpyxl, zipfile and codecs each raise their own types
        kind = "xlsx workbook" if suffix in _EXCEL_SUFFIXES else "csv file"
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise LabelError(f"{path}: cannot read the label sheet as a {kind} ({detail[:200]})") from None


def read_labels(path):
    """Read a validation label sheet (csv or xlsx) and check it (SPEC 1.2).

    Args:
        path: ``labels.csv`` or ``PM_Label_and_Fovea_Location.xlsx`` (or any csv/xlsx with the
            columns ``imgName`` and ``Label``).

    Returns:
        pandas.DataFrame: the sheet's rows in their order and all its columns; ``imgName`` as
        ``str`` (surrounding spaces removed) and ``Label`` as ``int64``.

    Raises:
        MissingFileError: the file does not exist.
        LabelError: the file cannot be parsed (or is an xlsx expanding beyond
            :data:`MAX_WORKBOOK_BYTES`), has no rows, lacks ``imgName``/``Label`` or has either
            twice, has a label that is
            empty or not 0/1, an empty image name or one with a folder in it, or an image named twice.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"label sheet not found: {path}")
    table = _read_table(path)
    table.columns = [str(c).strip() for c in table.columns]
    for column in ("imgName", "Label"):
        count = list(table.columns).count(column)
        if count > 1:  # e.g. "Label" and "Label " (the same name once the spaces are removed)
            raise LabelError(f"{path}: the header has {count} columns named {column}; expected one")
    missing = [c for c in ("imgName", "Label") if c not in table.columns]
    if missing:
        raise LabelError(
            f"{path}: missing column(s) {', '.join(missing)}; expected a header with imgName and Label "
            f"(found: {', '.join(map(str, table.columns)) or 'nothing'})"
        )
    if len(table) == 0:
        raise LabelError(f"{path}: the label sheet has no rows")
    table = table.reset_index(drop=True)

    names = []
    for i, value in enumerate(table["imgName"]):
        row = i + 2  # the header is row 1, as a spreadsheet counts
        if not isinstance(value, str) or not value.strip():
            raise LabelError(f"{path}, row {row}: empty imgName; expected an image file name such as V0001.jpg")
        value = value.strip()
        if "/" in value or "\\" in value or value in (".", "..") or "\x00" in value:
            raise LabelError(f"{path}, row {row}: imgName {value!r} is not a plain file name")
        names.append(value)

    raw = table["Label"]
    numeric = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    for i, number in enumerate(numeric):
        if number != number or number not in (0.0, 1.0):
            shown = raw.iloc[i]
            what = "empty (NaN)" if number != number and (shown is None or shown != shown) else repr(shown)
            raise LabelError(f"{path}, row {i + 2} ({names[i]}): label {what}; expected 0 or 1")

    seen = {}
    for i, name in enumerate(names):
        if name in seen:
            raise LabelError(
                f"{path}: image {name} is listed twice (rows {seen[name] + 2} and {i + 2}); "
                f"expected one row per image"
            )
        seen[name] = i

    table["imgName"] = pd.Series(names, index=table.index, dtype=object).astype(str)
    table["Label"] = numeric.astype(np.int64)
    return table


def labels_to_csv(table, path):
    """Write a label table as ``labels.csv`` (same columns, no index), atomically.

    Args:
        table: a DataFrame as returned by :func:`read_labels`.
        path: the csv to write.
    """
    from paddle_palm.fileio import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
