"""Crash-safe file writing.

Anything the project writes that a user may rely on later (checkpoints,
``labels.csv``, metrics, plots, exported models) goes through
:func:`atomic_path`: the content is written to a temporary file in the same
folder and renamed over the target only when complete, so a crash or a
SIGKILL leaves either the old file or the new one, never half of one.
"""

import contextlib
import os
import tempfile

#: First characters that make a spreadsheet (Excel, LibreOffice) read a CSV cell as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text):
    """A CSV text cell that a spreadsheet shows as text, never runs as a formula.

    A file name such as ``=HYPERLINK(...)`` or ``@SUM(...)`` would otherwise be
    evaluated when the CSV is opened; a leading apostrophe makes it plain text.
    """
    text = str(text)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Args:
        path: the final file name.

    Yields:
        str: a path in the same directory to write the content to.  On an
        exception the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    # mkstemp creates the file 0600; give the final file the usual mode (0666 minus the umask).
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(exc, OSError) and not exc.filename and exc.errno is not None:
            # A full disk fails in write() or fsync(), whose error names no file: name the one being written.
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def _umask():
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding) as fh:
            fh.write(text)


def make_parent_dirs(path):
    """Create the folder that will hold ``path``, with a clear error when that cannot be.

    Raises:
        ConfigError: a part of the folder path exists and is a file, not a folder.
    """
    from paddle_palm.errors import ConfigError

    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    probe = parent
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise ConfigError(f"cannot write {path}: {probe} is a file, not a folder")
    os.makedirs(parent, exist_ok=True)
    return parent
