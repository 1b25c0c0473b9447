"""oneDNN convolutions and fused kernels for Paddle's dynamic graph on a CPU.

Paddle 3.3 trains on a CPU with its dynamic-graph convolution: im2col plus one MKL
matrix product per image, with AVX2 at best.  The oneDNN library inside the Paddle
wheel (``paddle/libs/libdnnl.so.3``) has direct convolutions with AVX2 and AVX-512
JIT kernels, but dynamic mode never calls it (``FLAGS_use_onednn`` is ignored there;
``docs/BENCHMARKS.md`` section 2).  This package adds Paddle custom operators written
in C++ and switches a network's layers to them (:func:`accelerate`):

* ``palm_conv2d`` (``onednn_conv.cc``): float32 (or bf16-multiplied) convolution, NCHW or
  NHWC, with its gradient, on that library;
* ``palm_batch_norm`` / ``palm_batch_norm_add`` (``batch_norm.cc``): training-mode batch
  norm fused with ReLU and the residual add, NCHW or channels-last (:func:`batch_norm_act`);
* ``palm_pool2d`` (``pool.cc``): max and average pooling, NCHW or NHWC (:func:`pool2d`,
  :func:`global_avg_pool2d`);
* ``palm_scale_add`` (``excite.cc``): the end of a squeeze-and-excitation block,
  ``relu(x * w + shortcut)``, in one pass (:func:`scale_add`);
* ``palm_ema_update`` (``average.cc``): the weights' moving average of ``--ema`` in one
  in-place pass (:func:`ema_update`).

Each has a Python function that falls back to Paddle's own kernels wherever it cannot
run (graphs being traced, other dtypes or devices, operators unavailable), so a network
computes the same function either way.  On the project's 2-core AMD EPYC (AVX-512) this
makes ``tools/train.py`` train ResNet-50 and the recipe's se_resnet18 at or above the speed
of PyTorch 2.13 on the same images (``docs/BENCHMARKS.md`` 3.6-3.7).

The operators are compiled once (about 30 s with g++) and cached under
``~/.cache/paddle_palm/ops`` (``PADDLE_PALM_CACHE`` moves it).  Compiling needs
oneDNN's C++ headers, which the Paddle wheel does not ship: they come from the
headers-only PyPI package ``onednn-devel`` of the same oneDNN version, fetched with
``pip download --no-deps`` (its declared dependency, the full oneAPI runtime, is not
needed: the library itself is Paddle's) by ``python -m paddle_palm.ops`` only, the
explicit build step to run once after installing.  Training never downloads: without
the headers it says so in one line; a failed download or compilation is remembered in
the cache (``FETCH-FAILED`` / ``palm_ops-<key>.FAILED``, with the reason) and repeated
as one line instead of being tried again; ``python -m paddle_palm.ops`` retries.

When anything is missing (no C++ compiler, no headers, another platform, a Paddle
without ``libdnnl.so.3``, or Paddle 2.6's oneDNN 3.2, for which PyPI has no headers),
:func:`load` returns None,
:func:`unavailable_reason` says why in one line, and training uses Paddle's own
convolution: the results are the same, only slower.  ``PADDLE_PALM_ONEDNN=0``
turns the operator off.

Use::

    from paddle_palm import ops
    if ops.load() is not None:
        switched = ops.accelerate(model)   # Conv2D layers run palm_conv2d, pooling palm_pool2d, ...
    ops.restore(model)                      # back to Paddle's layers
"""

import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import types
import zipfile

from paddle_palm.cpu import cpu_info
from paddle_palm.errors import PalmError

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The operators' sources, next to this file: the oneDNN convolution, the fused batch norm,
#: pooling, the squeeze-and-excitation block's scale-add and the weights' moving average.
SOURCES = tuple(os.path.join(_HERE, name)
                for name in ("onednn_conv.cc", "batch_norm.cc", "pool.cc", "excite.cc", "average.cc"))
SOURCE = SOURCES[0]

#: oneDNN version (major, minor) of Paddle's libdnnl -> the ``onednn-devel`` release with
#: that version's headers (2025.0.1 carries oneDNN 3.6.1; patch releases share the API).
#: Paddle 3.0.0-3.3.1 ship oneDNN 3.6.2.  Paddle 2.6.2 ships oneDNN 3.2.1, for which PyPI has
#: no headers: onednn-devel starts at 2024.0.0, a wheel with no include/ at all, and newer
#: releases carry newer oneDNN APIs; such a Paddle keeps its own convolution.
ONEDNN_DEVEL_RELEASES = {
    (3, 6): "2025.0.1",
}

_ENV_SWITCH = "PADDLE_PALM_ONEDNN"
_ENV_INCLUDE = "PADDLE_PALM_ONEDNN_INCLUDE"
_ENV_CACHE = "PADDLE_PALM_CACHE"

_state = {"module": None, "reason": None, "tried": False}


