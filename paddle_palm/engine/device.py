"""Where a run computes and in which precision: the decisions, as small pure functions.

The trainer, the prediction tool and ``bench/gpu_check.py`` ask the functions here
what to do; only :func:`probe` and :func:`select_device` look at the installed Paddle,
so the decisions themselves are tested on any machine (``tests/test_device.py``).

* Device: ``--device auto`` takes the GPU when the Paddle build has CUDA and sees a
  device, else the CPU; ``gpu`` (or ``gpu:N``) without one is a one-line error.
  Under ``paddle.distributed.launch --devices 0,1`` every process asks for ``gpu``
  and Paddle gives it its own card.
* CPU-only settings (math threads, MKL dispatch, denormal flushing, the oneDNN
  convolution operator) apply only when the device is the CPU: on CUDA, Paddle's
  cuDNN convolutions run.
* Mixed precision (``--amp``): on a GPU float16 with dynamic loss scaling
  (``paddle.amp.GradScaler``: float16 gradients underflow without it), or bfloat16
  (no scaling needed: float32's exponent range) on cards of compute capability 8.0
  (Ampere) or newer; on a CPU bfloat16 auto-cast.
* Data loading: on a GPU the DataLoader's batches go through pinned (page-locked)
  host memory so the copy to the card is asynchronous.
"""

import dataclasses

from paddle_palm.errors import ConfigError

#: ``--device`` values.
DEVICES = ("auto", "cpu", "gpu")

#: ``--amp-dtype`` values.
AMP_DTYPES = ("auto", "float16", "bfloat16")

#: The first CUDA compute capability with bfloat16 tensor cores (Ampere, e.g. A100, RTX 30xx).
BF16_MIN_CAPABILITY = (8, 0)


def parse_device(text):
    """Split a device string: ``"gpu:1"`` -> ``("gpu", 1)``, ``"cpu"`` -> ``("cpu", None)``.

    Raises:
        ConfigError: anything but ``auto``, ``cpu``, ``gpu`` or ``gpu:N``.
    """
    if isinstance(text, str):
        kind, _, index = text.strip().lower().partition(":")
        if kind in DEVICES and not index:
            return kind, None
        if kind == "gpu" and index.isdigit():
            return kind, int(index)
    raise ConfigError(f"device must be one of {', '.join(DEVICES)} (or gpu:N), got {text!r}")


def choose_device(requested, cuda_build, gpu_count):
    """The device to run on, from what was asked and what Paddle offers.

    Args:
        requested: ``"auto"``, ``"cpu"``, ``"gpu"`` or ``"gpu:N"``.
        cuda_build: the installed Paddle was built with CUDA (``paddlepaddle-gpu``).
        gpu_count: CUDA devices Paddle sees.

    Returns:
        str: ``"cpu"``, ``"gpu"`` or ``"gpu:N"`` (the form ``paddle.set_device`` takes;
        plain ``"gpu"`` is the process's own card under ``paddle.distributed.launch``).

    Raises:
        ConfigError: a GPU asked for where there is none, named with what to do.
    """
    kind, index = parse_device(requested)
    if kind == "auto":
        return "gpu" if cuda_build and gpu_count > 0 else "cpu"
    if kind == "cpu":
        return "cpu"
    if not cuda_build:
        raise ConfigError(f"device {requested!r} asked for, but this Paddle build has no CUDA support; use "
                          "--device cpu, or install a GPU build of Paddle (see the README, 'CUDA GPU')")
    if gpu_count < 1:
        raise ConfigError(f"device {requested!r} asked for, but Paddle sees no GPU (check nvidia-smi and "
                          "CUDA_VISIBLE_DEVICES); use --device cpu")
    if index is not None and index >= gpu_count:
        raise ConfigError(f"device {requested!r} asked for, but Paddle sees {gpu_count} GPU(s): gpu:0"
                          + (f" to gpu:{gpu_count - 1}" if gpu_count > 1 else ""))
    return "gpu" if index is None else f"gpu:{index}"


def is_gpu(device):
    """True for ``"gpu"`` and ``"gpu:N"``."""
    return str(device).split(":")[0] == "gpu"


