"""Helpers shared by the thin command-line tools in ``tools/``.

:func:`run` is the one place where our own errors become a one-line message on
stderr and a non-zero exit code, so no tool ever shows a traceback for bad
input; it also checks the installed Paddle and numpy first
(:func:`paddle_palm.compat.check_environment`).  Argument types such as :func:`positive_int` give argparse clear
messages for out-of-range numbers.
"""

import argparse
import math
import sys

from paddle_palm import compat
from paddle_palm.errors import PalmError

#: Exit code for bad input or a failed run (argparse itself uses 2 for bad arguments).
EXIT_FAILURE = 1


def run(main, argv=None):
    """Call ``main(argv)`` and turn our errors into ``error: ...`` and exit code 1.

    Args:
        main: a function taking the argument list and returning an exit code or None.
        argv: the arguments (``sys.argv[1:]`` when None).

    Returns:
        Never: it calls ``sys.exit``.
    """
    try:
        compat.check_environment()  # a Paddle/numpy pair that cannot work: one line, before Paddle crashes
        code = main(argv)
    except PalmError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size or --image-size", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
    except OSError as exc:
        # Permission denied, disk full, read-only folder: name the file, no traceback.
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{':' if name else ''}{name}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
    sys.exit(code or 0)


def one_line(exc):
    """The message of ``exc`` on a single line."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _number(kind, minimum=None, maximum=None, inclusive_min=True):
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if kind is float and not math.isfinite(value):  # NaN, inf, 1e400
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if minimum is not None and (value < minimum if inclusive_min else value <= minimum):
            bound = f">= {minimum}" if inclusive_min else f"> {minimum}"
            raise argparse.ArgumentTypeError(f"expected a value {bound}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a value <= {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, minimum=1)
non_negative_int = _number(int, minimum=0)
positive_float = _number(float, minimum=0.0, inclusive_min=False)
non_negative_float = _number(float, minimum=0.0)
probability = _number(float, minimum=0.0, maximum=1.0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``<prog>: error: <message>`` and exit code 2.

    The stock parser prints the whole usage block before the error; on bad input
    our tools print one line that says what was wrong (``--help`` shows usage).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")