class OpsUnavailable(PalmError):
    """The oneDNN operator cannot be built or loaded here (the message says why)."""


# --------------------------------------------------------------------------- where things are


def cache_dir():
    """The folder for built operators and downloaded headers.

    Returns:
        str: ``$PADDLE_PALM_CACHE`` or ``$XDG_CACHE_HOME/paddle_palm`` or ``~/.cache/paddle_palm``.
    """
    if os.environ.get(_ENV_CACHE):
        return os.path.abspath(os.environ[_ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "paddle_palm")


def _paddle_dir():
    import paddle

    return os.path.dirname(os.path.abspath(paddle.__file__))


def _paddle_version():
    import paddle

    return paddle.__version__


def onednn_library():
    """Path of the oneDNN library that Paddle ships, or None when this Paddle has none."""
    path = os.path.join(_paddle_dir(), "libs", "libdnnl.so.3")
    return path if os.path.isfile(path) else None


class _DnnlVersion(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_int),
        ("minor", ctypes.c_int),
        ("patch", ctypes.c_int),
        ("hash", ctypes.c_char_p),
        ("cpu_runtime", ctypes.c_uint),
        ("gpu_runtime", ctypes.c_uint),
    ]


@functools.lru_cache(maxsize=1)
def onednn_version():
    """The version of Paddle's oneDNN library, read from the library itself.

    Returns:
        tuple: ``(major, minor, patch)``, or None when there is no library.
    """
    path = onednn_library()
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    lib.dnnl_version.restype = ctypes.POINTER(_DnnlVersion)
    version = lib.dnnl_version().contents
    return (version.major, version.minor, version.patch)


def _header_version(include):
    path = os.path.join(include, "oneapi", "dnnl", "dnnl_version.h")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    found = {key: re.search(rf"#define DNNL_VERSION_{key}\s+(\d+)", text) for key in ("MAJOR", "MINOR")}
    if not all(found.values()):
        return None
    return (int(found["MAJOR"].group(1)), int(found["MINOR"].group(1)))


def _fetch_headers(release, target):
    """Download ``onednn-devel==release`` (headers only, no dependencies) and unpack its include/."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".fetch-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", f"onednn-devel=={release}", "-d", tmp]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OpsUnavailable(f"could not run pip to fetch the oneDNN headers (onednn-devel=={release}): {exc}") from None
        wheels = [name for name in os.listdir(tmp) if name.endswith(".whl")]
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise OpsUnavailable(f"could not download the oneDNN headers (onednn-devel=={release}): {last}")
        staged = os.path.join(tmp, "include")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
            for member in wheel.namelist():
                head, sep, rest = member.partition(".data/data/include/")
                if not sep or not rest or rest.endswith("/") or ".." in rest.split("/"):
                    continue
                path = os.path.join(staged, *rest.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with wheel.open(member) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if _header_version(staged) is None:
            raise OpsUnavailable(f"onednn-devel=={release} holds no oneapi/dnnl/dnnl_version.h")
        try:
            os.replace(staged, target)
        except OSError:
            if _header_version(target) is None:  # another process won the race with a complete copy
                raise


def headers_dir(download=True):
    """Find (or fetch) oneDNN C++ headers of the same major.minor version as Paddle's library.

    Looked for in ``$PADDLE_PALM_ONEDNN_INCLUDE``, in ``<sys.prefix>/include`` (where
    ``pip install --no-deps onednn-devel==...`` puts them) and in the cache; else
    downloaded into the cache when ``download`` is true.

    Returns:
        str: a folder holding ``oneapi/dnnl/dnnl.hpp``.

    Raises:
        OpsUnavailable: no matching headers and none could be fetched.
    """
    version = onednn_version()
    if version is None:
        raise OpsUnavailable("this Paddle build ships no oneDNN library (paddle/libs/libdnnl.so.3)")
    wanted = version[:2]
    candidates = [os.environ.get(_ENV_INCLUDE), os.path.join(sys.prefix, "include")]
    release = ONEDNN_DEVEL_RELEASES.get(wanted)
    cached = os.path.join(cache_dir(), "onednn-headers", f"{wanted[0]}.{wanted[1]}", "include")
    candidates.append(cached)
    for folder in candidates:
        if folder and _header_version(folder) == wanted:
            return folder
    if release is None:
        raise OpsUnavailable(f"PyPI's onednn-devel has no headers for oneDNN {version[0]}.{version[1]} (Paddle "
                             f"{_paddle_version()}'s library); set {_ENV_INCLUDE} to oneDNN "
                             f"{version[0]}.{version[1]} headers to build the operators")
    if not download:
        raise OpsUnavailable(f"oneDNN {wanted[0]}.{wanted[1]} headers not found: run python -m paddle_palm.ops "
                             f"once (it downloads them)")
    _fetch_headers(release, cached)
    return cached


# --------------------------------------------------------------------------- building


def _compiler():
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _arch_flags():
    """AVX2 + FMA code for the fused element-wise loops when this CPU has them (the cached
    library is keyed by these flags, so a cache shared with an older CPU gets its own build)."""
    flags = cpu_info()["flags"]
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


def _compile_command(compiler, include, output):
    paddle_dir = _paddle_dir()
    libs, base = os.path.join(paddle_dir, "libs"), os.path.join(paddle_dir, "base")
    paddle_include = os.path.join(paddle_dir, "include")
    return [
        compiler, "-O3", *_arch_flags(), "-fPIC", "-shared", "-std=c++17", "-w", "-DNDEBUG",
        "-DPADDLE_WITH_CUSTOM_KERNEL", "-D_GLIBCXX_USE_CXX11_ABI=1", "-DPADDLE_EXTENSION_NAME=palm_ops",
        f"-I{include}", f"-I{paddle_include}", f"-I{os.path.join(paddle_include, 'third_party')}",
        f"-I{os.path.join(paddle_include, 'paddle', 'phi', 'api', 'include', 'compat')}",
        f"-I{sysconfig.get_paths()['include']}", "-fopenmp",
        *SOURCES, "-o", output,
        # OpenMP from Paddle's Intel runtime (the one its oneDNN runs on), named before the
        # libgomp that -fopenmp appends, which --as-needed then leaves out.
        f"-L{libs}", "-l:libdnnl.so.3", "-l:libiomp5.so", f"-Wl,-rpath,{libs}",
        f"-L{base}", "-Wl,--no-as-needed", "-l:libpaddle.so", "-Wl,--as-needed", f"-Wl,-rpath,{base}",
    ]


def _build_key(include):
    import paddle

    digest = hashlib.sha256()
    for source in SOURCES:
        with open(source, "rb") as handle:
            digest.update(handle.read())
    for part in (paddle.__version__, getattr(paddle.version, "commit", ""), sys.version, include,
                 str(onednn_version()), platform.machine(), " ".join(_arch_flags())):
        digest.update(part.encode("utf-8", "replace"))
    return digest.hexdigest()[:16]


def check_platform():
    """Raise OpsUnavailable when this machine cannot run the operator at all."""
    if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        raise OpsUnavailable(f"turned off by {_ENV_SWITCH}={os.environ[_ENV_SWITCH]}")
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        raise OpsUnavailable(f"built only on x86-64 Linux (this is {sys.platform} {platform.machine()})")
    if onednn_library() is None:
        raise OpsUnavailable("this Paddle build ships no oneDNN library (paddle/libs/libdnnl.so.3)")


def _marker_text(reason):
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {reason}\n"


def _write_marker(path, reason):
    """Remember a failure (with its reason and time) so that later runs do not repeat it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".marker-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_marker_text(reason))
    os.replace(partial, path)