def uses_cpu_runtime(device):
    """Whether the CPU execution settings (threads, MKL, denormals, the oneDNN operator) apply.

    They tune Paddle's CPU kernels only; on a GPU the convolutions are cuDNN's and the
    CPU threads feed the card, so none of them may run there.
    """
    return str(device) == "cpu"


@dataclasses.dataclass(frozen=True)
class AmpPlan:
    """How mixed precision runs: ``paddle.amp.auto_cast(dtype=..., level=...)`` and loss scaling.

    Attributes:
        dtype: ``"float16"`` or ``"bfloat16"``.
        level: Paddle's AMP level (``"O1"``: white-listed ops such as convolutions and
            matrix products in low precision, the rest in float32; the weights stay float32).
        loss_scaling: scale the loss with ``paddle.amp.GradScaler`` (float16 only).
    """

    dtype: str
    level: str = "O1"
    loss_scaling: bool = False


def amp_plan(enabled, dtype, device, capability=None):
    """The mixed-precision settings for a run, or None when ``--amp`` is off.

    Args:
        enabled: ``--amp``.
        dtype: ``"auto"`` (float16 on a GPU, bfloat16 on a CPU), ``"float16"`` or ``"bfloat16"``.
        device: the resolved device (:func:`choose_device`).
        capability: the GPU's CUDA compute capability ``(major, minor)`` (None when unknown).

    Returns:
        AmpPlan or None.

    Raises:
        ConfigError: an unknown dtype, float16 on a CPU, or bfloat16 on a GPU older than Ampere.
    """
    if dtype not in AMP_DTYPES:
        raise ConfigError(f"amp dtype must be one of {', '.join(AMP_DTYPES)}, got {dtype!r}")
    if not enabled:
        return None
    if not is_gpu(device):
        if dtype == "float16":
            raise ConfigError("--amp-dtype float16 is for GPUs; on a CPU use bfloat16 (or auto)")
        return AmpPlan("bfloat16")
    if dtype == "auto":
        dtype = "float16"
    if dtype == "bfloat16" and (capability is None or tuple(capability) < BF16_MIN_CAPABILITY):
        found = "an unknown compute capability" if capability is None else "compute capability %d.%d" % tuple(capability)
        raise ConfigError(f"--amp-dtype bfloat16 needs a GPU of compute capability 8.0 or newer (Ampere); this one has "
                          f"{found}: use --amp-dtype float16")
    return AmpPlan(dtype, loss_scaling=dtype == "float16")


def pin_memory(device, num_workers):
    """Whether DataLoader batches go through pinned host memory: on a GPU with loader workers.

    With ``num_workers == 0`` the trainer reads in the main thread and hands numpy
    arrays to Paddle, which copies them straight to the device.
    """
    return is_gpu(device) and int(num_workers) > 0


def probe():
    """What the installed Paddle offers: CUDA build, number of GPUs, the first GPU's capability.

    Returns:
        dict: ``cuda_build`` (bool), ``gpu_count`` (int), ``capability`` (tuple or None),
        ``gpu_name`` (str or None).
    """
    import paddle

    from paddle_palm import compat

    cuda = bool(paddle.device.is_compiled_with_cuda())
    count = int(paddle.device.cuda.device_count()) if cuda else 0
    name = None
    if count:
        try:
            name = paddle.device.cuda.get_device_name(0)
        except (AttributeError, RuntimeError, ValueError):
            name = None
    return {"cuda_build": cuda, "gpu_count": count, "capability": compat.cuda_compute_capability(0) if count else None,
            "gpu_name": name}


def select_device(requested):
    """Choose the device for ``requested`` on this machine and make it Paddle's current device.

    Returns:
        str: the device now in use (``"cpu"``, ``"gpu"`` or ``"gpu:N"``).

    Raises:
        ConfigError: see :func:`choose_device`.
    """
    import paddle

    parse_device(requested)  # a bad value fails before Paddle is asked anything
    found = probe()
    device = choose_device(requested, found["cuda_build"], found["gpu_count"])
    paddle.set_device(device)
    return device
