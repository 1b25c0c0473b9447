"""From the three PALM archives to a ready dataset folder (SPEC 1.1, 5), safely.

The course (seeds 000, 001, 004) runs ``unzip`` on ``training.zip``, then on the
nested ``PALM-Training400/PALM-Training400.zip``, then on ``validation.zip`` and
``valid_gt.zip``, and converts the xlsx to ``labels.csv`` with pandas.
:func:`prepare_palm` does all of it in one call and writes the dataset folder of
SPEC 5 (see :mod:`paddle_palm.data.layout`).

Which archives are needed
    ``training.zip`` is required.  ``validation.zip`` and ``valid_gt.zip`` are
    optional but go together: without them the folder holds the training images
    only (enough for ``tools/train.py`` with a validation split of its own), and
    one without the other is an error.  The annotation zips inside
    ``training.zip`` (lesion masks, disc and fovea positions) are not needed and
    are never extracted.

Safety
    * Every member name of every archive opened is checked: an absolute path, a
      drive letter, a ``..`` component, a NUL byte or a symbolic link refuses the
      whole archive (zip-slip).  Files are written under names chosen here
      (``<folder>/<base name>``), never under a member's own path.
    * Declared sizes are checked before extraction (at most
      :data:`MAX_MEMBER_BYTES` per member, :data:`MAX_TOTAL_BYTES` in all, and a
      compression ratio of at most :data:`MAX_COMPRESSION_RATIO` for large
      members), and extraction stops if a member yields more bytes than declared
      (zip bomb).
    * What one archive may write in all, its nested zip and what that holds
      included, is budgeted: at most :data:`MAX_EXPANSION` times the archive's
      size and never over :data:`MAX_TOTAL_BYTES` (the real PALM archives write
      about twice their size).  Each step reserves its declared bytes from the
      budget, and checks the free disk space, before it writes anything, so a
      bomb of many small members, nested or not, is refused before it fills the
      disk.
    * Everything is extracted into a hidden temporary folder inside ``out_dir``
      and moved into place only when all archives were read and checked, so a
      failure leaves ``out_dir`` as it was.  Dataset folders already in
      ``out_dir`` that an earlier call did not write are never replaced.
    * A missing, empty, damaged or wrong-content archive is an
      :class:`ArchiveError` naming it.

Idempotence
    A small stamp file (``.palm_prepared.json``) records the archives' sizes and
    modification times and the number of files written.  When it matches and the
    files are still there, a second call returns at once without writing.
"""

import json
import os
import re
import secrets
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

from paddle_palm.data.images import sniff_format
from paddle_palm.data.labels import label_from_filename, labels_to_csv, read_labels
from paddle_palm.data.layout import GT_DIR, LABELS_CSV, LABELS_XLSX, TRAIN_DIR, VALID_DIR, is_image_name, list_images
from paddle_palm.errors import ArchiveError, DataError, LabelError, MissingFileError
from paddle_palm.fileio import write_text_atomic
from paddle_palm.progress import progress_bar

#: The archive file names, as downloaded (SPEC 1.1).
TRAINING_ZIP = "training.zip"
VALIDATION_ZIP = "validation.zip"
VALID_GT_ZIP = "valid_gt.zip"
#: The zip inside ``training.zip`` that holds the training images.
NESTED_TRAINING_ZIP = "PALM-Training400.zip"
#: Largest accepted uncompressed member (the real nested training zip is a few hundred MB).
MAX_MEMBER_BYTES = 4 * 1024 ** 3
#: Largest accepted total of uncompressed members extracted from one archive.
MAX_TOTAL_BYTES = 16 * 1024 ** 3
#: Largest accepted ratio of declared to compressed size for members over 16 MB.
MAX_COMPRESSION_RATIO = 200
#: What extracting one archive may write in all (nested archives included), as a multiple of its size.
MAX_EXPANSION = 10
#: Free disk space kept beyond what an extraction step needs.
DISK_MARGIN_BYTES = 64 * 1024 ** 2
#: Stamp file written into the dataset folder when preparation is complete.
STAMP_NAME = ".palm_prepared.json"
_STAMP_VERSION = 1
_TMP_PREFIX = ".prepare_palm-"
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- zip helpers