def _read_marker(path):
    """The remembered failure at ``path`` ("<date> <time> <reason>"), or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or "unknown reason"
    except OSError:
        return None


def _remove_marker(path):
    if os.path.exists(path):
        os.remove(path)


def _headers_marker():
    version = onednn_version() or (0, 0)
    return os.path.join(cache_dir(), "onednn-headers", f"{version[0]}.{version[1]}", "FETCH-FAILED")


def _local_headers(download, retry, log):
    """The headers folder; downloads only when ``download`` (the explicit build step).

    A failed download is remembered in the cache (``FETCH-FAILED``, with its reason): runs
    that may not download say so in one line instead of trying again, and only an explicit
    ``python -m paddle_palm.ops`` (``retry``) tries the registry again.
    """
    try:
        return headers_dir(download=False)
    except OpsUnavailable as missing:
        marker = _headers_marker()
        remembered = _read_marker(marker)
        version = onednn_version()
        if version is not None and version[:2] not in ONEDNN_DEVEL_RELEASES:
            raise  # nothing to download for this oneDNN: the message says what to do
        if not download or (remembered and not retry):
            if remembered:
                raise OpsUnavailable(f"no oneDNN headers: their download failed earlier ({remembered}); "
                                     f"python -m paddle_palm.ops tries again") from None
            raise missing
    if log:
        log("fetching the oneDNN C++ headers (pip download --no-deps onednn-devel, once) ...")
    try:
        include = headers_dir(download=True)
    except OpsUnavailable as exc:
        _write_marker(marker, str(exc))
        raise
    _remove_marker(marker)
    return include


def build(download=False, log=None, retry=False):
    """Compile the operators (once per source, Paddle and oneDNN version) and return the library's path.

    Args:
        download: fetch the oneDNN headers from PyPI when they are not found locally (only
            the explicit build step, ``python -m paddle_palm.ops``, does; training never does).
        log: optional ``log(message)`` for progress lines.
        retry: try again what failed before (a download or a compilation), instead of
            repeating the remembered reason.

    Returns:
        str: the path of the built shared library.

    Raises:
        OpsUnavailable: it cannot be built here; the message says why in one line.
    """
    check_platform()
    compiler = _compiler()
    if compiler is None:
        raise OpsUnavailable("no C++ compiler found (install g++, or set CXX)")
    folder = os.path.join(cache_dir(), "ops")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time across processes
        include = _local_headers(download, retry, log)
        stem = os.path.join(folder, f"palm_ops-{_build_key(include)}")
        output, failed = stem + ".so", stem + ".FAILED"
        if os.path.isfile(output):
            return output
        remembered = _read_marker(failed)
        if remembered and not retry:
            raise OpsUnavailable(f"compiling the operators failed earlier ({remembered}); "
                                 f"python -m paddle_palm.ops tries again")
        if log:
            log(f"compiling the oneDNN operators (once, about 30 s) into {output} ...")
        fd, partial = tempfile.mkstemp(dir=folder, prefix=".palm_ops-", suffix=".so")
        os.close(fd)
        try:
            done = subprocess.run(_compile_command(compiler, include, partial), capture_output=True,
                                  text=True, timeout=900, check=False)
            if done.returncode != 0:
                lines = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
                reason = (f"compiling {', '.join(os.path.basename(s) for s in SOURCES)} failed: "
                          f"{(lines or ['no output'])[0].strip()}")
                _write_marker(failed, reason)
                raise OpsUnavailable(reason)
            os.replace(partial, output)
            _remove_marker(failed)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return output


def load(log=None):
    """Build (when needed) and register the operators; remember the outcome for this process.

    Training and evaluation call this: it compiles when the headers are at hand but never
    downloads them.  Only the explicit build step, ``python -m paddle_palm.ops`` (which
    installing and CI run once), fetches them; without them this returns None and
    :func:`unavailable_reason` says, in one line, to run it.

    Args:
        log: optional ``log(message)`` for progress lines (a first build takes about 30 s).

    Returns:
        types.SimpleNamespace or None: ``path`` (the library), ``version`` (oneDNN), or None when
        the operators are unavailable (see :func:`unavailable_reason`).
    """
    if _state["tried"]:
        return _state["module"]
    _state["tried"] = True
    try:
        path = build(download=False, log=log)
        from paddle.utils.cpp_extension import load_op_meta_info_and_register_op

        load_op_meta_info_and_register_op(path)
        _state["module"] = types.SimpleNamespace(path=path, version=onednn_version())
    except OpsUnavailable as exc:
        _state["reason"] = str(exc)
    except (OSError, RuntimeError, ValueError) as exc:  # loading the library itself failed
        _state["reason"] = f"could not load the oneDNN operator: {exc}"
    return _state["module"]


def unavailable_reason():
    """Why :func:`load` returned None (one line), or None when it did not (or was not called)."""
    return _state["reason"]


def _openmp():
    """Paddle's Intel OpenMP runtime (the one its oneDNN library runs on), or None."""
    path = os.path.join(_paddle_dir(), "libs", "libiomp5.so")
    return ctypes.CDLL(path) if os.path.isfile(path) else None


