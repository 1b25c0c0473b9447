"""Refuse a checkpoint that would run code when loaded, before Paddle unpickles it.

``paddle.load`` reads a ``.pdparams`` file with Python's ``pickle``, which calls
whatever the file names: a checkpoint from a stranger can run any program.  The
screening app loads a checkpoint that someone handed to the person starting it,
so it first reads the file with a restricted unpickler that admits only what
Paddle's own checkpoint format is made of (SPEC 6: nothing from outside is
unpickled without a restricted loader):

* numpy arrays, dtypes and scalars (``numpy.core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype``, ``scalar``, ``_frombuffer``; numpy 2 moved
  ``numpy.core`` to ``numpy._core`` and files of either carry either name);
* builtin containers (``dict``, ``list``, ``tuple``, ``set``, ``frozenset``,
  ``bytearray``, ``collections.OrderedDict``) and ``_codecs.encode`` (how a
  protocol-2 pickle, e.g. Paddle 1.8's ``save_dygraph``, stores bytes);
* ``builtins.eval`` only as Paddle 2.x's ``reduce_LoDTensor`` uses it: the
  expression ``"data"`` looked up in the dictionary that comes with it.  The
  restricted reader replaces ``eval`` by that look-up, so no expression is ever
  evaluated.

Anything else (``os.system``, ``builtins.exec``, a class of some package) is
refused with :class:`paddle_palm.errors.CheckpointError` naming the file and the
global.  The file is then loaded by Paddle as usual.
"""

import io
import os
import pickle

from paddle_palm.errors import CheckpointError

__all__ = ["ALLOWED_GLOBALS", "check_checkpoint_file", "restricted_load"]

#: ``(module, name)`` pairs a Paddle checkpoint may name (see the module docstring).
ALLOWED_GLOBALS = frozenset(
    [(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")]
    + [(core, "_frombuffer") for core in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "complex")]
    + [("__builtin__", name) for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "complex")]
    + [("collections", "OrderedDict"), ("_codecs", "encode")]
)

#: Largest file read by :func:`check_checkpoint_file` (ResNet-152 weights are about 240 MB).
MAX_CHECKPOINT_BYTES = 2 * 1024**3


class _Refused(pickle.UnpicklingError):
    """A global or construct outside :data:`ALLOWED_GLOBALS` (not a damaged file)."""


def _lodtensor_lookup(expression, namespace=None, *_):
    """What Paddle 2.x's ``reduce_LoDTensor`` asks of ``eval``: ``namespace["data"]``, nothing else."""
    if expression != "data" or not isinstance(namespace, dict) or "data" not in namespace:
        raise _Refused(f"refused builtins.eval({expression!r}, ...): only Paddle's "
                                     "eval('data', {'data': array}) form is accepted")
    return namespace["data"]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in (("builtins", "eval"), ("__builtin__", "eval")):
            return _lodtensor_lookup
        raise _Refused(f"it names the global {module}.{name}, which a Paddle checkpoint never needs")

    def persistent_load(self, pid):
        raise _Refused("it uses persistent ids, which a Paddle checkpoint never needs")


def restricted_load(data, name="checkpoint"):
    """Unpickle ``data`` (bytes) admitting only :data:`ALLOWED_GLOBALS`; return the object.

    Raises:
        CheckpointError: the data names another global, or is not a complete pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as exc:
        raise CheckpointError(f"{name} is refused as unsafe: {exc} (a checkpoint written by paddle.save holds "
                              "only arrays and containers)") from None
    except Exception as exc:  # truncated or not a pickle at all: EOFError, ValueError, struct.error, ...
        raise CheckpointError(f"{name} is not a complete Paddle checkpoint ({type(exc).__name__})") from None


def check_checkpoint_file(path):
    """Check that the ``.pdparams`` file ``path`` loads without running code; return its top-level keys.

    Args:
        path: the weights file.

    Returns:
        list of str: the names in the state dict (for a message or a check).

    Raises:
        CheckpointError: missing, empty, too large, not a pickle, unsafe, or not a dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"weights file {path} is empty (0 bytes)")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"weights file {path} is {size / 1024**3:.1f} GB; at most "
                              f"{MAX_CHECKPOINT_BYTES / 1024**3:.0f} GB is accepted")
    with open(path, "rb") as fh:
        obj = restricted_load(fh.read(), name=path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a Paddle state dict (found {type(obj).__name__})")
    return [str(k) for k in obj]
