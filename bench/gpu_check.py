#!/usr/bin/env python
"""Check the whole GPU chain on a CUDA machine and report training images/s with and without AMP.

Run it once after installing a GPU build of Paddle (README, "CUDA GPU")::

    python bench/gpu_check.py                         # synthetic data, SE-ResNet18 at 128 px
    python bench/gpu_check.py --data-dir data/palm --arch resnet50 --image-size 224 --epochs 3
    python bench/gpu_check.py --device cpu --quick    # the same steps on the CPU (a smoke run)

Steps, each with the real tools as a user types them, in a temporary folder:

1. the environment: Paddle, CUDA and cuDNN versions, the GPU and its compute capability,
   the version check of :func:`paddle_palm.compat.check_environment`;
2. ``tools/train.py --device gpu`` in float32, then with ``--amp`` (float16 with loss
   scaling; ``--amp-dtype bfloat16`` on Ampere and newer is tried too when the card has it);
   both must finish with finite losses;
3. ``tools/export.py`` and ``tools/predict.py --inference-model DIR --device gpu``
   (Paddle Inference on CUDA); its probabilities are compared with the CPU's;
4. with two or more GPUs, one epoch of ``python -m paddle.distributed.launch --devices 0,1``.

Reported: training images per second (the ``images_per_second`` column of each run's
``history.csv``, the first epoch left out as warm-up) for float32 and AMP, and their
same-run ratio.  Results: a table on standard output and ``gpu_check-<stamp>.json``
under ``--out-dir`` (``bench/results``).  Exit status 0 when every step passed.
"""

import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paddle_palm import cli, compat  # noqa: E402
from paddle_palm.errors import ConfigError  # noqa: E402


def build_parser():
    """The argument parser of ``bench/gpu_check.py``."""
    parser = cli.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"), help="gpu; cpu runs the steps as a smoke test")
    parser.add_argument("--arch", default="se_resnet18", help="network to train")
    parser.add_argument("--image-size", type=cli.positive_int, default=128, help="input side in pixels")
    parser.add_argument("--batch-size", type=cli.positive_int, default=32, help="images per batch")
    parser.add_argument("--epochs", type=cli.positive_int, default=3, help="epochs per training (the first is warm-up)")
    parser.add_argument("--num-workers", type=cli.non_negative_int, default=2, help="data-loading processes")
    parser.add_argument("--data-dir", help="dataset folder (default: the synthetic data set)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: 64 px, batch 8, 2 epochs, no workers")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="where the JSON report goes")
    return parser


def _run(args, log, **kwargs):
    """Run a command; return (ok, seconds, last lines of its output)."""
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, **kwargs)
    seconds = time.perf_counter() - start
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    log(f"  {'ok ' if proc.returncode == 0 else 'FAILED'} ({seconds:.0f} s): {' '.join(str(a) for a in args[1:6])} ...")
    if proc.returncode != 0:
        for line in tail:
            log(f"    {line}")
    return proc.returncode == 0, seconds, tail