def check_member_name(name, archive="archive"):
    """Refuse an unsafe member name (zip-slip); return its components.

    Args:
        name: the member's name as stored in the archive.
        archive: how to name the archive in the message.

    Returns:
        list[str]: the non-empty path components (``/`` and ``\\`` both separate).

    Raises:
        ArchiveError: an absolute path, a drive letter, a ``..`` component or a NUL byte.
    """
    if not isinstance(name, str) or "\x00" in name:
        raise ArchiveError(f"{archive}: unsafe member name {name!r}; refusing to extract")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract (zip-slip)")
    parts = [p for p in re.split(r"[\\/]", name) if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{archive}: member {name!r} points outside the target folder; refusing to extract "
                           f"(zip-slip)")
    return parts


def open_zip(path, label=None):
    """Open a zip archive for reading, with our error for a damaged or empty one.

    Args:
        path: the archive.
        label: how to name it in messages (default: the path).

    Returns:
        zipfile.ZipFile: the open archive (the caller closes it).

    Raises:
        ArchiveError: missing, not a file, empty, not a zip, or without members.
    """
    path = Path(path)
    label = label or str(path)
    if not path.exists():
        raise ArchiveError(f"{label}: archive not found")
    if not path.is_file():
        raise ArchiveError(f"{label}: not a file; expected a zip archive")
    if path.stat().st_size == 0:
        raise ArchiveError(f"{label}: empty file (0 bytes); expected a zip archive")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error, NotImplementedError) as exc:
        raise ArchiveError(f"{label}: damaged or not a zip archive ({exc})") from None
    if not zf.infolist():
        zf.close()
        raise ArchiveError(f"{label}: the archive is empty")
    return zf


def safe_members(zf, label):
    """Check every member of an open archive; return the file members (not folders).

    Raises:
        ArchiveError: an unsafe name, a symbolic link, an encrypted member, or declared sizes over
            the limits.
    """
    files = []
    for info in zf.infolist():
        if not info.filename:
            raise ArchiveError(f"{label}: a member has an empty name; expected named files (damaged archive?)")
        parts = check_member_name(info.filename, label)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ArchiveError(f"{label}: member {info.filename!r} is a symbolic link; refusing to extract")
        if info.is_dir() or not parts:
            continue
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{label}: member {info.filename!r} is encrypted; expected a plain zip archive")
        if info.file_size > MAX_MEMBER_BYTES:
            raise ArchiveError(f"{label}: member {info.filename!r} declares {info.file_size:,} bytes, over the "
                               f"{MAX_MEMBER_BYTES:,}-byte limit (zip bomb?)")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 16 * 1024 ** 2 and ratio > MAX_COMPRESSION_RATIO:
            raise ArchiveError(f"{label}: member {info.filename!r} expands {ratio:.0f} times (zip bomb?); "
                               f"refusing to extract")
        files.append(info)
    return files


def _ignored(parts):
    """Members that are never dataset content: macOS resource forks and hidden files."""
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def extract_member(zf, info, dest, label):
    """Copy one member to ``dest``, stopping if it yields more bytes than it declares.

    Raises:
        ArchiveError: the member's data is damaged (bad CRC, bad compressed stream) or too long.
    """
    written = 0
    with open(dest, "wb") as out:
        try:
            with zf.open(info) as src:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > info.file_size:
                        raise ArchiveError(f"{label}: member {info.filename!r} yields more data than it declares "
                                           f"({info.file_size:,} bytes); refusing it (zip bomb?)")
                    out.write(chunk)
        except ArchiveError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError,
                struct.error) as exc:
            raise ArchiveError(f"{label}: member {info.filename!r} is damaged ({exc})") from None
    if written != info.file_size:
        raise ArchiveError(f"{label}: member {info.filename!r} is truncated ({written:,} of {info.file_size:,} bytes)")


