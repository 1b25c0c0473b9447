"""Reading and writing checkpoint pickles: a restricted unpickler and a numpy-1-compatible pickler.

Checkpoint files come from strangers, so :func:`load` only lets a pickle build what the
save formats of 1.8 (``save_dygraph``) and of modern Paddle (``paddle.save`` of a state
dict) contain: numpy arrays, dtypes and scalars, and builtin containers and scalars.
Any other global (``os.system``, a class of some package ...) is refused before it is
imported, with one line naming the file and the global.

numpy 2 moved its pickle helpers from ``numpy.core`` to ``numpy._core``; a pickle that
names ``numpy._core`` does not load with the numpy 1.x of a PaddlePaddle 1.8 install.
:func:`dump` therefore always writes the ``numpy.core`` names, which every numpy loads
(numpy 2 keeps ``numpy.core.multiarray._reconstruct`` and ``scalar`` for old pickles),
and :func:`load` accepts both spellings.
"""

import io
import pickle

import numpy as np

__all__ = ["UnsafeCheckpointError", "load", "dump", "dumps", "ALLOWED_GLOBALS"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file asks for a global that a checkpoint never holds, or is not a pickle at all."""


#: (module, name) pairs a checkpoint may name.  ``numpy.core`` is numpy 1.x's spelling,
#: ``numpy._core`` numpy 2's; ``__builtin__`` / ``copy_reg`` appear in pickles written by Python 2.
ALLOWED_GLOBALS = frozenset(
    [(core + ".multiarray", name) for core in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")]
    + [(core + ".numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict")]
    + [(builtins, name) for builtins in ("builtins", "__builtin__")
       for name in ("tuple", "list", "dict", "set", "frozenset", "bytearray", "bytes", "str", "int", "float",
                    "complex", "bool", "slice", "range")]
)

#: numpy 2.0 renamed ``numpy.core`` to ``numpy._core`` (the old name stays as a shim that
#: warns on most attributes); this is the one place that maps between the two spellings.
_NUMPY_CORE_NEW = "numpy._core"
_NUMPY_CORE_OLD = "numpy.core"
_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, filename, **kwargs):
        super(_RestrictedUnpickler, self).__init__(fh, **kwargs)
        self._filename = filename

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafeCheckpointError(
                "{}: refused to load the global {}.{} (a checkpoint holds only numpy arrays, numbers, strings "
                "and containers)".format(self._filename, module, name))
        if module == "__builtin__":
            module = "builtins"
        if module.startswith(_NUMPY_CORE_NEW + ".") or module.startswith(_NUMPY_CORE_OLD + "."):
            # load through numpy's current module name, whichever spelling the file used
            tail = module.split(".", 2)[2]
            module = (_NUMPY_CORE_NEW if _NUMPY_2 else _NUMPY_CORE_OLD) + "." + tail
        return super(_RestrictedUnpickler, self).find_class(module, name)


def load(fh, filename):
    """Unpickle a checkpoint from the binary file object ``fh`` (``filename`` names it in errors).

    Raises:
        UnsafeCheckpointError: the pickle names a global outside :data:`ALLOWED_GLOBALS`, or
            the file is not a readable pickle (truncated, another format).
    """
    try:
        return _RestrictedUnpickler(fh, filename, encoding="latin1").load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise UnsafeCheckpointError("{}: not a readable checkpoint ({}: {})".format(
            filename, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "no detail")) from None


class _Numpy1Pickler(pickle._Pickler):
    """The pure-Python pickler, naming ``numpy.core`` where numpy 2 would write ``numpy._core``."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None) or ""
        if module == _NUMPY_CORE_NEW or module.startswith(_NUMPY_CORE_NEW + "."):
            name = name or obj.__qualname__
            old = _NUMPY_CORE_OLD + module[len(_NUMPY_CORE_NEW):]
            self.write(pickle.GLOBAL + old.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")
            self.memoize(obj)
            return
        super(_Numpy1Pickler, self).save_global(obj, name)


def dump(obj, fh, protocol=2):
    """Pickle ``obj`` to the binary file object ``fh`` so that numpy 1.x and 2.x both load it."""
    _Numpy1Pickler(fh, protocol=protocol).dump(obj)


def dumps(obj, protocol=2):
    """:func:`dump` to bytes."""
    buf = io.BytesIO()
    dump(obj, buf, protocol)
    return buf.getvalue()
