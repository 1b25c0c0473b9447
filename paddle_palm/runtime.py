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

One object owns all of it: :class:`ExecutionPath` applies the process settings
(:meth:`~ExecutionPath.setup`) and a model's oneDNN convolutions and channels-last
stages (:meth:`~ExecutionPath.apply`), and :meth:`~ExecutionPath.restore` undoes them;
the trainer, evaluation, prediction and Grad-CAM go through it.  Importing this
module changes nothing; Paddle is imported only by the calls that need it (importing
it takes seconds, and the tools install their signal handlers first).

Use::

    from paddle_palm import runtime
    with runtime.ExecutionPath(device="auto", fast=True, channels_last=True) as path:
        path.apply(model)                                # oneDNN convolutions, NHWC stages
        ...                                              # train
    # threads, denormals, MKL's code path and the model are as they were

    model = runtime.ExecutionPath(fast=True).apply(model)  # evaluation: convolutions only
"""

import contextlib
import ctypes
import ctypes.util
import os
import platform
import warnings

from paddle_palm import compat, ops
from paddle_palm.cpu import cpu_info, usable_cores
from paddle_palm.engine.device import select_device
from paddle_palm.errors import ConfigError

__all__ = ["ExecutionPath", "MAX_THREADS", "accelerate_model", "cpu_info", "default_threads", "flush_denormal_enabled",
           "keep_freed_memory", "prepare_environment", "processes_on_this_machine", "set_flush_denormal",
           "setup_runtime", "usable_cores"]

#: The SSE control-register bits: FTZ (flush-to-zero, bit 15) and DAZ (denormals-are-zero, bit 6).
_MXCSR_FTZ = 0x8000
_MXCSR_DAZ = 0x0040

#: ``MKL_DEBUG_CPU_TYPE=5``: "AVX2 processor", the fastest code path the bundled MKL offers AMD CPUs.
_MKL_AVX2_CPU_TYPE = "5"

_DEVICES = ("auto", "cpu", "gpu")


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


def processes_on_this_machine(environ=None):
    """How many processes of a data-parallel run share this machine's cores (1 outside one).

    ``python -m paddle.distributed.launch`` tells each process ``PADDLE_LOCAL_SIZE`` (the
    processes on this machine) and ``PADDLE_TRAINERS_NUM`` (all of them, which the trainer
    reads for the world size); the first is used when present, else the second.

    Args:
        environ: the environment to read (default ``os.environ``).

    Returns:
        int: at least 1 (an unset or unreadable value counts as 1).
    """
    environ = os.environ if environ is None else environ
    for name in ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM"):
        try:
            value = int(environ.get(name) or 0)
        except ValueError:
            continue
        if value >= 1:
            return value
    return 1


def default_threads(cores=None, processes=None):
    """Math threads of one process by default: the usable cores shared by the processes on this machine.

    Two processes of ``paddle.distributed.launch --nproc_per_node 2`` on 2 cores get one thread
    each instead of two apiece (four threads fighting over two cores).

    Args:
        cores: usable cores (default :func:`usable_cores`).
        processes: processes sharing them (default :func:`processes_on_this_machine`).

    Returns:
        int: ``cores // processes``, at least 1.
    """
    cores = usable_cores() if cores is None else int(cores)
    processes = processes_on_this_machine() if processes is None else int(processes)
    return max(1, cores // max(1, processes))


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
        threads: math threads on the CPU; None means every usable core (fast; shared
            among the processes of a data-parallel run, :func:`default_threads`) or
            Paddle's default of 1 (not fast).

    Returns:
        dict: ``device``, ``fast``, ``threads`` (in force, or None when untouched),
        ``mkl_cpu_type`` (``MKL_DEBUG_CPU_TYPE`` in force or None), ``flush_denormal``,
        ``train_step`` (how the trainer's step runs: ``"dygraph"``, the fastest correct way
        on Paddle 3.3 CPUs, ``docs/BENCHMARKS.md`` section 2),
        ``threads`` also sets oneDNN's threads when :func:`accelerate_model` is used,
        ``cpu`` (the model name), ``avx512_bf16``, and with ``fast`` on a CPU
        ``keep_freed_memory`` (:func:`keep_freed_memory`).

    Raises:
        ConfigError: an unknown device, a GPU without CUDA support, or a bad ``threads``.
    """
    threads = _check_threads(threads)
    cpu = cpu_info()
    device = select_device(device)  # sets Paddle's device; nothing computed yet
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
    if fast or threads is not None:
        count = threads if threads is not None else default_threads(cpu["cores"])
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