def images_per_second(run_dir):
    """Training images per second of a run: epochs after the first, from ``history.csv`` (None if missing)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rates = [float(r["images_per_second"]) for r in rows if r.get("images_per_second")]
    rates = rates[1:] or rates
    return sum(rates) / len(rates) if rates else None


def environment(device):
    """Versions and the device: a dict for the report."""
    import paddle

    from paddle_palm.engine import device as devices

    found = devices.probe()
    info = {
        "paddle": paddle.__version__,
        "python": sys.version.split()[0],
        "cuda_build": found["cuda_build"],
        "gpu_count": found["gpu_count"],
        "gpu": found["gpu_name"],
        "capability": ".".join(map(str, found["capability"])) if found["capability"] else None,
    }
    if found["cuda_build"]:
        info["cuda"] = paddle.version.cuda()
        info["cudnn"] = paddle.version.cudnn()
    info["device"] = devices.choose_device(device, found["cuda_build"], found["gpu_count"])
    return info


def main(argv=None):
    """Run the steps, print the table, write the JSON report; exit 1 when a step failed."""
    args = build_parser().parse_args(argv)
    if args.quick:
        args.image_size, args.batch_size, args.epochs, args.num_workers = 64, 8, 2, 0
    versions = compat.check_environment()
    env = environment(args.device)
    env.update(versions)
    print("environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if v is not None))
    capability = tuple(int(v) for v in env["capability"].split(".")) if env.get("capability") else None

    py = sys.executable
    results = {"environment": env, "settings": vars(args), "steps": {}}
    model = ["--arch", args.arch, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
             "--num-workers", str(args.num_workers), "--seed", "0", "--no-progress"]
    model += ["--data-dir", args.data_dir] if args.data_dir else []
    common = model + ["--epochs", str(args.epochs), "--device", args.device]
    variants = [("float32", [])]
    variants.append(("amp float16" if args.device == "gpu" else "amp bfloat16", ["--amp"]))
    if args.device == "gpu" and capability and capability >= (8, 0):
        variants.append(("amp bfloat16", ["--amp", "--amp-dtype", "bfloat16"]))

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        print("training:")
        rates = {}
        for name, extra in variants:
            run_dir = os.path.join(work, name.replace(" ", "-"))
            ok, seconds, _ = _run([py, "tools/train.py", *common, *extra, "--output-dir", run_dir], print)
            rates[name] = images_per_second(run_dir) if ok else None
            results["steps"][f"train {name}"] = {"ok": ok, "seconds": round(seconds, 1), "images_per_second": rates[name]}
        first = os.path.join(work, "float32")

        print("export and Paddle Inference:")
        exported = os.path.join(work, "exported")
        ok, seconds, _ = _run([py, "tools/export.py", "--weights", os.path.join(first, "best_model.pdparams"),
                               "--output", exported], print)
        results["steps"]["export"] = {"ok": ok, "seconds": round(seconds, 1)}
        images = os.path.join(args.data_dir, "PALM-Validation400") if args.data_dir else os.path.join(
            first, "synthetic-data", "PALM-Validation400")
        csvs = {}
        for device in dict.fromkeys([args.device, "cpu"]):
            csvs[device] = os.path.join(work, f"predictions-{device}.csv")
            ok, seconds, tail = _run([py, "tools/predict.py", "--inference-model", exported, images, "--device", device,
                                      "--csv", csvs[device], "--quiet"], print)
            results["steps"][f"predict --inference-model --device {device}"] = {"ok": ok, "seconds": round(seconds, 1),
                                                                              "summary": tail[:1]}
        if args.device == "gpu" and all(os.path.isfile(p) for p in csvs.values()):
            diff = _largest_difference(csvs["gpu"], csvs["cpu"])
            results["steps"]["gpu vs cpu probabilities"] = {"ok": diff <= 1e-3, "max_abs_diff": diff}
            print(f"  GPU vs CPU inference: max |difference| {diff:.2e}")

        if args.device == "gpu" and env["gpu_count"] >= 2:
            print("data parallel over 2 GPUs:")
            ok, seconds, _ = _run([py, "-m", "paddle.distributed.launch", "--devices", "0,1", "--log_dir",
                                   os.path.join(work, "log"), "tools/train.py", *model, "--epochs", "1",
                                   "--device", "gpu", "--output-dir", os.path.join(work, "dp")], print)
            results["steps"]["data parallel (2 GPUs)"] = {"ok": ok, "seconds": round(seconds, 1)}

    print("\n| run | training images/s | vs float32 |\n| --- | --- | --- |")
    base = rates.get("float32")
    for name, rate in rates.items():
        ratio = f"{rate / base:.2f}x" if rate and base else "-"
        print(f"| {name} | {rate:.1f} | {ratio} |" if rate else f"| {name} | failed | - |")
    results["ok"] = all(step["ok"] for step in results["steps"].values())
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"gpu_check-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"\n{'every step passed' if results['ok'] else 'SOME STEPS FAILED'}; report: {path}")
    return 0 if results["ok"] else 1


def _largest_difference(first, second):
    def read(path):
        with open(path, newline="", encoding="utf-8") as handle:
            return {row["file"]: float(row["pm_probability"]) for row in csv.DictReader(handle)}

    a, b = read(first), read(second)
    if set(a) != set(b):
        raise ConfigError(f"{first} and {second} list different images")
    return max(abs(a[k] - b[k]) for k in a) if a else 0.0


if __name__ == "__main__":
    cli.run(main)
