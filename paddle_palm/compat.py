"""Differences between the Paddle, numpy and Python versions the project supports, one function each.

Supported (SPEC 6): Paddle 2.6.2, 3.0.0, 3.3.1 and later 3.x; Python 3.9-3.12;
the numpy the installed Paddle was built for (numpy < 2 for Paddle 2.x).
Every place in the project where the versions behave differently calls one
function here, whose comment names the versions; nothing else in the code asks
for ``paddle.__version__``.

Differences handled elsewhere, because they are avoided rather than bridged
(the same code runs everywhere):

* Paddle 2.6's dynamic-to-static conversion does not see names bound in an
  enclosing function (``NameError: name 'F' is not defined`` at export): the
  exported wrapper (:mod:`paddle_palm.engine.export`) holds its probability
  layers as attributes.
* The oneDNN operator (:mod:`paddle_palm.ops`) needs headers of the oneDNN
  version inside the Paddle wheel; where none is known it says so in one line
  and training uses Paddle's convolution with the same results.

This module imports neither Paddle nor numpy at import time: :func:`check_environment`
must be able to refuse a broken pair before importing Paddle crashes.
"""

import os
import re
import sys

from paddle_palm.errors import UnsupportedVersionError

#: The oldest Paddle release the project supports (the newest ``paddlepaddle-gpu`` on PyPI).
MIN_PADDLE = (2, 6, 2)

#: Python versions the project is tested on.
PYTHON_RANGE = ((3, 9), (3, 12))

#: One line naming what is supported, for error messages.
SUPPORTED = "Paddle 2.6.2 (with numpy < 2), 3.0.0, 3.3.1 or a later 3.x; Python 3.9-3.12"

#: The distributions that provide ``import paddle``, most common first.
_PADDLE_DISTRIBUTIONS = ("paddlepaddle", "paddlepaddle-gpu")


def version_tuple(text):
    """``"2.6.2"`` -> ``(2, 6, 2)``; ``"3.0.0rc1"`` -> ``(3, 0, 0)``; ``"0.0.0"`` (a develop build) stays.

    Args:
        text: a version string.

    Returns:
        tuple of int: the leading numeric parts (at most three), padded with zeros.
    """
    parts = []
    for piece in str(text).split(".")[:3]:
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts + [0] * (3 - len(parts)))


def installed_paddle_version():
    """The version of the installed Paddle, read from its package metadata (Paddle is not imported).

    Returns:
        str or None: e.g. ``"2.6.2"``; None when no Paddle distribution is installed.
    """
    from importlib import metadata

    for name in _PADDLE_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    # Another name (a nightly, a vendor build): the version file inside the package.
    try:
        from importlib.util import find_spec

        spec = find_spec("paddle")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = os.path.join(list(spec.submodule_search_locations)[0], "version", "__init__.py")
    try:
        with open(version_file, encoding="utf-8") as handle:
            match = re.search(r"^full_version\s*=\s*['\"]([^'\"]+)['\"]", handle.read(), re.M)
    except OSError:
        return None
    return match.group(1) if match else None


def numpy_limit_for_paddle(paddle_version):
    """The numpy major version a Paddle release can use, as ``(low, high)`` bounds on numpy.

    Paddle 2.x wheels (2.6.2 included) are built against numpy 1.x: with numpy 2 their
    C extension fails at import ("compiled using NumPy 1.x cannot be run in NumPy 2").
    Paddle 3.0.0 and later are built for numpy 2 and also run with numpy 1.26.

    Args:
        paddle_version: ``(major, minor, patch)``.

    Returns:
        tuple: ``((1, 0, 0), (2, 0, 0))`` for Paddle 2.x (numpy >= 1, < 2); else ``((1, 26, 0), None)``.
    """
    if paddle_version < (3, 0, 0):
        return (1, 0, 0), (2, 0, 0)
    return (1, 26, 0), None


