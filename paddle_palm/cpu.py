"""What the CPU is: its vendor, model, instruction sets and usable cores.

Read from ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` (Linux; elsewhere the
answers are the safe defaults).  Both the execution path (:mod:`paddle_palm.runtime`,
which picks MKL's code path and the thread count from it) and the oneDNN operator's
build (:mod:`paddle_palm.ops`, which compiles AVX2 code when the CPU has it) ask here.
"""

import os
import platform


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