def _check_total(files, label):
    total = sum(info.file_size for info in files)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"{label}: members declare {total:,} bytes in all, over the {MAX_TOTAL_BYTES:,}-byte "
                           f"limit (zip bomb?)")


class ExtractionBudget:
    """The bytes one archive may still write (nested archives included), and the disk-space check.

    Args:
        archive: the archive on disk (its size sets the budget).
        folder: where the bytes are written (for the free-space check).
    """

    def __init__(self, archive, folder):
        self.archive = str(archive)
        self.folder = folder
        self.limit = min(MAX_TOTAL_BYTES, MAX_EXPANSION * Path(archive).stat().st_size)
        self.reserved = 0

    def reserve(self, nbytes, label):
        """Take ``nbytes`` (declared sizes about to be written) from the budget, before writing them.

        Raises:
            ArchiveError: over the archive's budget (zip bomb), or not enough free disk space.
        """
        if self.reserved + nbytes > self.limit:
            raise ArchiveError(f"{label}: extracting it would write {self.reserved + nbytes:,} bytes in all, over "
                               f"the budget of {self.limit:,} bytes for {self.archive} ({MAX_EXPANSION} times its "
                               f"size; zip bomb?); refusing to extract")
        free = shutil.disk_usage(self.folder).free
        if nbytes + DISK_MARGIN_BYTES > free:
            raise ArchiveError(f"{label}: extracting it needs {nbytes:,} bytes, but {self.folder} has only {free:,} "
                               f"bytes free")
        self.reserved += nbytes