def version_problem(paddle_version, numpy_version, python_version=None):
    """What is wrong with a Paddle / numpy / Python combination, or None when it is supported.

    Args:
        paddle_version: Paddle's version string (None: Paddle is not installed).
        numpy_version: numpy's version string (None: numpy is not installed).
        python_version: ``sys.version_info``-like tuple (default: this interpreter's).

    Returns:
        str or None: one line naming the versions found and what is supported.
    """
    python = tuple(python_version or sys.version_info)[:2]
    if paddle_version is None:
        return ("PaddlePaddle is not installed; install one of: " + SUPPORTED
                + " (pip install paddlepaddle, or paddlepaddle-gpu for CUDA)")
    paddle = version_tuple(paddle_version)
    if paddle != (0, 0, 0) and paddle < MIN_PADDLE:  # 0.0.0: a build from source, taken as current
        return f"Paddle {paddle_version} is older than supported; supported: {SUPPORTED}"
    if numpy_version is not None and paddle != (0, 0, 0):
        numpy = version_tuple(numpy_version)
        low, high = numpy_limit_for_paddle(paddle)
        if numpy < low or (high is not None and numpy >= high):
            wanted = f"numpy >= {'.'.join(map(str, low[:2]))}" + (f", < {high[0]}" if high else "")
            fix = ' (pip install "numpy<2")' if high else ""
            return (f"Paddle {paddle_version} cannot use numpy {numpy_version}: it needs {wanted}{fix}; "
                    f"supported: {SUPPORTED}")
    if python < PYTHON_RANGE[0]:
        return f"Python {python[0]}.{python[1]} is older than supported; supported: {SUPPORTED}"
    return None


def _numpy_version_without_import():
    from importlib import metadata

    try:
        return metadata.version("numpy")
    except metadata.PackageNotFoundError:
        return None


def check_environment():
    """Refuse, in one line, a Paddle below the supported range or a numpy Paddle cannot use.

    Called at start-up by every tool (:func:`paddle_palm.cli.run`) before Paddle is
    imported: importing Paddle 2.6 with numpy 2 crashes inside Paddle.

    Returns:
        dict: ``paddle`` and ``numpy`` version strings.

    Raises:
        UnsupportedVersionError: naming both versions and what is supported.
    """
    paddle, numpy = installed_paddle_version(), _numpy_version_without_import()
    problem = version_problem(paddle, numpy)
    if problem:
        raise UnsupportedVersionError(problem)
    return {"paddle": paddle, "numpy": numpy}


# --------------------------------------------------------------------------- import order


def load_zlib_before_paddle():
    """Load the system zlib into the process before Paddle is imported.

    Paddle 2.6.x's ``libpaddle.so`` exports zlib symbols of its own (``inflateReset2``,
    ``deflateReset``, ...).  When Paddle is the first to bring zlib into the process,
    OpenCV's PNG/JPEG code and Python's ``zlib`` later bind to Paddle's copy and crash
    (SIGSEGV in ``inflateReset2`` or ``deflateReset``; measured with 2.6.2 and
    opencv-python 4.11: ``import paddle, cv2`` then ``cv2.imencode('.png', ...)``).
    With Python's ``zlib`` module (the system ``libz``) loaded first, every later user
    binds to it.  Paddle 3.x keeps its zlib private: there the order does not matter
    and this is a no-op import of a standard module.

    :mod:`paddle_palm` calls it on import, so it holds whenever ``paddle_palm`` (or a
    tool) is imported before ``paddle``.
    """
    import zlib  # noqa: F401  (the import is the point)


# --------------------------------------------------------------------------- Paddle Inference


