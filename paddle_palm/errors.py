"""The project's own error types.

Every error a user can cause with bad input (a damaged archive, an unreadable
image, a malformed label sheet, a checkpoint of another architecture, a bad
command-line value) is raised as one of these, where the bad value is first
seen, with a message that names the file or value and says what was expected.
The command-line tools turn them into one line on stderr and a non-zero exit
(:func:`paddle_palm.cli.run`).

Each type also derives from the built-in it refines (``ValueError``,
``FileNotFoundError``), so ``except ValueError`` keeps working for callers who
do not know this module.
"""


def short_message(exc, limit=300):
    """The message of ``exc`` (a library's, often long and multi-line) on one line of at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


class PalmError(Exception):
    """Base class of every error raised on purpose by paddle_palm."""


class DataError(PalmError, ValueError):
    """A data file exists but its content is not what was expected."""


class ArchiveError(DataError):
    """A PALM archive is missing, damaged, unsafe or has the wrong content."""


class ImageError(DataError):
    """An image file cannot be decoded or is not an acceptable image."""


class LabelError(DataError):
    """A label, a label sheet or a file-name prefix is invalid."""


class InputShapeError(PalmError, ValueError):
    """A tensor given to a model has the wrong number of channels or is too small."""


class MissingFileError(PalmError, FileNotFoundError):
    """A file or folder that is needed does not exist."""


class CheckpointError(PalmError, ValueError):
    """A checkpoint is missing, damaged, or belongs to another architecture."""


class ConfigError(PalmError, ValueError):
    """A configuration or command-line value is out of range or inconsistent."""


class TrainingError(PalmError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


class UnsupportedVersionError(PalmError, RuntimeError):
    """The installed Paddle, numpy or Python is outside the supported range (SPEC 6)."""
