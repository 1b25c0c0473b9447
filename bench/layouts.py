#!/usr/bin/env python
"""Which layout and precision pay, per network: a training step of every network on the fast path.

For each network, one fixed batch is trained (forward, loss, backward, SGD update) on the fast
path (``ops.accelerate``: the oneDNN operator's convolutions and the fused batch norm, pooling and
SE kernels) in up to four ways, interleaved round by round in one process:

* ``nchw fp32``: NCHW tensors (the operator reorders to oneDNN's blocked layouts inside);
* ``nhwc fp32``: the network's stages channels-last (networks with ``set_channels_last``:
  ResNets and SE-ResNets; SqueezeNet has no batch norm and stays NCHW);
* ``nchw bf16`` / ``nhwc bf16``: the same with the convolutions multiplying in bfloat16
  (``--amp`` on a CPU; only where oneDNN has a bf16 convolution for this CPU).

Reported: the median step time of each way and its speed relative to ``nchw fp32`` in the same
run, and which layout the network's ``channels_last_pays`` chooses for ``tools/train.py``.

Examples::

    python bench/layouts.py                                  # the networks at the sizes users train them
    python bench/layouts.py --archs se_resnet18 --steps 6 --rounds 3
    python bench/layouts.py --quick                          # smoke run
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_results  # noqa: E402
from paddle_palm import cli  # noqa: E402

#: network: (image side, batch) as users train it (the recipe's se_resnet18; the course's batch 10).
NETWORKS = {"se_resnet18": (128, 16), "resnet50": (224, 10), "senet18": (224, 10), "squeezenet1_1": (224, 10)}
QUICK = {"archs": ["squeezenet1_1", "se_resnet18"], "image_size": 64, "batch_size": 4, "steps": 2, "rounds": 1}


def ways(model, bf16_ok):
    """The (name, channels_last, bf16) ways ``model``'s network can run, given whether bf16 is available."""
    can_nhwc = callable(getattr(model, "set_channels_last", None))
    found = [("nchw fp32", False, False)]
    if can_nhwc:
        found.append(("nhwc fp32", True, False))
    if bf16_ok:
        found.append(("nchw bf16", False, True))
        if can_nhwc:
            found.append(("nhwc bf16", True, True))
    return found


def make_step(arch, channels_last, bf16, images, labels):
    """A model switched to one way and its timed ``step()`` (a fixed batch, SGD)."""
    import paddle

    from paddle_palm import ops
    from paddle_palm.engine.trainer import compute_loss
    from paddle_palm.models import build_model

    paddle.seed(0)
    model = build_model(arch, num_classes=1)
    model.train()
    if channels_last:
        model.set_channels_last(True)
    ops.accelerate(model, bf16=bf16)
    optimizer = paddle.optimizer.Momentum(learning_rate=1e-3, momentum=0.9, parameters=model.parameters())

    def step():
        start = time.perf_counter()
        loss = compute_loss(model(images), labels, "bce")
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        float(loss)
        return time.perf_counter() - start

    return step


def measure(args, log):
    import numpy as np
    import paddle

    from paddle_palm import ops, runtime
    from paddle_palm.models import build_model

    runtime.setup_runtime(device="cpu", fast=True, threads=args.threads)
    if ops.load() is None:
        raise SystemExit(f"error: the oneDNN operator is unavailable: {ops.unavailable_reason()}")
    ops.set_threads(args.threads or runtime.default_threads())
    bf16_ok = ops.bf16_convolution_supported() and not args.no_bf16
    results = {}
    for arch in args.archs:
        size, batch = NETWORKS.get(arch, (224, 10))
        size, batch = args.image_size or size, args.batch_size or batch
        rng = np.random.default_rng(0)
        images = paddle.to_tensor(rng.standard_normal((batch, 3, size, size)).astype("float32"))
        labels = paddle.to_tensor(rng.integers(0, 2, (batch, 1)).astype("float32"))
        probe = build_model(arch, num_classes=1)  # what the network offers, and what the trainer picks
        candidates = ways(probe, bf16_ok)
        steps = {name: make_step(arch, cl, b, images, labels) for name, cl, b in candidates}
        for name, step in steps.items():  # warm-up: primitives, allocations
            for _ in range(args.warmup):
                step()
        times = {name: [] for name in steps}
        for round_index in range(args.rounds):
            order = list(steps) if round_index % 2 == 0 else list(steps)[::-1]
            for name in order:
                times[name] += [steps[name]() for _ in range(args.steps)]
            log(f"{arch} round {round_index + 1}/{args.rounds}: "
                + ", ".join(f"{n} {statistics.median(t) * 1000:.0f} ms" for n, t in times.items()))
        base = statistics.median(times["nchw fp32"])
        results[arch] = {
            "image_size": size, "batch_size": batch,
            "channels_last_pays": bool(getattr(probe, "channels_last_pays", False))
            and callable(getattr(probe, "set_channels_last", None)),
            "ways": {name: {"median_ms": statistics.median(t) * 1000, "steps_ms": [x * 1000 for x in t],
                            "speed_vs_nchw_fp32": base / statistics.median(t)} for name, t in times.items()},
        }
    return results, bf16_ok


def markdown(report):
    meta = report["meta"]
    lines = [f"Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores, flags {meta['flags']}); Python "
             f"{meta['python']}, paddlepaddle {meta['paddle']}; {meta['threads']} threads.", "",
             f"Command: `{meta['command']}`.", "",
             f"Training step (forward, loss, backward, SGD update) of one fixed batch, the oneDNN operator's "
             f"convolutions in every way; {meta['rounds']} interleaved rounds of {meta['steps']} steps after "
             f"{meta['warmup']} warm-up steps, medians. Load average before/after: {meta['load_before']} / "
             f"{meta['load_after']}. bf16: {'yes' if meta['bf16'] else 'not available on this CPU'}.", "",
             "| network | input, batch | way | median ms/step | speed vs nchw fp32 |",
             "| --- | --- | --- | ---: | ---: |"]
    for arch, entry in report["results"].items():
        for name, way in entry["ways"].items():
            chosen = " (tools/train.py)" if name == ("nhwc fp32" if entry["channels_last_pays"] else "nchw fp32") else ""
            lines.append(f"| {arch} | {entry['image_size']} px, {entry['batch_size']} | {name}{chosen} | "
                         f"{way['median_ms']:.0f} | {way['speed_vs_nchw_fp32']:.2f}x |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--archs", default=",".join(NETWORKS), help=f"networks, comma-separated (default {','.join(NETWORKS)})")
    parser.add_argument("--image-size", type=int, help="input side for every network (default: each network's own)")
    parser.add_argument("--batch-size", type=int, help="batch for every network (default: each network's own)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per way and round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per way first (default 2)")
    parser.add_argument("--threads", type=int, help="math threads (default: every usable core)")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bf16 ways")
    parser.add_argument("--quick", action="store_true", help="smoke run: two small networks at 64 px, 1 round")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.warmup = 1
    return args


def main(argv=None):
    from bench.run import machine_description
    from paddle_palm import runtime

    args = parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results, bf16_ok = measure(args, log)
    import paddle

    machine = machine_description()
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python bench/layouts.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "cpu": machine["cpu"], "cores": machine["cores"], "flags": " ".join(machine["flags"]),
            "python": machine["python"], "paddle": paddle.__version__,
            "threads": args.threads or runtime.default_threads(), "rounds": args.rounds, "steps": args.steps,
            "warmup": args.warmup, "bf16": bf16_ok, "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    report = {"meta": meta, "results": results}
    text = markdown(report)
    write_results(args.out_dir, "layouts-", report, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    cli.run(main)
