"""Execution settings for CPU and GPU runs: math-library dispatch, threads, denormals.

Why this module exists (measured figures and commands: ``docs/BENCHMARKS.md``).
Paddle 3.3 on a CPU, used as is, leaves most of the machine idle:

* **One thread.**  ``import paddle`` sets ``OMP_NUM_THREADS=1`` when it is unset
  (``paddle/base/__init__.py``), so MKL (which does the convolutions' matrix
  products in dynamic mode) runs on one core.  :func:`setup_runtime` calls
  ``paddle.base.core.set_num_threads`` with the number of usable cores.
* **The generic MKL code path on AMD CPUs.**  Paddle's wheels bundle an MKL
  (``libmklml_intel.so``) that picks its kernels by CPU vendor: on an AMD CPU it
  runs ``mkl_blas_def_sgemm_*`` (no AVX2/AVX-512) instead of
  ``mkl_blas_avx2_sgemm_*``.  This MKL still honours ``MKL_DEBUG_CPU_TYPE=5``,
  which selects the AVX2 kernels; it is read when MKL first dispatches, so
  :func:`prepare_environment` must run before the first computation (setting
  it after ``import paddle`` but before any tensor work is fine).
* **Denormal numbers.**  Values below 1.2e-38 make x86 arithmetic much slower.
  :func:`set_flush_denormal` turns on the SSE flush-to-zero (FTZ) and
  denormals-are-zero (DAZ) bits of the calling thread (Intel OpenMP workers
  copy them at each parallel region, ``KMP_INHERIT_FP_CONTROL``).  Results
  change only for magnitudes below 1.2e-38.
* **No oneDNN convolutions in dynamic mode.**  The biggest lever: Paddle's dygraph
  convolution on a CPU is im2col + MKL per image.  :func:`accelerate_model` switches
  a model's ``Conv2D`` layers to :mod:`paddle_palm.ops`' oneDNN operator (built
  from the library inside the Paddle wheel), and runs ResNet's stages channels-last:
  ResNet-50 training about 2.9x faster, at 0.88x of PyTorch on the same machine.

Not used, because measured slower or broken in Paddle 3.3.1 on CPU (details in
``docs/BENCHMARKS.md``): ``FLAGS_use_mkldnn``/``FLAGS_use_onednn`` in dynamic mode
(the dygraph kernel key stays ``CPU``: convolutions still run im2col + MKL),
``paddle.jit.to_static`` with oneDNN (segmentation fault in
``run_program_ad_func``), static-graph training with oneDNN (``pool2d_grad``
raises ``dnnl::error``; with an average pool instead it runs, but batch norm and
ReLU gradients fall back to oneDNN's reference kernels and training is slower),
bf16 ``paddle.amp.auto_cast`` (a no-op on CPU: convolutions stay float32).

Use::

    from paddle_palm import runtime
    info = runtime.setup_runtime(device="auto", fast=True, threads=None)
    runtime.accelerate_model(model, threads=info["threads"])   # oneDNN convolutions
    step = runtime.compile_train_step(step, model)   # the trainer's hook
"""

import ctypes
import ctypes.util
import os
import platform
import warnings

from paddle_palm.errors import ConfigError

#: The SSE control-register bits: FTZ (flush-to-zero, bit 15) and DAZ (denormals-are-zero, bit 6).
_MXCSR_FTZ = 0x8000
_MXCSR_DAZ = 0x0040

#: ``MKL_DEBUG_CPU_TYPE=5``: "AVX2 processor", the fastest code path the bundled MKL offers AMD CPUs.
_MKL_AVX2_CPU_TYPE = "5"

_DEVICES = ("auto", "cpu", "gpu")


# --------------------------------------------------------------------------- the CPU


def cpu_info(path="/proc/cpuinfo"):
    """What the CPU is and which instruction sets it has.

    Args:
        path: the ``cpuinfo`` file to read (Linux); missing on other systems.

    Returns:
        dict: ``vendor`` (e.g. ``"AuthenticAMD"``, ``"GenuineIntel"``, ``""`` when unknown),
        ``model`` (the model name), ``flags`` (a set of flag names), ``avx2``,
        ``avx512`` (``avx512f``), ``avx512_bf16`` (booleans) and ``cores`` (usable cores,
        :func:`usable_cores`).
    """
    vendor, model, flags = "", platform.processor(), set()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "model name" and value.strip():
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "vendor": vendor,
        "model": model,
        "flags": flags,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "cores": usable_cores(),
    }


