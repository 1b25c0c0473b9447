"""CPU benchmark of paddle_palm's execution paths against plain Paddle and PyTorch.

Per architecture it measures training images/s, evaluation images/s and batch-1
latency for each execution path (Paddle dygraph as installed, dygraph with
:func:`paddle_palm.runtime.setup_runtime`, the same with the network's ``Conv2D``
layers switched to the oneDNN operator of :mod:`paddle_palm.ops` by
:func:`paddle_palm.runtime.accelerate_model` -- the path ``tools/train.py`` takes by
default, marked as such in the report --, ``paddle.jit.to_static``, the static
graph, Paddle Inference with and without oneDNN, bf16 Paddle Inference when the
CPU has ``avx512_bf16``, and the PyTorch reference of :mod:`bench.torch_reference`),
a few kernels (a 2048^3 matrix product, one 3x3 convolution in NCHW and NHWC),
and the data pipeline on original-size images (:mod:`bench.data_pipeline`).

Every figure comes with its ratio to baselines measured in the same run: plain
Paddle dygraph and PyTorch.  Paths run in worker processes (:mod:`bench.worker`)
and are measured in interleaved rounds (each round times every path in turn),
so that load from other programs on the machine hits all paths alike; the
reported figure is the median over all rounds.

Examples::

    python bench/run.py                                # everything (about 15 minutes on 2 busy cores)
    python bench/run.py --quick                        # a one-minute smoke run at small sizes
    python bench/run.py --archs resnet50 --skip-data --rounds 5
"""

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.paths import MATMUL_N, RECIPES  # noqa: E402
from bench.report import write_results  # noqa: E402
from bench.worker import REPLY_PREFIX  # noqa: E402

BASELINE = "dygraph (Paddle defaults)"
TORCH = "PyTorch"
#: The path ``tools/train.py`` takes on a CPU by default (``--fast``): the trainer calls
#: ``setup_runtime(fast=True)`` and then ``accelerate_model`` on its network.
TRAINER = "dygraph + setup_runtime + oneDNN conv (paddle_palm.ops)"
TRAINER_MARK = " **= tools/train.py**"
MODEL_METRICS = ("train", "eval", "latency")

#: (name, worker kind, runner class, runner options, metrics, is a probe of a path known to fail or lag)
MODEL_PATHS = [
    (BASELINE, "paddle-default", "PaddleDygraph", {}, MODEL_METRICS, False),
    ("dygraph + setup_runtime", "paddle-fast", "PaddleDygraph", {}, MODEL_METRICS, False),
    (TRAINER, "paddle-fast-conv", "PaddleDygraph", {"onednn_conv": True}, MODEL_METRICS, False),
    ("to_static + setup_runtime", "paddle-fast", "PaddleDygraph", {"to_static": True}, MODEL_METRICS, False),
    ("static graph + setup_runtime", "paddle-static", "PaddleStaticGraph", {}, MODEL_METRICS, False),
    ("dygraph + setup_runtime + FLAGS_use_onednn", "paddle-onednn-flag", "PaddleDygraph", {}, ("train", "eval"), True),
    ("static graph + setup_runtime + oneDNN", "paddle-static-onednn", "PaddleStaticGraph", {}, ("train",), True),
    ("Inference, oneDNN (Paddle defaults)", "paddle-default", "PaddleInference", {"onednn": True},
     ("eval", "latency"), False),
    ("Inference, no oneDNN + setup_runtime", "paddle-fast", "PaddleInference", {"onednn": False},
     ("eval", "latency"), False),
    ("Inference, oneDNN + setup_runtime", "paddle-fast", "PaddleInference", {"onednn": True},
     ("eval", "latency"), False),
    ("Inference, oneDNN bf16 + setup_runtime", "paddle-fast", "PaddleInference", {"onednn": True, "bf16": True},
     ("eval", "latency"), False),
    (TORCH, "torch", "Torch", {}, MODEL_METRICS, False),
]

