"""Loading Paddle checkpoints without running code from them.

``paddle.load`` is a plain ``pickle.load``: a ``.pdparams`` file can name any
Python function and have it called while loading (``os.system``, ``eval``...).
Checkpoints are shared between students, teachers and clinics, so every
``.pdparams`` / ``.pdopt`` / ``.pdema`` file the project reads goes through
:func:`paddle_load` instead, which unpickles with an allow-list:

* numpy arrays, dtypes and scalars (``numpy.core.multiarray`` as numpy 1 writes
  it, ``numpy._core.multiarray`` as numpy 2 writes it);
* builtin containers and scalars, ``collections.OrderedDict``;
* the reconstructors Paddle's own ``paddle.save`` and Paddle 1.8's
  ``save_dygraph`` write: ``_codecs.encode`` (bytes in a protocol-2 pickle) and
  ``builtins.eval`` in exactly the form ``eval('data', {'data': array})`` that
  ``paddle.save`` uses for a ``DenseTensor``; any other argument is refused.

Anything else is refused before it is called, with one line naming the file and
the global it asked for.  The result is then handed to ``paddle.load`` as an
in-memory pickle of plain numpy data, so the returned object is exactly what
``paddle.load`` gives for a trusted file (tensors, names restored).
"""

import _compat_pickle
import collections
import io
import os
import pickle

from paddle_palm.compat import NUMPY_CORE_NAMES
from paddle_palm.errors import CheckpointError


class UnsafeFileError(CheckpointError):
    """A file asks for a Python global that a Paddle checkpoint never holds (it could run code)."""


def _guarded_eval(expression, namespace=None, *rest):
    # paddle.save writes a DenseTensor as eval('data', {'data': ndarray}); nothing else is evaluated.
    import numpy as np

    if (expression == "data" and not rest and isinstance(namespace, dict) and list(namespace) == ["data"]
            and isinstance(namespace["data"], np.ndarray)):
        return namespace["data"]
    raise UnsafeFileError("builtins.eval with arguments other than paddle.save's eval('data', {'data': array})")


def _guarded_encode(text, encoding="utf-8", *rest):
    # A protocol-2 pickle written by Python 3 stores bytes as _codecs.encode(str, 'latin1').
    if isinstance(text, str) and not rest and encoding in ("latin1", "latin-1"):
        return text.encode("latin1")
    raise UnsafeFileError("_codecs.encode with arguments other than (str, 'latin1')")


def _guarded_dtype(*args, **kwargs):
    import numpy as np

    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise UnsafeFileError(f"numpy.dtype of Python objects ({dtype})")
    return dtype


def _allowed_globals():
    """``{(module, name): object}``: everything a Paddle checkpoint may ask for."""
    import numpy as np

    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "eval"): _guarded_eval,
        ("_codecs", "encode"): _guarded_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _guarded_dtype,
    }
    for name in ("tuple", "list", "dict", "set", "frozenset", "complex", "bytearray", "int", "float", "bool", "str"):
        allowed[("builtins", name)] = getattr(__import__("builtins"), name)
    for core in NUMPY_CORE_NAMES:  # as numpy 1.x and 2.x write them; both load under either
        allowed[(core + ".multiarray", "_reconstruct")] = np.ndarray.__reduce__(np.zeros(0))[0]
        allowed[(core + ".multiarray", "scalar")] = np.float32(0).__reduce__()[0]
    return allowed


class _CheckpointUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :func:`_allowed_globals`."""

    def __init__(self, stream, allowed):
        super().__init__(stream, encoding="latin1")
        self._allowed = allowed

    def find_class(self, module, name):
        # Python 2 names (__builtin__.tuple in a protocol-2 pickle), mapped as pickle's fix_imports does.
        key = _compat_pickle.NAME_MAPPING.get((module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if key not in self._allowed:
            raise UnsafeFileError(f"the Python global {module}.{name}")
        return self._allowed[key]

    def persistent_load(self, pid):
        raise UnsafeFileError(f"a persistent id ({str(pid)[:40]!r})")


def _check_plain(obj, depth=0, seen=None):
    """Refuse anything in the result that is not plain data (object arrays, deep nesting).

    A container reached twice is refused: a pickle can share one list many times over
    (``[x, x]`` nested 60 deep), and every walk of all paths through such a graph, this one
    or Paddle's own conversion to tensors, would never end.  ``paddle.save`` never shares one.
    """
    import numpy as np

    seen = set() if seen is None else seen
    if depth > 64:
        raise pickle.UnpicklingError("nesting deeper than 64 levels")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("a numpy array of Python objects")
    elif isinstance(obj, (dict, list, tuple, set, frozenset)):
        if id(obj) in seen:
            raise pickle.UnpicklingError(f"one {type(obj).__name__} referenced from several places")
        seen.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else ((None, value) for value in obj)
        for key, value in items:
            _check_plain(key, depth + 1, seen)
            _check_plain(value, depth + 1, seen)
    elif not isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic)):
        raise pickle.UnpicklingError(f"an object of type {type(obj).__name__}")


def restricted_loads(data, source):
    """Unpickle ``data`` with the checkpoint allow-list; return plain Python/numpy data.

    Args:
        data: the file's bytes.
        source: how to name the file in messages (its path).

    Returns:
        The unpickled object: dicts, lists, tuples, strings, numbers and numpy arrays only.

    Raises:
        UnsafeFileError: the pickle asks for a global outside the allow-list (nothing was called).
        CheckpointError: the bytes are not a complete pickle (truncated, another file type).
    """
    try:
        obj = _CheckpointUnpickler(io.BytesIO(data), _allowed_globals()).load()
    except UnsafeFileError as exc:
        raise UnsafeFileError(
            f"refusing to load {source}: it asks for {exc}, which a Paddle checkpoint never holds "
            "(the file could run code; nothing from it was run)"
        ) from None
    except RecursionError:
        raise CheckpointError(f"{source} is not a Paddle checkpoint: nested too deeply") from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... for damaged or foreign bytes
        raise CheckpointError(
            f"{source} is not a complete Paddle checkpoint (truncated or another file type): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    try:
        _check_plain(obj)
    except (pickle.UnpicklingError, RecursionError) as exc:
        raise UnsafeFileError(f"refusing to load {source}: it holds {exc}, which a Paddle checkpoint never "
                              "holds") from None
    return obj


def load_pickle(path):
    """Read a pickled checkpoint file with :func:`restricted_loads` (no Paddle needed)."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    return restricted_loads(data, path)


def paddle_load(path):
    """``paddle.load(path)`` for a pickled checkpoint, without running code from the file.

    Args:
        path: a ``.pdparams`` / ``.pdopt`` / ``.pdema`` file written by ``paddle.save`` (any
            Paddle 2.x/3.x), by Paddle 1.8's ``save_dygraph``, or by this project.

    Returns:
        What ``paddle.load`` returns for it (a state dict of tensors).

    Raises:
        UnsafeFileError, CheckpointError: see :func:`restricted_loads`.
    """
    import paddle

    obj = load_pickle(path)
    # The object is plain numpy data now; paddle.load turns it into tensors exactly as for a file.
    buffer = io.BytesIO(pickle.dumps(obj, protocol=4))
    return paddle.load(buffer)