def usable_cores():
    """Physical cores this process may run on (hyper-threads counted once).

    Returns:
        int: at least 1.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_id", encoding="ascii") as handle:
                core = handle.read().strip()
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id", encoding="ascii") as handle:
                package = handle.read().strip()
            cores.add((package, core))
        except OSError:
            cores.add(("cpu", cpu))
    return max(1, len(cores))


#: Most math threads accepted: far above any CPU this runs on, far below what aborts OpenMP (100000 does).
MAX_THREADS = 256


def _check_threads(threads):
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads must be an integer from 1 to {MAX_THREADS} or None (all cores), got {threads!r}")
    return threads


# --------------------------------------------------------------------------- environment (before any computation)


def prepare_environment(cpu=None):
    """Set the environment variables that must be in place before the first computation.

    Safe to call before or after ``import paddle``, but before any tensor work:
    the bundled MKL reads ``MKL_DEBUG_CPU_TYPE`` once, at its first dispatch.
    A value the user already set is kept.

    Args:
        cpu: the result of :func:`cpu_info` (read when None).

    Returns:
        dict: ``{"MKL_DEBUG_CPU_TYPE": value or None}``, what is now in force.
    """
    cpu = cpu_info() if cpu is None else cpu
    if cpu["vendor"] == "AuthenticAMD" and cpu["avx2"]:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", _MKL_AVX2_CPU_TYPE)
    return {"MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE")}


# --------------------------------------------------------------------------- denormals


class _FloatingPointModes(ctypes.Structure):
    """glibc's ``femode_t`` on x86-64: the x87 control word and the SSE MXCSR register."""

    _fields_ = [("control_word", ctypes.c_ushort), ("reserved", ctypes.c_ushort), ("mxcsr", ctypes.c_uint)]


def _libm():
    if platform.machine().lower() not in ("x86_64", "amd64") or not platform.system() == "Linux":
        return None
    name = ctypes.util.find_library("m")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.fegetmode, lib.fesetmode  # noqa: B018  (glibc >= 2.25: AttributeError before)
    except (OSError, AttributeError):
        return None
    return lib


def _mxcsr():
    lib = _libm()
    if lib is None:
        return None
    modes = _FloatingPointModes()
    if lib.fegetmode(ctypes.byref(modes)) != 0:
        return None
    return modes.mxcsr


def flush_denormal_enabled():
    """True when both FTZ and DAZ are on for the calling thread (False where unsupported)."""
    value = _mxcsr()
    return value is not None and (value & (_MXCSR_FTZ | _MXCSR_DAZ)) == (_MXCSR_FTZ | _MXCSR_DAZ)


def set_flush_denormal(enabled=True):
    """Flush denormal floats to zero (FTZ + DAZ) on the calling thread, or stop doing so.

    Uses glibc's ``fegetmode``/``fesetmode`` (x86-64 Linux).  Threads started later by
    Intel OpenMP (MKL, oneDNN) copy the setting at each parallel region.

    Args:
        enabled: True to flush, False to restore IEEE gradual underflow.

    Returns:
        bool: True when the state asked for is now in force; False when this platform
        offers no way to set it (nothing is changed then).
    """
    lib = _libm()
    if lib is None:
        return False
    modes = _FloatingPointModes()
    if lib.fegetmode(ctypes.byref(modes)) != 0:
        return False
    if enabled:
        modes.mxcsr |= _MXCSR_FTZ | _MXCSR_DAZ
    else:
        modes.mxcsr &= ~(_MXCSR_FTZ | _MXCSR_DAZ) & 0xFFFFFFFF
    if lib.fesetmode(ctypes.byref(modes)) != 0:
        return False
    return flush_denormal_enabled() == bool(enabled)


# --------------------------------------------------------------------------- the runtime