def set_inference_onednn(config, enabled, bfloat16=False):
    """Turn oneDNN on or off (and bfloat16 with it) on a ``paddle.inference.Config``.

    Paddle up to 3.0 names the switches ``enable_mkldnn`` / ``disable_mkldnn`` /
    ``enable_mkldnn_bfloat16``; Paddle 3.1 added ``enable_onednn`` / ``disable_onednn`` /
    ``enable_onednn_bfloat16`` (the old names still exist in 3.3 but are deprecated).

    Args:
        config: a ``paddle.inference.Config``.
        enabled: True for oneDNN kernels, False for Paddle's plain CPU kernels.
        bfloat16: with ``enabled``, run oneDNN in bfloat16.
    """
    new = hasattr(config, "enable_onednn")
    if enabled:
        (config.enable_onednn if new else config.enable_mkldnn)()
        if bfloat16:
            (config.enable_onednn_bfloat16 if new else config.enable_mkldnn_bfloat16)()
    else:
        (config.disable_onednn if new else config.disable_mkldnn)()


def name_exported_output(model_file, name):
    """Give the single output of a program written by ``paddle.jit.save`` the name ``name``, if possible.

    ``paddle.jit.save`` names outputs itself: Paddle 3.x (a PIR program, ``.json``) calls
    them ``fetch_name_0``; its Python API refuses to name a non-persistable value, so the
    ``name`` attribute of the program's one ``fetch`` operation is rewritten in the JSON
    file (the weights file does not change).  Paddle 2.x (``.pdmodel``, a protobuf
    program) calls it ``save_infer_model/scale_0.tmp_0`` and renaming a variable there
    would mean rewriting every operation that uses it, so that name stays.

    Args:
        model_file: the program file (``inference.json`` or ``inference.pdmodel``).
        name: the wanted output name.

    Returns:
        str: the output's name in the program as written (``name``, or Paddle 2's own).
    """
    import json

    model_file = os.fspath(model_file)
    if not model_file.endswith(".json"):
        return "save_infer_model/scale_0.tmp_0"
    with open(model_file, encoding="utf-8") as handle:
        program = json.load(handle)
    fetches = [op for op in _pir_ops(program) if op.get("#", "").endswith(".fetch")]
    attrs = [a for op in fetches for a in op.get("A", []) if a.get("N") == "name"]
    if len(fetches) != 1 or len(attrs) != 1 or not isinstance(attrs[0].get("AT"), dict):
        raise UnsupportedVersionError(f"{model_file}: expected one fetch operation in the saved program, "
                                      f"found {len(fetches)}")
    attrs[0]["AT"]["D"] = name
    tmp = model_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(program, handle, separators=(",", ":"))
    os.replace(tmp, model_file)
    return name


def _pir_ops(program):
    """The operations of a PIR JSON program's top-level block (Paddle 3.0 through 3.3 layout)."""
    regions = program.get("program", {}).get("regions", [])
    return [op for region in regions for block in region.get("blocks", []) for op in block.get("ops", [])]


def paddle2onnx_problem(paddle_version, converter_version):
    """Why this paddle2onnx cannot convert this Paddle's programs, or None.

    paddle2onnx 2.x reads only Paddle >= 3.0 programs (it refuses to import beside 2.6); 1.x reads
    Paddle 2.x programs (``.pdmodel``).  So Paddle 2.6 needs ``paddle2onnx<2`` and Paddle 3.x ``>=2``.
    """
    if paddle_version is None or converter_version is None:
        return None
    new_paddle = version_tuple(paddle_version) >= (3, 0, 0) or version_tuple(paddle_version) == (0, 0, 0)
    new_converter = version_tuple(converter_version) >= (2, 0, 0)
    if new_paddle == new_converter:
        return None
    wanted = "paddle2onnx>=2" if new_paddle else "paddle2onnx<2"
    return (f"paddle2onnx {converter_version} does not convert the programs of Paddle {paddle_version}; "
            f'install the matching one: pip install "{wanted}"')