def set_threads(count):
    """Threads for oneDNN (and Paddle's other CPU kernels); 0 asks without changing.

    Paddle's ``libdnnl.so.3`` runs its parallel regions on the OpenMP runtime that Paddle
    loads (Intel OpenMP, ``paddle/libs/libiomp5.so``), so setting it is
    ``paddle.base.core.set_num_threads``; the count in force is read back from that runtime
    (for the calling thread, which is the one that runs the operator).

    Returns:
        int: the count in force.
    """
    import paddle

    count = int(count)
    if count < 0:
        raise ValueError(f"threads must be at least 1 (or 0 to ask), got {count}")
    if count:
        paddle.base.core.set_num_threads(count)
    runtime = _openmp()
    return int(runtime.omp_get_max_threads()) if runtime is not None else count


@functools.lru_cache(maxsize=1)
def bf16_convolution_supported():
    """Whether Paddle's oneDNN has a bfloat16 convolution for this CPU.

    Asks the library itself (its C API, through ctypes: no compiler needed) for a bf16
    forward convolution: oneDNN implements one only with AVX-512 (BF16 natively, or
    emulated on AVX-512 cores) or AMX, and answers ``dnnl_unimplemented`` on an AVX2-only
    CPU, where bf16 can be neither fast nor tested.

    Returns:
        bool: False too when Paddle has no oneDNN library.
    """
    path = onednn_library()
    if path is None:
        return False
    lib = ctypes.CDLL(path)
    dims_t = ctypes.c_int64 * 12  # dnnl_dims_t (DNNL_MAX_NDIMS = 12)
    handle = ctypes.c_void_p
    lib.dnnl_engine_create.argtypes = [ctypes.POINTER(handle), ctypes.c_int, ctypes.c_size_t]
    lib.dnnl_memory_desc_create_with_tag.argtypes = [ctypes.POINTER(handle), ctypes.c_int, dims_t, ctypes.c_int,
                                                     ctypes.c_int]
    lib.dnnl_convolution_forward_primitive_desc_create.argtypes = [
        ctypes.POINTER(handle), handle, ctypes.c_int, ctypes.c_int, handle, handle, handle, handle,
        dims_t, dims_t, dims_t, dims_t, handle]
    engine = handle()
    if lib.dnnl_engine_create(ctypes.byref(engine), 1, 0) != 0:  # dnnl_cpu
        return False
    descs = []
    for shape in ((2, 16, 8, 8), (16, 16, 3, 3), (2, 16, 8, 8)):
        desc = handle()
        # data type 2 = dnnl_bf16, format tag 1 = dnnl_format_tag_any
        if lib.dnnl_memory_desc_create_with_tag(ctypes.byref(desc), 4, dims_t(*shape), 2, 1) != 0:
            return False
        descs.append(desc)
    primitive = handle()
    # prop 64 = dnnl_forward_training, algorithm 1 = dnnl_convolution_direct
    status = lib.dnnl_convolution_forward_primitive_desc_create(
        ctypes.byref(primitive), engine, 64, 1, descs[0], descs[1], None, descs[2],
        dims_t(1, 1), dims_t(0, 0), dims_t(1, 1), dims_t(1, 1), None)
    return status == 0  # 3 = dnnl_unimplemented