def _extract_images(zf, members, folder, label, progress, check_prefix, budget=None):
    """Extract image members flat into ``folder``; return the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    if budget is not None:
        budget.reserve(sum(info.file_size for info in members), label)
    written = set()
    for info in progress_bar(members, desc=f"extracting {Path(label.split(' > ')[-1]).name}", unit="file",
                     disable=not progress, leave=False):
        name = check_member_name(info.filename, label)[-1]
        if check_prefix:
            try:
                label_from_filename(name)
            except LabelError:
                raise ArchiveError(f"{label}: member {info.filename!r} is not a PALM training image; expected "
                                   f"names starting with H, N or P") from None
        if name in written:
            raise ArchiveError(f"{label}: two members are named {name}; expected unique image names")
        dest = folder / name
        extract_member(zf, info, dest, label)
        with open(dest, "rb") as fh:
            if sniff_format(fh.read(16)) is None:
                raise ArchiveError(f"{label}: member {info.filename!r} is not a JPEG/PNG/BMP image")
        written.add(name)
    return written


def _image_members(files):
    members = []
    for info in files:
        parts = check_member_name(info.filename)
        if not _ignored(parts) and is_image_name(parts[-1]):
            members.append(info)
    return members


# --------------------------------------------------------------------------- the three archives


def _prepare_training(archive, tmp, progress):
    label = str(archive)
    budget = ExtractionBudget(archive, tmp)
    with open_zip(archive) as zf:
        files = safe_members(zf, label)
        _check_total(files, label)
        nested = [i for i in files if not _ignored(check_member_name(i.filename))
                  and check_member_name(i.filename)[-1].lower() == NESTED_TRAINING_ZIP.lower()]
        if len(nested) > 1:
            raise ArchiveError(f"{label}: {len(nested)} members are named {NESTED_TRAINING_ZIP}; expected one")
        if nested:
            inner_path = tmp / "_nested" / NESTED_TRAINING_ZIP
            inner_path.parent.mkdir(parents=True, exist_ok=True)
            budget.reserve(nested[0].file_size, label)
            extract_member(zf, nested[0], inner_path, label)
            inner_label = f"{label} > {nested[0].filename}"
            with open_zip(inner_path, inner_label) as inner:
                inner_files = safe_members(inner, inner_label)
                _check_total(inner_files, inner_label)
                members = _image_members(inner_files)
                if not members:
                    raise ArchiveError(f"{inner_label}: no training images inside; expected "
                                       f"{TRAIN_DIR}/H*.jpg, N*.jpg, P*.jpg")
                names = _extract_images(inner, members, tmp / TRAIN_DIR, inner_label, progress, True, budget)
            shutil.rmtree(tmp / "_nested")
            return names
        members = _image_members(files)
        if not members:
            raise ArchiveError(f"{label}: no training images found; expected {TRAIN_DIR}/{NESTED_TRAINING_ZIP} "
                               f"holding {TRAIN_DIR}/*.jpg (the layout of the PALM training.zip)")
        return _extract_images(zf, members, tmp / TRAIN_DIR, label, progress, True, budget)


def _prepare_validation(archive, tmp, progress):
    label = str(archive)
    with open_zip(archive) as zf:
        files = safe_members(zf, label)
        _check_total(files, label)
        members = _image_members(files)
        if not members:
            raise ArchiveError(f"{label}: no validation images found; expected {VALID_DIR}/V0001.jpg ...")
        return _extract_images(zf, members, tmp / VALID_DIR, label, progress, False, ExtractionBudget(archive, tmp))


def _prepare_labels(archive, tmp, image_names):
    label = str(archive)
    with open_zip(archive) as zf:
        files = safe_members(zf, label)
        sheets = [i for i in files if not _ignored(check_member_name(i.filename))
                  and check_member_name(i.filename)[-1].lower().endswith(".xlsx")]
        exact = [i for i in sheets if check_member_name(i.filename)[-1] == LABELS_XLSX]
        chosen = exact or sheets
        if len(chosen) != 1:
            found = "none" if not chosen else ", ".join(i.filename for i in chosen)
            raise ArchiveError(f"{label}: expected one label sheet {GT_DIR}/{LABELS_XLSX}, found {found}")
        gt = tmp / GT_DIR
        gt.mkdir(parents=True, exist_ok=True)
        xlsx = gt / LABELS_XLSX
        ExtractionBudget(archive, tmp).reserve(chosen[0].file_size, label)
        extract_member(zf, chosen[0], xlsx, label)
    try:
        table = read_labels(xlsx)
    except LabelError as exc:
        text = str(exc).replace(str(xlsx), chosen[0].filename)
        raise ArchiveError(f"{label}: bad label sheet: {text}") from None
    absent = [n for n in table["imgName"] if n not in image_names]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise ArchiveError(f"{label}: the label sheet names {absent[0]}{more}, not found in {VALIDATION_ZIP}; "
                           f"expected the sheet that belongs to these validation images")
    labels_to_csv(table, gt / LABELS_CSV)
    shutil.copyfile(gt / LABELS_CSV, tmp / LABELS_CSV)
    return len(table)


# --------------------------------------------------------------------------- the public entry points


def _archives(archives_dir):
    archives_dir = Path(archives_dir)
    if not archives_dir.is_dir():
        raise MissingFileError(f"archive folder not found: {archives_dir}")
    training = archives_dir / TRAINING_ZIP
    validation = archives_dir / VALIDATION_ZIP
    valid_gt = archives_dir / VALID_GT_ZIP
    if not training.exists():
        raise ArchiveError(f"{training}: archive not found; expected {TRAINING_ZIP} (and optionally "
                           f"{VALIDATION_ZIP} with {VALID_GT_ZIP}) in {archives_dir}")
    if validation.exists() != valid_gt.exists():
        missing, present = (valid_gt, validation) if validation.exists() else (validation, valid_gt)
        raise ArchiveError(f"{missing}: archive not found; {present.name} needs it ({VALIDATION_ZIP} and "
                           f"{VALID_GT_ZIP} go together)")
    used = {"training": training}
    if validation.exists():
        used.update(validation=validation, valid_gt=valid_gt)
    return used


def _fingerprint(used):
    prints = {}
    for key, path in used.items():
        st = path.stat()
        prints[key] = {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return prints


def _read_stamp(out_dir):
    try:
        return json.loads((Path(out_dir) / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_prepared(archives_dir, out_dir):
    """True when ``out_dir`` already holds a complete preparation of these archives (nothing to do)."""
    try:
        used = _archives(archives_dir)
    except (ArchiveError, MissingFileError):
        return False
    stamp = _read_stamp(out_dir)
    if not isinstance(stamp, dict) or stamp.get("version") != _STAMP_VERSION:
        return False
    if stamp.get("archives") != _fingerprint(used):
        return False
    out_dir = Path(out_dir)
    try:
        for folder, count in stamp.get("counts", {}).items():
            if len(list_images(out_dir / folder)) != count:
                return False
        for name in stamp.get("files", []):
            if not (out_dir / name).is_file():
                return False
    except (OSError, MissingFileError):
        return False
    return True


def remove_abandoned_work_folders(folder, prefix):
    """Delete ``<prefix><pid>-*`` work folders left in ``folder`` by processes that no longer run.

    A killed preparation leaves its hidden work folder behind; the next run removes it.  Only
    POSIX systems can tell whether a process id is alive, so elsewhere nothing is removed.
    """
    if os.name != "posix":
        return
    for entry in Path(folder).glob(prefix + "*"):
        match = re.match(re.escape(prefix) + r"(\d+)-", entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def prepare_palm(archives_dir, out_dir, *, progress=False):
    """Unpack the PALM archives into a dataset folder (SPEC 1.1, 5).

    Args:
        archives_dir: folder holding ``training.zip`` and, optionally, ``validation.zip`` with
            ``valid_gt.zip``, as downloaded.
        out_dir: the dataset folder to write (created if needed).  It receives
            ``PALM-Training400/*.jpg`` (flattened from the nested zip), ``PALM-Validation400/*.jpg``,
            ``PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx`` and ``labels.csv`` (the same
            rows and columns), a copy of ``labels.csv`` at its top (where the course keeps it) and
            the stamp file.
        progress: show tqdm progress bars on stderr while extracting.

    Returns:
        pathlib.Path: ``out_dir``.

    Raises:
        MissingFileError: ``archives_dir`` does not exist.
        ArchiveError: an archive is missing, empty, damaged, unsafe or has the wrong content
            (message names it); ``out_dir`` is left as it was.
        DataError: ``out_dir`` already holds a dataset folder that this function did not write
            (it is never replaced).
    """
    used = _archives(archives_dir)
    out_dir = Path(out_dir)
    if is_prepared(archives_dir, out_dir):
        return out_dir
    if out_dir.is_dir() and not (out_dir / STAMP_NAME).exists():
        foreign = [name for name in (TRAIN_DIR, VALID_DIR, GT_DIR, LABELS_CSV) if (out_dir / name).exists()]
        if foreign:
            raise DataError(f"{out_dir / foreign[0]} already exists and was not written by prepare_palm; "
                            f"choose a new output folder (or remove it) so that nothing of yours is replaced")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_work_folders(out_dir, _TMP_PREFIX)
    tmp = out_dir / f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        counts = {TRAIN_DIR: len(_prepare_training(used["training"], tmp, progress))}
        entries = [TRAIN_DIR]
        files = []
        if "validation" in used:
            names = _prepare_validation(used["validation"], tmp, progress)
            counts[VALID_DIR] = len(names)
            _prepare_labels(used["valid_gt"], tmp, names)
            entries += [VALID_DIR, GT_DIR, LABELS_CSV]
            files = [f"{GT_DIR}/{LABELS_XLSX}", f"{GT_DIR}/{LABELS_CSV}", LABELS_CSV]
        old = tmp / "_replaced"
        old.mkdir()
        (out_dir / STAMP_NAME).unlink(missing_ok=True)  # an interrupted commit must not look complete
        for entry in entries:
            target = out_dir / entry
            if target.exists() or target.is_symlink():
                os.replace(target, old / entry)
            os.replace(tmp / entry, target)
        stamp = {"version": _STAMP_VERSION, "archives": _fingerprint(used), "counts": counts, "files": files}
        write_text_atomic(out_dir / STAMP_NAME, json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