#: Kernels, measured once (not per architecture).
KERNEL_PATHS = [
    (f"paddle.matmul {MATMUL_N}^3 (Paddle defaults)", "paddle-default", "PaddleMatmul", {}, ("gflops",)),
    (f"paddle.matmul {MATMUL_N}^3 + setup_runtime", "paddle-fast", "PaddleMatmul", {}, ("gflops",)),
    (f"torch.matmul {MATMUL_N}^3", "torch", "TorchMatmul", {}, ("gflops",)),
    (f"numpy.matmul {MATMUL_N}^3", "torch", "NumpyMatmul", {}, ("gflops",)),
    ("conv 3x3 256->256 @28x28 fwd+bwd, NCHW + setup_runtime", "paddle-fast", "PaddleConvLayout",
     {"data_format": "NCHW"}, ("train",)),
    ("conv 3x3 256->256 @28x28 fwd+bwd, NHWC + setup_runtime", "paddle-fast", "PaddleConvLayout",
     {"data_format": "NHWC"}, ("train",)),
]


# --------------------------------------------------------------------------- workers


class Worker:
    """A worker process of one kind, spoken to over pipes."""

    def __init__(self, kind, log_dir):
        self.kind = kind
        self.log_path = Path(log_dir) / f"{kind}.log"
        self._log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.process = subprocess.Popen([sys.executable, str(REPO / "bench" / "worker.py"), kind],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, cwd=str(REPO), env=env)
        self.dead = None

    def request(self, **payload):
        """Send one request; the reply dict (``ok`` False with ``error`` when the worker died)."""
        if self.dead:
            return {"ok": False, "error": self.dead}
        try:
            self.process.stdin.write(json.dumps(payload) + "\n")
            self.process.stdin.flush()
            for line in self.process.stdout:
                if line.startswith(REPLY_PREFIX):
                    return json.loads(line[len(REPLY_PREFIX):])
        except (BrokenPipeError, OSError):
            pass
        code = self.process.wait()
        self._log.flush()
        tail = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        reason = next((line for line in reversed(tail) if "Error" in line or "fault" in line), tail[-1] if tail else "")
        self.dead = f"worker {self.kind} exited with code {code}: {reason[:300]}"
        return {"ok": False, "error": self.dead}

    def close(self):
        if not self.dead and self.process.poll() is None:
            self.request(cmd="quit")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


# --------------------------------------------------------------------------- measuring


def has_avx512_bf16():
    """True when /proc/cpuinfo lists ``avx512_bf16``."""
    from paddle_palm.runtime import cpu_info

    return cpu_info()["avx512_bf16"]


def plan(args):
    """The items to measure: dicts with path, worker, runner spec, arch and metric."""
    bf16 = has_avx512_bf16()
    items = []
    for arch in args.archs:
        for name, kind, runner, options, metrics, probe in MODEL_PATHS:
            if (probe and not args.probes) or (options.get("bf16") and not bf16):
                continue
            if kind == "torch" and args.no_torch:
                continue
            for metric in metrics:
                items.append({"path": name, "kind": kind, "spec": {"runner": runner, "options": options},
                              "arch": arch, "metric": metric})
    if not args.skip_kernels:
        for name, kind, runner, options, metrics in KERNEL_PATHS:
            if kind == "torch" and args.no_torch:
                continue
            for metric in metrics:
                items.append({"path": name, "kind": kind, "spec": {"runner": runner, "options": options},
                              "arch": "-", "metric": metric})
    return items