def keep_freed_memory():
    """Ask glibc to keep large freed buffers instead of returning them to the system.

    Every training step frees and re-allocates the same large activation buffers.
    By default glibc hands buffers above its mmap threshold back to the kernel, which
    must then zero fresh pages at the next allocation: 0.3-0.6 s of system time per
    ResNet-50 step at batch 10 here.  Raising ``M_MMAP_THRESHOLD`` and
    ``M_TRIM_THRESHOLD`` keeps them in the process (about 1.13x faster steps,
    ``docs/BENCHMARKS.md`` section 2.10).  Results cannot change: only where memory
    comes from does.

    Returns:
        bool: True when the setting took effect (Linux with glibc), else False.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
        ok = libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
    except (OSError, AttributeError):
        return False
    return ok


def _resolve_device(device):
    from paddle_palm.engine.device import select_device

    return select_device(device)


def setup_runtime(device="auto", fast=True, threads=None):
    """Choose the device and, on a CPU, the settings that make training fast.

    With ``fast=True`` on a CPU: the MKL code path fix (:func:`prepare_environment`),
    one math thread per usable core, freed memory kept for reuse
    (:func:`keep_freed_memory`), and denormal flushing
    (:func:`set_flush_denormal`).  With ``fast=False``: Paddle's own defaults
    (one thread unless ``threads`` is given, gradual underflow), i.e. plain dygraph.
    Call it once, at the start, before any tensor is computed.

    Args:
        device: ``"auto"`` (a GPU when Paddle has one, else the CPU), ``"cpu"``, ``"gpu"`` or ``"gpu:N"``.
        fast: use the fast settings (the default); False gives plain Paddle dygraph.
        threads: math threads on the CPU; None means every usable core (fast) or
            Paddle's default of 1 (not fast).

    Returns:
        dict: ``device``, ``fast``, ``threads`` (in force, or None when untouched),
        ``mkl_cpu_type`` (``MKL_DEBUG_CPU_TYPE`` in force or None), ``flush_denormal``,
        ``train_step`` (what :func:`compile_train_step` does: ``"dygraph"``),
        ``threads`` also sets oneDNN's threads when :func:`accelerate_model` is used,
        ``cpu`` (the model name), ``avx512_bf16``, and with ``fast`` on a CPU
        ``keep_freed_memory`` (:func:`keep_freed_memory`).

    Raises:
        ConfigError: an unknown device, a GPU without CUDA support, or a bad ``threads``.
    """
    threads = _check_threads(threads)
    cpu = cpu_info()
    device = _resolve_device(device)  # sets Paddle's device; nothing computed yet
    # The CPU settings tune Paddle's CPU kernels only: none of them runs on a GPU.
    on_cpu = device == "cpu"
    env = prepare_environment(cpu) if (fast and on_cpu) else {"MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE")}
    info = {
        "device": device,
        "fast": bool(fast),
        "threads": None,
        "mkl_cpu_type": env["MKL_DEBUG_CPU_TYPE"],
        "flush_denormal": False,
        "train_step": "dygraph",
        "cpu": cpu["model"],
        "avx512_bf16": cpu["avx512_bf16"],
    }
    if not on_cpu:
        return info
    from paddle_palm import compat

    if fast or threads is not None:
        count = threads if threads is not None else cpu["cores"]
        compat.set_cpu_math_threads(count)
        info["threads"] = count
    if fast:
        info["keep_freed_memory"] = keep_freed_memory()
        compat.cache_numpy_float_limits()  # before the flush (numpy 1.x warns otherwise)
        info["flush_denormal"] = set_flush_denormal(True)
        if not info["flush_denormal"]:
            warnings.warn("could not turn on denormal flushing on this platform; training may run slower",
                          RuntimeWarning, stacklevel=2)
    return info


def accelerate_model(model, threads=None, log=None, channels_last=False):
    """Run ``model``'s convolutions with oneDNN on the CPU (:mod:`paddle_palm.ops`).

    Paddle's dynamic-graph convolution on a CPU is im2col + MKL; oneDNN's direct
    convolutions (in the library Paddle ships) are about twice as fast, and with
    channels-last stages ResNet-50 trains at 0.88x of PyTorch's speed (``docs/BENCHMARKS.md``).  The operator
    is compiled on first use and cached (its headers come only from the build step
    ``python -m paddle_palm.ops``; training never downloads); when it cannot be (no
    compiler, no headers, not x86-64 Linux) the model keeps Paddle's convolution and
    ``log`` gets one line saying why.  Does nothing off the CPU.

    Args:
        model: a ``paddle.nn.Layer``; its ``Conv2D`` layers are switched in place
            (:func:`paddle_palm.ops.accelerate`; :func:`paddle_palm.ops.restore` undoes it).
        threads: oneDNN threads; None means every usable core.
        log: optional ``log(message)``.
        channels_last: run the inner layers of networks where it pays (ResNets) on NHWC
            tensors, with the operators' fused batch norm + ReLU (+ add) in training
            (:func:`paddle_palm.ops.accelerate`; feature maps seen by hooks inside those
            layers are then NHWC, so evaluation tools leave it off).

    Returns:
        str: ``"onednn"`` when convolutions now run on oneDNN, else ``"paddle"``.
    """
    import paddle

    if not paddle.get_device().startswith("cpu"):
        return "paddle"
    from paddle_palm import ops

    if ops.load(log=log) is None:
        if log:
            log(f"note: oneDNN convolutions unavailable ({ops.unavailable_reason()}); using Paddle's convolution")
        return "paddle"
    ops.set_threads(threads or usable_cores())
    return "onednn" if ops.accelerate(model, channels_last=channels_last) else "paddle"


def compile_train_step(step, model):
    """The fastest correct way to run ``step(images, labels) -> (loss, logits)`` on this runtime.

    On Paddle 3.3.1 CPUs that is the dynamic-graph step itself, with the model's
    convolutions switched to oneDNN by :func:`accelerate_model` (the trainer calls it):
    ``paddle.jit.to_static`` training runs Paddle's im2col + MKL kernels and measured no
    faster (ResNet-50 0.72x, SqueezeNet 1.1 1.18x of dygraph, within noise), the static
    graph was slower, and their oneDNN variants crash (``docs/BENCHMARKS.md`` section 2).
    The function exists so that the training loop has one place to ask; it returns
    ``step`` unchanged.

    Args:
        step: the train step (forward and loss; the caller runs backward and the update).
        model: the network ``step`` uses.

    Returns:
        callable: a step with the same signature and results.
    """
    del model
    return step
