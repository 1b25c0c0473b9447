"""Execution settings for CPU and GPU runs (threads, oneDNN, numerics).

Placeholder interface; the measured fast path is filled in by the performance work.
"""


def setup_runtime(device="auto", fast=True, threads=None):
    """Choose the device and the fast CPU settings; return a dict describing them."""
    import paddle

    if device == "auto":
        device = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    paddle.set_device(device)
    return {"device": device, "fast": bool(fast), "threads": threads}
