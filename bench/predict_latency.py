"""Prediction speed of one 224x224 fundus photograph: exported model vs checkpoint vs PyTorch.

What ``tools/predict.py`` costs per image, for each way it can run a network, measured
in one run with ratios against baselines of the same run:

* ``--inference-model`` (Paddle Inference, :class:`paddle_palm.engine.predictors.ExportedPredictor`):
  oneDNN fp32 (the default), oneDNN bf16 (``--precision bf16``, AVX-512-BF16 CPUs), no oneDNN
  (``--no-onednn``);
* ``--weights`` (dygraph, :class:`~paddle_palm.engine.predictors.CheckpointPredictor`): with the
  oneDNN convolution operator (the default) and with Paddle's own convolution (plain dygraph,
  the baseline);
* PyTorch 2.x CPU on the same network (``bench/torch_reference.py``), when torch is installed.

Two figures per path: the network alone on one image (``measure_latency``: batch 1, median of
``--runs`` passes, best of ``--rounds`` rounds, rounds interleaved across paths so that a noisy
neighbour hits every path alike), and the whole per-image cost of ``predict_images`` on real
files (decode + preprocess + network, batch 1). The probabilities of every Paddle path are
compared with the plain dygraph checkpoint's on the same images.

Usage::

    python bench/predict_latency.py                      # ResNet-50, initial weights, 2 threads
    python bench/predict_latency.py --weights runs/RUN/best_model.pdparams --images data/palm/PALM-Validation400
    python bench/predict_latency.py --arch squeezenet1_1 --quick

Results: ``bench/results/predict-<time>.json`` / ``.md`` and ``predict-latest.*``.
"""

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
SHARED_VALID = REPO.parent / "shared" / "palm" / "PALM-Validation400"


def build_parser():
    from paddle_palm import cli

    parser = cli.ArgumentParser(
        description="Per-image prediction time of a 224x224 photograph for every way tools/predict.py can run "
                    "a network (Paddle Inference oneDNN fp32/bf16, plain; dygraph with and without the oneDNN "
                    "convolution operator; PyTorch), with ratios against the same run's baselines.",
        epilog="On a shared machine, read the ratios: the absolute times move with the load average (printed).")
    parser.add_argument("--arch", default="resnet50", help="network (default: %(default)s)")
    parser.add_argument("--weights", metavar="FILE", help="trained weights (default: the network's initial weights)")
    parser.add_argument("--images", metavar="DIR", help="photographs for the end-to-end figure "
                        "(default: ../shared/palm/PALM-Validation400 when present, else synthetic ones)")
    parser.add_argument("--image-count", type=cli.positive_int, default=48, metavar="N",
                        help="photographs for the end-to-end figure (default: %(default)s)")
    parser.add_argument("--threads", type=cli.positive_int, default=2, metavar="N", help="threads (default: %(default)s)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=16, metavar="N",
                        help="batch of the second end-to-end figure (default: %(default)s, tools/predict.py's)")
    parser.add_argument("--runs", type=cli.positive_int, default=20, metavar="N",
                        help="timed passes per round (default: %(default)s)")
    parser.add_argument("--rounds", type=cli.positive_int, default=3, metavar="N",
                        help="interleaved rounds; the best round's median counts (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 runs, 1 round, 4 images")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--out", metavar="DIR", default=str(RESULTS), help="results folder (default: bench/results)")
    return parser


class TorchPredictor:
    """The PyTorch reference network behind the same ``pm_probability`` interface (initial weights)."""

    def __init__(self, arch, image_size, threads):
        import torch

        from bench.torch_reference import build

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.model = build(arch).eval()
        self.image_size = image_size
        self.description = f"PyTorch {torch.__version__} CPU, {threads} threads"

    def pm_probability(self, batch):
        import numpy as np

        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return self.torch.sigmoid(out.reshape(out.shape[0], -1)[:, 0]).numpy()


def _photographs(folder, count, work):
    """``count`` image paths: from ``folder`` (or the shared validation set), else synthetic ones."""
    import cv2
    import numpy as np

    folder = Path(folder) if folder else SHARED_VALID
    if folder.is_dir():
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        if paths:
            return paths[:count]
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        path = Path(work) / f"synthetic-{i:03d}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
        out.append(path)
    return out