def bf16_training_note(enabled=False):
    """One line for ``--amp`` (bfloat16) on a CPU: what runs in bf16, or why training stays float32.

    On a CPU whose oneDNN has a bf16 convolution (AVX-512 BF16 natively, or AMX), the
    operator's convolutions multiply in bf16; everything else, the weights and the
    optimizer stay float32 (Paddle's own auto-cast does nothing for CPU training,
    ``docs/BENCHMARKS.md`` 2.7).  Elsewhere training runs in float32.

    Args:
        enabled: whether the convolutions were switched to bf16 (:func:`accelerate`).

    Returns:
        str: the message (no trailing newline).
    """
    if enabled:
        return ("amp bfloat16 on the CPU: convolutions multiply in bf16 (oneDNN operator); weights, batch norm "
                "and the optimizer stay float32")
    if not bf16_convolution_supported():
        return ("--amp bf16: this CPU has no bf16 convolution in oneDNN (it needs AVX-512 or AMX); "
                "training runs in float32")
    return ("--amp bf16: the oneDNN operator is not in use (--no-fast, or unavailable); "
            "training runs in float32")


# --------------------------------------------------------------------------- the operator


def _pair(value, name):
    if isinstance(value, int):
        return [value, value]
    value = [int(v) for v in value]
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or 2 ints, got {value}")
    return value


def _paddings(padding):
    """Paddle's ``padding`` (int, [h, w] or [top, bottom, left, right]) as 4 ints, or None."""
    if isinstance(padding, str):
        return None  # "SAME"/"VALID": left to Paddle
    if isinstance(padding, int):
        return [padding] * 4
    values = list(padding)
    if not all(isinstance(v, int) for v in values):
        return None  # per-dimension pairs ([[0,0],[0,0],[1,1],[1,1]]): left to Paddle
    if len(values) == 2:
        return [values[0], values[0], values[1], values[1]]
    if len(values) == 4:
        return values
    return None


def _check_shapes(x, weight, groups, channels_last=False):
    """The operator's shape rules, as ValueErrors naming the values (like paddle's conv2d)."""
    if len(x.shape) != 4 or len(weight.shape) != 4:
        raise ValueError(f"palm_conv2d expects a 4-D {'NHWC' if channels_last else 'NCHW'} input and a 4-D OIHW "
                         f"weight, got shapes {list(x.shape)} and {list(weight.shape)}")
    if groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"palm_conv2d: {weight.shape[0]} output channels do not divide into {groups} groups")
    channels = x.shape[3] if channels_last else x.shape[1]
    if channels != weight.shape[1] * groups:
        raise ValueError(f"palm_conv2d: the input has {channels} channels; the weight {list(weight.shape)} "
                         f"with groups={groups} expects {weight.shape[1] * groups}")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, data_format="NCHW", bf16=False):
    """``paddle.nn.functional.conv2d`` (float32, CPU) computed by oneDNN.

    Args:
        x: input, ``[N, C, H, W]`` (or ``[N, H, W, C]`` with ``data_format="NHWC"``) float32 on the CPU.
        weight: ``[O, C / groups, KH, KW]``.
        bias: optional ``[O]``.
        stride, dilation: int or two ints.
        padding: int, ``[h, w]`` or ``[top, bottom, left, right]``.
        groups: number of groups.
        data_format: ``"NCHW"`` or ``"NHWC"`` (channels last: no layout conversions inside).
        bf16: multiply in bfloat16 (``x``, ``weight`` and the output gradient rounded to
            bf16, float32 sums and results; :func:`bf16_convolution_supported` CPUs only).
            Tensors, gradients and weights stay float32.

    Returns:
        paddle.Tensor: ``[N, O, OH, OW]`` (``[N, OH, OW, O]`` for NHWC), differentiable with respect to ``x``, ``weight``, ``bias``.

    Raises:
        OpsUnavailable: the operator is not available here.
        ValueError: shapes that do not fit together (the operator's own checks, for
            dtypes and devices, raise what Paddle raises for a failed custom-operator check).
    """
    if load() is None:
        raise OpsUnavailable(unavailable_reason())
    from paddle import _C_ops

    paddings = _paddings(padding)
    if paddings is None:
        raise ValueError(f"padding {padding!r} is not supported by palm_conv2d; use explicit numbers")
    if data_format not in ("NCHW", "NHWC"):
        raise ValueError(f"data_format must be 'NCHW' or 'NHWC', got {data_format!r}")
    channels_last = data_format == "NHWC"
    _check_shapes(x, weight, int(groups), channels_last)
    out = _C_ops._run_custom_op("palm_conv2d", x, weight, _pair(stride, "stride"), paddings,
                                _pair(dilation, "dilation"), int(groups), not x.stop_gradient, channels_last,
                                bool(bf16))
    if isinstance(out, (list, tuple)):
        out = out[0]
    if bias is not None:
        out = out + (bias if channels_last else bias.reshape([1, -1, 1, 1]))
    return out