def paddle2onnx_export(paddle2onnx, model_file, params_file, save_file, opset, fold_constants):
    """``paddle2onnx.export`` with the arguments each version takes.

    paddle2onnx 2.x chooses its graph optimiser (``optimize_tool``: polygraphy or none); 1.x (for
    Paddle 2.6) has no such argument and folds constants itself.
    """
    kwargs = {"save_file": save_file, "opset_version": opset, "enable_onnx_checker": True}
    if version_tuple(getattr(paddle2onnx, "__version__", "2")) >= (2, 0, 0):
        kwargs["optimize_tool"] = "polygraphy" if fold_constants else "none"
    return paddle2onnx.export(model_file, params_file, **kwargs)


# --------------------------------------------------------------------------- devices


def cuda_compute_capability(device_id=0):
    """The compute capability ``(major, minor)`` of a CUDA device, or None without CUDA.

    ``paddle.device.cuda.get_device_capability`` exists in every supported Paddle
    (2.6.2 through 3.x); on a CPU-only build it is absent or raises, hence the guard.

    Args:
        device_id: the GPU index.

    Returns:
        tuple or None.
    """
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        return None
    try:
        return tuple(paddle.device.cuda.get_device_capability(device_id))
    except (AttributeError, RuntimeError, ValueError, OSError):
        return None


def set_cpu_math_threads(count):
    """Set the number of threads of Paddle's CPU math library (MKL, oneDNN).

    ``paddle.base.core`` is where the binding lives from Paddle 2.6 (which renamed
    ``paddle.fluid`` to ``paddle.base``) through 3.x; ``paddle.fluid.core`` before.

    Args:
        count: threads (>= 1).
    """
    import paddle

    core = getattr(getattr(paddle, "base", None), "core", None)
    if core is None:  # pragma: no cover - Paddle < 2.6 is refused by check_environment
        core = paddle.fluid.core
    core.set_num_threads(int(count))


def cache_numpy_float_limits():
    """Compute numpy's float limits now, before denormal flushing is turned on.

    numpy 1.x computes ``np.finfo`` lazily and, with flush-to-zero on, warns
    "The value of the smallest subnormal ... is zero" at its first use (Paddle 2.6
    and pandas ask for it); numpy 2.x does not.  Computed once beforehand, the cached
    values are the true ones and nothing is printed.
    """
    import numpy as np

    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype).smallest_subnormal  # noqa: B018  (fills numpy's cache)


def set_dataloader_pin_memory(enabled):
    """Make ``paddle.io.DataLoader`` copy batches through pinned host memory, or not.

    Paddle has no public switch: the DataLoader reads the module-level
    ``paddle.io.reader.use_pinned_memory()`` (present, with the same meaning, in 2.6.2,
    3.0.0 and 3.3.1; None means "pin on CUDA builds").  CPU builds ignore it.

    Args:
        enabled: True to pin (GPU training with loader workers), False not to.

    Returns:
        bool: True when the setting could be made.
    """
    try:
        from paddle.io import reader
    except ImportError:
        return False
    switch = getattr(reader, "use_pinned_memory", None)
    if switch is None:
        return False
    switch(bool(enabled))
    return True


#: The module names of numpy's core in pickles: numpy 1.x writes ``numpy.core.*``, numpy 2.x
#: ``numpy._core.*``.
NUMPY_CORE_NAMES = ("numpy.core", "numpy._core")


def installed_numpy_core_module(module):
    """The installed numpy's name for a pickled ``numpy.core.X`` / ``numpy._core.X`` module.

    numpy 2.x keeps ``numpy.core`` only as a deprecated alias that warns; numpy 1.26 has a
    ``numpy._core`` with some of the modules (``multiarray``, not ``numeric``).  So the name is
    chosen by numpy's major version, and a pickle of either loads under both.  Other names are
    returned unchanged.
    """
    import numpy as np

    for core in NUMPY_CORE_NAMES:
        if module.startswith(core + "."):
            installed = "numpy._core" if version_tuple(np.__version__) >= (2, 0, 0) else "numpy.core"
            return installed + module[len(core):]
    return module