def _calibrate_head(predictor, images):
    """Scale and shift the last layer so that the logits on ``images`` have mean 0 and spread 2.

    A network's initial weights give logits so large that every probability is 0 or 1, which
    would hide any difference between the paths; calibrated, the probabilities spread over (0, 1).
    """
    import numpy as np
    import paddle

    model = predictor.model
    head = [layer for layer in model.sublayers() if getattr(layer, "weight", None) is not None][-1]
    batch = np.stack([predictor.load_image(path)[0] for path in images[:8]])
    with paddle.no_grad():
        logits = model(paddle.to_tensor(batch)).numpy().reshape(len(batch), -1)[:, 0]
    scale = 2.0 / max(float(logits.std()), 1e-6)
    with paddle.no_grad():
        head.weight.set_value(head.weight * scale)
        if getattr(head, "bias", None) is not None:
            head.bias.set_value(head.bias * scale - float(logits.mean()) * scale)


PLAIN = "dygraph, Paddle conv (plain)"
TORCH = "PyTorch reference"


def _prepare_model(args, work, images):
    """The weights to time (initial ones, calibrated, unless ``--weights``), its plain predictor and its export."""
    import paddle

    from paddle_palm import ops
    from paddle_palm.engine import export, predictors
    from paddle_palm.models import build_model

    arch = args.arch if args.weights is None else None
    weights = args.weights
    if weights is None:
        paddle.seed(0)
        weights = os.path.join(work, f"{args.arch}.pdparams")
        paddle.save(build_model(args.arch).state_dict(), weights)
    plain = predictors.CheckpointPredictor(weights, arch=arch)
    ops.restore(plain.model)
    if args.weights is None:
        _calibrate_head(plain, images)
        paddle.save(plain.model.state_dict(), weights)
    exported = os.path.join(work, "exported")
    export.export_checkpoint(weights, exported, arch=arch, verify=False)
    return weights, plain, exported


def _build_paths(args, info, weights, plain, exported):
    """Every way tools/predict.py can run the network, by name (PyTorch's when it is installed)."""
    from paddle_palm import ops
    from paddle_palm.engine import predictors

    paths = {PLAIN: plain}
    fast = predictors.CheckpointPredictor(weights, arch=args.arch if args.weights is None else None)
    if ops.is_accelerated(fast.model):
        paths["dygraph + oneDNN conv (--weights)"] = fast
    paths["Paddle Inference oneDNN fp32 (--inference-model)"] = predictors.ExportedPredictor(exported, threads=args.threads)
    if info.get("avx512_bf16"):
        paths["Paddle Inference oneDNN bf16 (--precision bf16)"] = predictors.ExportedPredictor(
            exported, threads=args.threads, precision="bf16")
    paths["Paddle Inference, no oneDNN (--no-onednn)"] = predictors.ExportedPredictor(
        exported, threads=args.threads, onednn=False)
    if not args.no_torch:
        try:
            paths[TORCH] = TorchPredictor(args.arch, plain.image_size, args.threads)
        except ImportError:
            pass
        except ValueError as exc:  # no reference network for this architecture
            print(f"(no PyTorch figure: {exc})")
    return paths


def _time_networks(paths, args):
    """The network alone, batch 1: per path, the median of each round (rounds interleaved across paths)."""
    from paddle_palm.engine import predict

    latency = {name: [] for name in paths}
    for round_index in range(args.rounds):
        for name, predictor in paths.items():
            result = predict.measure_latency(predictor, runs=args.runs, warmup=3 if args.quick else 5)
            latency[name].append(result["median_ms"])
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{name.split(' (')[0]} {values[-1]:.1f} ms" for name, values in latency.items()), flush=True)
    return latency