def _batch_norm_layout(x, bn):
    """"NHWC" or "NCHW" when ``palm_batch_norm`` can run ``bn`` on ``x``, else None."""
    data_format = getattr(bn, "_data_format", "NCHW")
    layout = ("NHWC" if data_format in ("NHWC", "NDHWC", "NLC")
              else "NCHW" if data_format in ("NCHW", "NCDHW", "NCL") and len(x.shape) >= 3 else None)
    applies = (layout is not None and bn.training and not getattr(bn, "_use_global_stats", False)
               and bn.weight is not None and bn.bias is not None and _custom_op_applies(x))
    return layout if applies else None


def batch_norm_act(x, bn, relu=True, residual=None):
    """``relu(bn(x) [+ residual])`` for a ``paddle.nn.BatchNorm2D`` layer, fused.

    In training mode, on float32 CPU tensors in dynamic mode, with the operators loaded
    (by :func:`load` or :func:`accelerate`; this function never builds them),
    the batch statistics, the normalisation, the add and the ReLU are one pass over the
    tensor forward and two backward (``batch_norm.cc``), channels-last or NCHW as ``bn``
    says, and ``bn``'s running mean and variance are updated as Paddle's ``batch_norm``
    updates them.  In every other case (evaluation, other dtypes or devices, a graph being
    traced, operators unavailable) it is Paddle's own ``bn(x)``, ``+`` and ``relu``: the
    same results up to float rounding.

    Args:
        x: the input, ``[N, H, W, C]`` when ``bn`` is channels-last, else ``[N, C, H, W]``.
        bn: a ``paddle.nn.BatchNorm2D`` (its ``_data_format`` says the layout).
        relu: apply the ReLU.
        residual: optional tensor of ``x``'s shape added before the ReLU.

    Returns:
        paddle.Tensor: the result, of ``x``'s shape.
    """
    import paddle.nn.functional as F

    layout = _batch_norm_layout(x, bn)
    if layout is not None and (residual is None or residual.shape == x.shape):
        from paddle import _C_ops

        momentum, epsilon, channels_last = float(bn._momentum), float(bn._epsilon), layout == "NHWC"
        if residual is None:
            out = _C_ops._run_custom_op("palm_batch_norm", x, bn.weight, bn.bias, bn._mean, bn._variance,
                                        momentum, epsilon, bool(relu), channels_last)
        else:
            out = _C_ops._run_custom_op("palm_batch_norm_add", x, bn.weight, bn.bias, bn._mean, bn._variance,
                                        residual, momentum, epsilon, bool(relu), channels_last)
        return out[0] if isinstance(out, (list, tuple)) else out
    y = bn(x)
    if residual is not None:
        y = y + residual
    return F.relu(y) if relu else y


def _custom_op_applies(*tensors):
    """Dynamic mode, float32 CPU tensors and the operators loaded: a custom kernel may run."""
    import paddle

    return (_state["module"] is not None and paddle.in_dynamic_mode()
            and all(t.dtype == paddle.float32 and t.place.is_cpu_place() for t in tensors))


def pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, mode="max", exclusive=True,
           data_format="NCHW"):
    """Max or average pooling with ``palm_pool2d`` (``pool.cc``), Paddle's semantics.

    The same results as ``paddle.nn.functional.max_pool2d`` / ``avg_pool2d`` (the
    gradient of a max goes to the first maximum of its window, as in Paddle), faster:
    the forward of max pooling records where each maximum was, so its backward does
    not search the windows again.  Falls back to Paddle's own pooling for graphs being
    traced, other dtypes or devices, padding strings, or when the operators are not
    loaded.

    Args:
        x: ``[N, C, H, W]`` (or ``[N, H, W, C]`` with ``data_format="NHWC"``).
        kernel_size: int or (height, width).
        stride: int or pair; defaults to ``kernel_size``.
        padding: int, (height, width) or (top, bottom, left, right).
        ceil_mode: round the output size up.
        mode: ``"max"`` or ``"avg"``.
        exclusive: averages leave the padding out of the divisor.
        data_format: ``"NCHW"`` or ``"NHWC"``.
    """
    import paddle.nn.functional as F

    stride = kernel_size if stride is None else stride
    pads = _paddings(padding)
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    if _custom_op_applies(x) and pads is not None and data_format in ("NCHW", "NHWC") and len(x.shape) == 4:
        from paddle import _C_ops

        out = _C_ops._run_custom_op("palm_pool2d", x, _pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                                    pads, bool(ceil_mode), mode == "max", bool(exclusive), data_format == "NHWC")
        return out[0] if isinstance(out, (list, tuple)) else out
    if mode == "max":
        return F.max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode, data_format=data_format)
    return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode, exclusive=exclusive,
                        data_format=data_format)


def global_avg_pool2d(x, data_format="NCHW"):
    """``paddle.nn.functional.adaptive_avg_pool2d(x, 1)`` with ``palm_pool2d`` when it applies."""
    import paddle.nn.functional as F

    if _custom_op_applies(x) and len(x.shape) == 4 and data_format in ("NCHW", "NHWC"):
        # Dynamic mode only (checked first: a traced graph may have unknown sizes here).
        size = x.shape[1:3] if data_format == "NHWC" else x.shape[2:4]
        return pool2d(x, size, 1, 0, mode="avg", data_format=data_format)
    return F.adaptive_avg_pool2d(x, 1, data_format=data_format)


def scale_add(x, w, z, relu=False, data_format="NCHW"):
    """``act(x * w + z)``, the end of a squeeze-and-excitation residual block, in one pass.

    ``x`` and ``z`` are maps of the same shape, ``w`` one weight per image and channel
    (``[N, C, 1, 1]``, or ``[N, 1, 1, C]`` for NHWC); ``act`` is ReLU or nothing.  With
    the operators loaded, in dynamic mode on float32 CPU tensors, this is
    ``palm_scale_add`` (``excite.cc``: one pass forward, one backward); otherwise
    Paddle's multiply, add and ReLU: the same results up to float rounding.
    """
    import paddle.nn.functional as F

    if (_custom_op_applies(x, w, z) and len(x.shape) == 4 and z.shape == x.shape
            and data_format in ("NCHW", "NHWC")):
        from paddle import _C_ops

        out = _C_ops._run_custom_op("palm_scale_add", x, w, z, bool(relu), data_format == "NHWC")
        return out[0] if isinstance(out, (list, tuple)) else out
    y = x * w + z
    return F.relu(y) if relu else y


def ema_update(shadows, weights, decay):
    """``shadow = decay * shadow + (1 - decay) * weight`` for each pair, in place, in one pass.

    With the operators loaded (``average.cc``), float32 CPU tensors in dynamic mode: one
    ``palm_ema_update`` call for all of them, the same float32 values as Paddle's
    ``shadow * decay + weight * (1 - decay)``.  Returns False (and changes nothing) when the
    operator cannot run them; the caller then computes it with Paddle.
    """
    import paddle

    if not shadows or not _custom_op_applies(*shadows, *weights):
        return False
    if any(s.shape != w.shape for s, w in zip(shadows, weights)) or len(shadows) != len(weights):
        return False
    with paddle.no_grad():
        from paddle import _C_ops

        _C_ops._run_custom_op("palm_ema_update", list(shadows), list(weights), float(decay), 1.0 - float(decay))
    return True


# --------------------------------------------------------------------------- switching layers


def _supported(layer):
    return (getattr(layer, "_data_format", "NCHW") in ("NCHW", "NHWC")
            and getattr(layer, "_padding_mode", "zeros") == "zeros"
            and _paddings(layer._padding) is not None
            and len(layer.weight.shape) == 4)


def _onednn_forward(self, x):
    import paddle

    if (paddle.in_dynamic_mode() and x.dtype == paddle.float32 and x.place.is_cpu_place()
            and self.weight.dtype == paddle.float32):
        return conv2d(x, self.weight, self.bias, self._stride, self._padding, self._dilation, self._groups,
                      self._data_format, bf16=vars(self).get("_palm_bf16", False))
    return type(self).forward(self, x)  # graphs being traced, other dtypes or devices: Paddle's own