def torch_available():
    """True when PyTorch can be imported (in a child process, so this one stays light)."""
    code = subprocess.call([sys.executable, "-c", "import torch"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return code == 0


def measure_models(args, workers, log, on_round=None):
    """Prepare every item, then time them in interleaved rounds; returns the items with ``times``/``error``.

    ``on_round(items)`` is called after each round (to save partial results).
    """
    items = plan(args)
    batch = {"batch_size": args.batch_size, "image_size": args.image_size}
    for item in items:
        worker = workers[item["kind"]]
        spec_arch = item["arch"] if item["arch"] != "-" else "resnet50"
        started = time.perf_counter()
        reply = worker.request(cmd="prepare", path=item["path"], arch=spec_arch, metric=item["metric"],
                               spec=item["spec"], warmup=args.warmup, **batch)
        item["prepare_s"] = time.perf_counter() - started
        item["times"] = []
        if not reply["ok"]:
            item["error"] = reply["error"]
        log(f"prepared {item['path']} / {item['arch']} / {item['metric']} in {item['prepare_s']:.1f}s"
            + (f": {item['error']}" if "error" in item else ""))
    live = [item for item in items if "error" not in item]
    for round_index in range(args.rounds):
        order = live[:]
        random.Random(round_index).shuffle(order)
        for item in order:
            if "error" in item:
                continue
            reply = workers[item["kind"]].request(
                cmd="run", path=item["path"], arch=item["arch"] if item["arch"] != "-" else "resnet50",
                metric=item["metric"], iters=args.iters)
            if reply["ok"]:
                item["times"].extend(reply["times"])
            else:
                item["error"] = reply["error"]
        log(f"round {round_index + 1}/{args.rounds} done")
        if on_round:
            on_round(items)
    return items


def summarise(items, batch_size):
    """Median figure per item: images/s (train, eval), ms (latency), GFLOP/s (gflops), ms (kernels' train)."""
    for item in items:
        if not item["times"]:
            continue
        median = statistics.median(item["times"])
        item["median_s"] = median
        if item["arch"] == "-":
            item["value"] = 2 * MATMUL_N ** 3 / median / 1e9 if item["metric"] == "gflops" else median * 1000
        elif item["metric"] == "latency":
            item["value"] = median * 1000
        else:
            item["value"] = batch_size / median
    return items


def speed_ratio(item, base):
    """How many times faster ``item`` is than ``base`` (>1: faster), or None."""
    if not base or "median_s" not in item or "median_s" not in base:
        return None
    return base["median_s"] / item["median_s"]


# --------------------------------------------------------------------------- report


def machine_description():
    """CPU model, core count and the relevant flags (from lscpu / cpuinfo)."""
    from paddle_palm.runtime import cpu_info

    cpu = cpu_info()
    wanted = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if flag in cpu["flags"]]
    return {"cpu": cpu["model"], "vendor": cpu["vendor"], "cores": cpu["cores"], "flags": wanted,
            "python": platform.python_version(), "system": platform.platform()}


def _fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def markdown(report):
    """The report as Markdown tables."""
    lines = []
    meta = report["meta"]
    lines.append(f"Run {meta['date']} on {meta['machine']['cpu']} ({meta['machine']['vendor']}, "
                 f"{meta['machine']['cores']} cores, flags {' '.join(meta['machine']['flags'])}); "
                 f"Python {meta['machine']['python']}, Paddle {meta['versions'].get('paddle', '?')}, "
                 f"PyTorch {meta['versions'].get('torch', 'not installed')}.")
    lines.append(f"Command: `{meta['command']}`; batch {meta['batch_size']}, image {meta['image_size']}, "
                 f"{meta['rounds']} interleaved rounds x {meta['iters']} iterations, medians; "
                 f"load average before/after: {meta['load_before']} / {meta['load_after']}.")
    lines.append("Ratios are speed ratios in this run (>1 = faster than the baseline): "
                 "`/dyg` against plain Paddle dygraph, `/torch` against PyTorch.")
    lines.append(f"The row marked{TRAINER_MARK} is the path `tools/train.py` takes by default (`--fast`): "
                 "`setup_runtime(fast=True)` plus the network's Conv2D layers on the oneDNN operator "
                 f"(`runtime.accelerate_model`; operator: {meta['versions'].get('onednn_conv', 'not measured')}).")
    items = report["items"]
    for arch in report["meta"]["archs"]:
        lines.append("")
        lines.append(f"#### {arch}")
        lines.append("")
        lines.append("| path | train img/s | /dyg | /torch | eval img/s | /dyg | /torch | batch-1 ms | /dyg | /torch |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        paths = []
        for item in items:
            if item["arch"] == arch and item["path"] not in paths:
                paths.append(item["path"])
        for path in paths:
            cells, errors = [], []
            for metric in MODEL_METRICS:
                item = next((i for i in items if i["arch"] == arch and i["path"] == path and i["metric"] == metric),
                            None)
                base = next((i for i in items if i["arch"] == arch and i["path"] == BASELINE
                             and i["metric"] == metric), None)
                ref = next((i for i in items if i["arch"] == arch and i["path"] == TORCH and i["metric"] == metric),
                           None)
                if item is None:
                    cells += ["n/a", "", ""]
                elif "value" not in item:
                    cells += ["failed", "", ""]
                    errors.append(f"{metric}: {item.get('error', 'no time')}")
                else:
                    cells += [_fmt(item["value"], 2 if metric != "latency" else 1),
                              _ratio(speed_ratio(item, base)), _ratio(speed_ratio(item, ref))]
            label = path + (TRAINER_MARK if path == TRAINER else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            for error in errors:
                lines.append(f"| ↳ {error.replace('|', '/')} | | | | | | | | | |")
    kernels = [item for item in items if item["arch"] == "-"]
    if kernels:
        lines.append("")
        lines.append("#### Kernels")
        lines.append("")
        lines.append("| kernel | value | ratio |")
        lines.append("| --- | ---: | ---: |")
        base = next((i for i in kernels if "Paddle defaults" in i["path"]), None)
        nchw = next((i for i in kernels if "NCHW" in i["path"]), None)
        for item in kernels:
            if "value" not in item:
                lines.append(f"| {item['path']} | failed: {item.get('error', '')} | |")
                continue
            unit = "GFLOP/s" if item["metric"] == "gflops" else "ms"
            ref = base if item["metric"] == "gflops" else nchw
            label = "vs Paddle defaults" if item["metric"] == "gflops" else "vs NCHW"
            lines.append(f"| {item['path']} | {item['value']:.1f} {unit} | {_ratio(speed_ratio(item, ref))} {label} |")
    data = report.get("data")
    if data:
        lines.append("")
        lines.append("#### Data pipeline")
        lines.append("")
        if "error" in data:
            lines.append(f"failed: {data['error']}")
        else:
            lines.append(f"{data['images']} training images enlarged to {data['original_size'][0]}x"
                         f"{data['original_size'][1]} JPEG (made in {data['make_s']:.1f}s); "
                         f"warm_cache: {data['warm_cache_s']:.1f}s; the loop trains {report['meta']['data_arch']} "
                         f"({data.get('step', 'dygraph + setup_runtime')}) at {report['meta']['image_size']} px, batch "
                         f"{report['meta']['batch_size']}.")
            lines.append("")
            lines.append("| pipeline | epoch img/s | vs course reader | training loop: data wait s | step s | "
                         "data share of loop |")
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
            course = data["rates"].get("course reader")
            for name, rate in data["rates"].items():
                loop = data["loop"][name]
                lines.append(f"| {name} | {rate:.1f} | {_ratio(rate / course if course else None)} | "
                             f"{loop['wait_s']:.2f} | {loop['step_s']:.2f} | {100 * loop['share']:.1f}% |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def write_report(args, argv, items, data, versions, load_before, started, log_dir):
    """Write ``<stamp>.json``/``.md`` and ``latest.json``/``.md`` under ``--out-dir``; returns (markdown, dir)."""
    report = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine_description(), "versions": versions, "archs": args.archs,
            "batch_size": args.batch_size, "image_size": args.image_size, "iters": args.iters,
            "rounds": args.rounds, "load_before": load_before,
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "seconds": round(time.time() - started, 1), "data_arch": "squeezenet1_1", "worker_logs": log_dir,
        },
        "items": items,
        "data": data,
    }
    text = markdown(report)
    stamp = datetime.datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S")
    write_results(args.out_dir, "", report, text, stamp=stamp)
    return text, Path(args.out_dir)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark paddle_palm's CPU execution paths (training, evaluation, batch-1 latency, "
                    "data pipeline) against plain Paddle dygraph and PyTorch, in one interleaved run.",
        epilog=f"The path tools/train.py uses by default is '{TRAINER}' (marked in the tables). "
               "Results: a Markdown table on standard output and JSON + Markdown files under bench/results/. "
               "For the whole trainer against a PyTorch loop on the same images, see bench/train_vs_torch.py.")
    what = parser.add_argument_group("what to measure")
    what.add_argument("--archs", default="resnet50,squeezenet1_1",
                      help=f"comma-separated architectures (known: {', '.join(sorted(RECIPES))})")
    what.add_argument("--skip-data", action="store_true", help="leave out the data-pipeline measurements")
    what.add_argument("--skip-kernels", action="store_true", help="leave out the matmul / conv-layout kernels")
    what.add_argument("--no-torch", action="store_true", help="leave out PyTorch even when it is installed")
    what.add_argument("--probes", dest="probes", action="store_true", default=None,
                      help="also run the oneDNN paths that fail or lag on Paddle 3.3 (default: on, off with --quick)")
    what.add_argument("--no-probes", dest="probes", action="store_false")
    size = parser.add_argument_group("sizes and repetitions")
    size.add_argument("--batch-size", type=int, default=10, help="training/evaluation batch (default 10, the course's)")
    size.add_argument("--image-size", type=int, default=224, help="input side in pixels (default 224)")
    size.add_argument("--iters", type=int, default=1, help="timed iterations per path in each round (default 1)")
    size.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    size.add_argument("--warmup", type=int, default=3,
                      help="untimed iterations per path before the rounds (default 3: allocators and oneDNN "
                           "primitives reach their steady state; PyTorch needs several steps)")
    size.add_argument("--data-images", type=int, default=100, help="original-size images for the data pipeline")
    size.add_argument("--data-workers", type=int, default=2, help="DataLoader workers for the cached pipeline")
    size.add_argument("--quick", action="store_true",
                      help="smoke run: squeezenet1_1 only, batch 2, 64 px, 1 round, 10 data images, no probes")
    out = parser.add_argument_group("output")
    out.add_argument("--shared", default=str(REPO.parent / "shared" / "palm"),
                     help="dataset folder with PALM-Training400 (the shared 224-px copies) for the data pipeline")
    out.add_argument("--out-dir", default=str(REPO / "bench" / "results"), help="where to write JSON and Markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.archs, args.batch_size, args.image_size = "squeezenet1_1", 2, 64
        args.iters, args.rounds, args.data_images, args.warmup = 1, 1, 10, 1
        args.probes = False if args.probes is None else args.probes
    args.probes = True if args.probes is None else args.probes
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in args.archs if a not in RECIPES]
    if unknown:
        parser.error(f"unknown architecture {unknown[0]!r}; known: {', '.join(sorted(RECIPES))}")
    for name in ("batch_size", "image_size", "iters", "rounds", "data_images", "data_workers", "warmup"):
        if getattr(args, name) < (0 if name in ("data_workers", "warmup") else 1):
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()

    def log(message):
        print(f"[{time.time() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if not args.no_torch and not torch_available():
        log("PyTorch is not installed: its baseline is left out (pip install torch==2.13.0)")
        args.no_torch = True
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    log_dir = tempfile.mkdtemp(prefix="bench-logs-")
    kinds = sorted({item["kind"] for item in plan(args)} | ({"data"} if not args.skip_data else set()))
    workers, versions = {}, {}
    try:
        for kind in kinds:
            workers[kind] = Worker(kind, log_dir)
            reply = workers[kind].request(cmd="setup")
            if reply["ok"]:
                versions.update({k: v for k, v in reply["info"].items() if k in ("paddle", "torch")})
                if kind == "paddle-fast":
                    versions["runtime"] = reply["info"].get("runtime")
                if kind == "paddle-fast-conv":
                    versions["onednn_conv"] = reply["info"].get("onednn_conv")
            log(f"worker {kind}: {reply.get('info', reply.get('error'))}")
        items = measure_models(args, workers, log,
                               on_round=lambda done: write_report(args, argv, summarise(done, args.batch_size),
                                                                  None, versions, load_before, started, log_dir))
        items = summarise(items, args.batch_size)
        data = None
        if not args.skip_data:
            log("data pipeline ...")
            reply = workers["data"].request(cmd="data", options={
                "shared_dir": args.shared, "count": args.data_images, "image_size": args.image_size,
                "batch_size": args.batch_size, "workers": args.data_workers, "arch": "squeezenet1_1"})
            data = reply["data"] if reply["ok"] else {"error": reply["error"]}
    finally:
        for worker in workers.values():
            worker.close()
    text, out_dir = write_report(args, argv, items, data, versions, load_before, started, log_dir)
    print(text)
    log(f"done in {time.time() - started:.0f}s; results in {out_dir} (worker logs: {log_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