def _time_end_to_end(paths, images, batch_size):
    """``predict_images`` on the files, per Paddle path: ms per image at batch 1 and ``batch_size``, probabilities."""
    import numpy as np

    from paddle_palm.engine import predict

    single, batched, probabilities = {}, {}, {}
    for name, predictor in paths.items():
        if name == TORCH:
            continue
        predict.predict_images(predictor, images[:2], batch_size=1)  # warm-up
        start = time.perf_counter()
        records = predict.predict_images(predictor, images, batch_size=1)
        single[name] = (time.perf_counter() - start) * 1000.0 / len(images)
        probabilities[name] = np.array([r["pm_probability"] for r in records], dtype=np.float64)
        predict.predict_images(predictor, images[:batch_size], batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        predict.predict_images(predictor, images, batch_size=batch_size)
        batched[name] = (time.perf_counter() - start) * 1000.0 / len(images)
    return single, batched, probabilities


def _rows(paths, latency, single, batched, probabilities):
    """One row per path: best latency, ratios against plain dygraph and PyTorch, end to end, probability error."""
    import numpy as np

    reference = probabilities[PLAIN]
    print("plain dygraph probabilities (first 8 images):", np.round(reference[:8], 4))
    baseline = min(latency[PLAIN])
    torch_ms = min(latency[TORCH]) if TORCH in latency else None
    rows = []
    for name in paths:
        best = min(latency[name])
        rows.append({
            "path": name,
            "latency_ms": best,
            "latency_rounds_ms": latency[name],
            "vs_plain_dygraph": baseline / best,
            "vs_torch": (torch_ms / best) if torch_ms else None,
            "end_to_end_ms_per_image": single.get(name),
            "end_to_end_batched_ms_per_image": batched.get(name),
            "max_abs_probability_difference": (float(np.max(np.abs(probabilities[name] - reference)))
                                               if name in probabilities else None),
        })
    return rows


def _record(args, info, images, loads, rows):
    """The JSON record of the run: settings, machine, versions and the rows."""
    import paddle

    from paddle_palm import ops

    record = {
        "arch": args.arch, "weights": args.weights or "initial weights (seed 0)", "threads": args.threads,
        "runs": args.runs, "rounds": args.rounds, "images": len(images), "batch_size": args.batch_size,
        "image_folder": str(images[0].parent), "load_average_before": loads[0], "load_average_after": loads[1],
        "cpu": info.get("cpu"), "python": platform.python_version(), "paddle": paddle.__version__,
        "onednn_operator": ops.load().path if ops.load() is not None else None,
        "rows": rows,
    }
    try:
        import torch

        record["torch"] = torch.__version__
    except ImportError:
        record["torch"] = None
    return record


def _cell(value, spec):
    return "n/a" if value is None else format(value, spec)


def _markdown(args, record, images):
    """The report: a paragraph on how it was measured, then a table row per path."""
    loads = record["load_average_before"], record["load_average_after"]
    lines = [
        f"# Prediction time per 224x224 image: {args.arch}, {args.threads} threads",
        "",
        f"{record['cpu']}; Python {record['python']}, paddle {record['paddle']}, torch {record['torch']}; "
        f"load average {loads[0][0]:.2f} before, {loads[1][0]:.2f} after. Network alone: batch 1, best of "
        f"{args.rounds} interleaved rounds of the median of {args.runs} passes. End to end: `predict_images` on "
        f"{len(images)} photographs from {images[0].parent.name}/ (decode, resize, normalise, network), batch 1 "
        f"and batch {args.batch_size} (`tools/predict.py`'s default).",
        "",
        f"| path | network ms | vs plain dygraph | vs PyTorch | end to end ms/image, batch 1 | "
        f"end to end ms/image, batch {args.batch_size} | max abs prob. diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in record["rows"]:
        vs_torch = f"{row['vs_torch']:.2f}x" if row["vs_torch"] else "n/a"
        lines.append(
            f"| {row['path']} | {row['latency_ms']:.1f} | {row['vs_plain_dygraph']:.2f}x | {vs_torch} | "
            f"{_cell(row['end_to_end_ms_per_image'], '.1f')} | {_cell(row['end_to_end_batched_ms_per_image'], '.1f')} | "
            f"{_cell(row['max_abs_probability_difference'], '.1e')} |")
    return "\n".join(lines) + "\n"


def _write_results(out, record, text):
    from bench.report import write_results

    written = write_results(out, "predict-", record, text)
    print(f"results in {written.with_suffix('.json')} and .md")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.runs, args.rounds, args.image_count, args.batch_size = 3, 1, 4, 2
    from paddle_palm import runtime

    info = runtime.setup_runtime(device="cpu", fast=True, threads=args.threads)
    work = tempfile.mkdtemp(prefix="predict-latency-")
    images = _photographs(args.images, args.image_count, work)
    weights, plain, exported = _prepare_model(args, work, images)
    paths = _build_paths(args, info, weights, plain, exported)
    load_before = os.getloadavg()
    latency = _time_networks(paths, args)
    single, batched, probabilities = _time_end_to_end(paths, images, args.batch_size)
    load_after = os.getloadavg()
    rows = _rows(paths, latency, single, batched, probabilities)
    record = _record(args, info, images, (load_before, load_after), rows)
    text = _markdown(args, record, images)
    print(text)
    _write_results(args.out, record, text)
    return 0


if __name__ == "__main__":
    from paddle_palm import cli

    cli.run(main)