def _pool_forward(self, x):
    """``nn.MaxPool2D`` / ``nn.AvgPool2D`` through :func:`pool2d`."""
    import paddle

    mode = "max" if isinstance(self, paddle.nn.MaxPool2D) else "avg"
    return pool2d(x, self.ksize, self.stride, self.padding, self.ceil_mode, mode,
                  getattr(self, "exclusive", True), self.data_format)


def _global_pool_forward(self, x):
    """``nn.AdaptiveAvgPool2D(1)`` through :func:`global_avg_pool2d`."""
    return global_avg_pool2d(x, self._data_format)


def _pool_layer_forward(layer):
    """The operator's forward for a pooling layer it can run, else None."""
    import paddle.nn as nn

    if type(layer) is nn.MaxPool2D and not layer.return_mask:
        return _pool_forward
    if type(layer) is nn.AvgPool2D and layer.divisor is None:
        return _pool_forward
    if type(layer) is nn.AdaptiveAvgPool2D and layer._output_size in (1, [1, 1], (1, 1)):
        return _global_pool_forward
    return None


def accelerate(model, channels_last=False, bf16=False):
    """Make every ``paddle.nn.Conv2D`` of ``model`` (zero padding) run ``palm_conv2d``.

    Its pooling layers (``MaxPool2D``, ``AvgPool2D``, ``AdaptiveAvgPool2D(1)``) run
    ``palm_pool2d`` (:func:`pool2d`), and networks with fused blocks (a ``set_fused``
    method, e.g. the SE-ResNets) use :func:`scale_add` and the other fused kernels.
    Only the forward method of each layer instance changes: parameters, state dicts,
    checkpoints and exported programs (``paddle.jit``) are those of the plain layers, and
    inputs that are not float32 CPU tensors in dynamic mode still go to Paddle's convolution.

    Args:
        model: a ``paddle.nn.Layer``.
        channels_last: also let the networks that can (those with a ``set_channels_last``
            method, e.g. :class:`paddle_palm.models.resnet.ResNet`) run their inner layers
            on NHWC tensors, which spares the convolutions their layout conversions
            (ResNet-50 training about 1.2x faster again).  Inputs and outputs keep their
            layout; :func:`restore` switches back.
        bf16: the convolutions multiply in bfloat16 (float32 weights, gradients and
            everything else): mixed-precision training on CPUs with AVX-512 BF16 or AMX.

    Returns:
        int: the number of convolution layers switched (0 when the operator is unavailable).

    Raises:
        OpsUnavailable: ``bf16`` on a CPU without a bf16 convolution in oneDNN.
    """
    import paddle

    if load() is None:
        return 0
    if bf16 and not bf16_convolution_supported():
        raise OpsUnavailable("this CPU has no bf16 convolution in oneDNN (it needs AVX-512 or AMX)")
    if channels_last:
        for layer in model.sublayers(include_self=True):
            # Networks say whether channels-last was measured to pay for them (channels_last_pays).
            if callable(getattr(layer, "set_channels_last", None)) and getattr(layer, "channels_last_pays", True):
                layer.set_channels_last(True)
    switched = 0
    for layer in model.sublayers(include_self=True):
        if callable(getattr(layer, "set_fused", None)):
            layer.set_fused(True)
        if "forward" in vars(layer):
            continue
        if type(layer) is paddle.nn.Conv2D and _supported(layer):
            layer.forward = types.MethodType(_onednn_forward, layer)
            if bf16:
                layer._palm_bf16 = True
            switched += 1
        elif (pool_forward := _pool_layer_forward(layer)) is not None:
            layer.forward = types.MethodType(pool_forward, layer)
    return switched


def restore(model):
    """Undo :func:`accelerate`: the layers use Paddle's convolution again.

    Returns:
        int: the number of convolution layers restored.
    """
    restored = 0
    for layer in model.sublayers(include_self=True):
        if getattr(layer, "channels_last", False) and callable(getattr(layer, "set_channels_last", None)):
            layer.set_channels_last(False)
        if callable(getattr(layer, "set_fused", None)):
            layer.set_fused(False)
        if _switched(layer):
            del layer.forward
            vars(layer).pop("_palm_bf16", None)
            restored += 1
        elif _switched(layer, (_pool_forward, _global_pool_forward)):
            del layer.forward
    return restored


def _switched(layer, forwards=(_onednn_forward,)):
    """Whether :func:`accelerate` gave this layer instance one of the operator's ``forwards``
    (by default the convolution's)."""
    method = vars(layer).get("forward")
    return isinstance(method, types.MethodType) and method.__func__ in forwards


def is_accelerated(model):
    """Whether any layer of ``model`` runs ``palm_conv2d``."""
    return any(_switched(layer) for layer in model.sublayers(include_self=True))


def is_bf16(model):
    """Whether ``model``'s convolutions run ``palm_conv2d`` in bfloat16 (:func:`accelerate` with ``bf16``)."""
    return any(_switched(layer) and vars(layer).get("_palm_bf16", False) for layer in model.sublayers(include_self=True))