def accelerate_model(model, threads=None, log=None, channels_last=False, bf16=False):
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
        threads: oneDNN threads; None means :func:`default_threads` (every usable core
            outside data-parallel runs).
        log: optional ``log(message)``.
        channels_last: run the inner layers of networks where it pays (ResNets, SENet18) on NHWC
            tensors, with the operators' fused batch norm + ReLU (+ add) in training
            (:func:`paddle_palm.ops.accelerate`; feature maps seen by hooks inside those
            layers are then NHWC, so evaluation tools leave it off).
        bf16: the convolutions multiply in bfloat16 where oneDNN has a bf16 convolution
            for this CPU (:func:`paddle_palm.ops.bf16_convolution_supported`); float32 elsewhere.

    Returns:
        str: ``"onednn"`` when convolutions now run on oneDNN, else ``"paddle"``.
    """
    import paddle

    if not paddle.get_device().startswith("cpu"):
        return "paddle"
    if ops.load(log=log) is None:
        if log:
            log(f"note: oneDNN convolutions unavailable ({ops.unavailable_reason()}); using Paddle's convolution")
        return "paddle"
    ops.set_threads(threads or default_threads())
    bf16 = bool(bf16) and ops.bf16_convolution_supported()
    return "onednn" if ops.accelerate(model, channels_last=channels_last, bf16=bf16) else "paddle"


# --------------------------------------------------------------------------- the execution path


def _math_threads():
    """The CPU math threads in force (Paddle's OpenMP runtime), or 0 when it cannot be read."""
    return ops.set_threads(0)


class ExecutionPath:
    """How a run computes, applied as one piece and restored as one piece.

    It owns every change the fast CPU path makes: the process settings of
    :func:`setup_runtime` (device, math threads, ``MKL_DEBUG_CPU_TYPE``, denormal
    flushing, glibc's ``mallopt``) and, per model, :func:`accelerate_model`'s
    oneDNN convolutions (each ``Conv2D``'s ``forward`` replaced) and channels-last
    stages (the layers' ``_data_format`` rewritten).  :meth:`restore` puts back what
    was there before, except ``mallopt``, which glibc cannot report (it changes only
    where freed memory goes, never a result).  As a context manager it runs
    :meth:`setup` on entry and :meth:`restore` on exit.

    Args:
        fast: use the fast path; False leaves Paddle's defaults and the models as they are
            (``threads`` still applies).
        device: ``"auto"``, ``"cpu"``, ``"gpu"`` or ``"gpu:N"`` for :meth:`setup`; None keeps
            Paddle's current device (evaluation and prediction, which do not choose one).
        threads: math threads on the CPU; None means every usable core, shared among the
            processes of a data-parallel run (fast), or Paddle's default.
        channels_last: also run the stages of networks where it pays (ResNets, SENet18) on NHWC
            tensors (training; evaluation tools leave it off so hooks see NCHW maps).
        bf16: convolutions in bfloat16 where the CPU has them (``--amp`` training on a CPU);
            ``info["bf16"]`` says whether they do.
        log: optional ``log(message)``, told when the oneDNN operator is unavailable.

    Attributes:
        info: the settings in force (:func:`setup_runtime`'s dict, with ``conv`` once a
            model was applied); empty before :meth:`setup`.
    """

    def __init__(self, fast=True, device=None, threads=None, channels_last=False, log=None, bf16=False):
        self.fast = bool(fast)
        self.device = device
        self.threads = _check_threads(threads)
        self.channels_last = bool(channels_last)
        self.bf16 = bool(bf16)
        self.log = log
        self.info = {}
        self._models = []
        self._saved = {}

    def setup(self):
        """Choose the device and apply the process settings (once); return :attr:`info`.

        Raises:
            ConfigError: an unknown device, a GPU without CUDA support.
        """
        if "device" in self.info:
            return self.info
        import paddle

        self._saved.update(device=paddle.get_device(), flush_denormal=flush_denormal_enabled(),
                           mkl_cpu_type=os.environ.get("MKL_DEBUG_CPU_TYPE"))
        self._remember_threads()
        self.info.update(setup_runtime(device=self.device or self._saved["device"], fast=self.fast,
                                       threads=self.threads))
        return self.info

    def apply(self, model):
        """Switch ``model`` to the fast path (on the CPU, when ``fast``); return ``model``.

        Convolutions run on oneDNN when the operator is built (else one line to ``log``
        and Paddle's own), and with ``channels_last`` the stages run NHWC.  Parameters and
        state dicts do not change; :meth:`restore` switches the model back.
        """
        if not self.fast:
            return model
        self._remember_threads()
        threads = self.info.get("threads") or self.threads
        conv = accelerate_model(model, threads=threads, log=self.log, channels_last=self.channels_last, bf16=self.bf16)
        self.info["conv"] = conv
        self.info["bf16"] = ops.is_bf16(model)
        self._models.append(model)
        return model

    def restore(self):
        """Undo :meth:`apply` on every model and :meth:`setup`'s process settings."""
        while self._models:
            ops.restore(self._models.pop())
        saved, self._saved = self._saved, {}
        if saved.get("threads"):
            compat.set_cpu_math_threads(saved["threads"])
        if "flush_denormal" in saved and flush_denormal_enabled() != saved["flush_denormal"]:
            set_flush_denormal(saved["flush_denormal"])
        if "mkl_cpu_type" in saved:
            if saved["mkl_cpu_type"] is None:
                os.environ.pop("MKL_DEBUG_CPU_TYPE", None)
            else:
                os.environ["MKL_DEBUG_CPU_TYPE"] = saved["mkl_cpu_type"]
        if "device" in saved:
            import paddle

            if paddle.get_device() != saved["device"]:
                paddle.set_device(saved["device"])
        self.info = {}

    def _remember_threads(self):
        if "threads" not in self._saved:
            self._saved["threads"] = _math_threads()

    def __enter__(self):
        self.setup()
        return self

    def __exit__(self, *exc):
        self.restore()

    @staticmethod
    @contextlib.contextmanager
    def channels_first(model):
        """Run ``model``'s stages on NCHW tensors inside the block, whatever path it was given.

        Forward hooks inside the stages (Grad-CAM's) then see ``[N, C, h, w]`` maps; the
        model's layout is put back on exit.
        """
        switched = bool(getattr(model, "channels_last", False))
        if switched:
            model.set_channels_last(False)
        try:
            yield model
        finally:
            if switched:
                model.set_channels_last(True)
