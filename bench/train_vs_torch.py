#!/usr/bin/env python
"""Time ``tools/train.py`` against a PyTorch training loop on the same images, in one run.

``bench/run.py`` times one training step of a fixed random batch inside a benchmark
worker.  This script is the end-to-end check of the same claim: it runs the real
trainer, exactly as a user types it::

    python tools/train.py --arch resnet50 --image-size 224 --batch-size 10 --epochs E \\
        --num-workers 0 --no-progress --data-dir DATA --output-dir RUN

(the fast path is its default on a CPU: ``setup_runtime(fast=True)`` and the oneDNN
convolutions of :mod:`paddle_palm.ops`), and a plain PyTorch training loop on the
same image files:

* the network of :mod:`bench.torch_reference` (the same structure as paddle_palm's),
  the loss, optimizer, learning rate and momentum of the trainer's resolved settings
  (``tools/train.py --print-config``: for ResNet-50 sigmoid cross-entropy on one logit
  and Momentum 0.9, i.e. ``torch.optim.SGD(momentum=0.9)``), the same batch size and
  as many threads (``torch.set_num_threads``; one per usable core unless ``--threads``);
* the images loaded the same way as the trainer's ``--num-workers 0`` loader: in the
  training process, one batch at a time, each image decoded, resized, augmented (when
  the recipe augments, with the same per-image seeds) and normalised by paddle_palm's
  own functions (:mod:`paddle_palm.data.transforms`), in the same shuffled order
  per epoch (the trainer's ``(seed, epoch)`` permutation).  The learning-rate
  schedule is left out: it changes values, not the work.

What is compared is **training images per second**: the images of an epoch over the
wall time of the epoch's training loop (data loading, forward, backward, update and
reading the loss; not the validation pass or the checkpoint writing that follow).
For ``tools/train.py`` it is the ``images_per_second`` column of its ``history.csv``
(the ``img/s`` of its epoch lines); the PyTorch loop measures the same span the same
way.  The first ``--warmup-epochs`` epochs (default 1: oneDNN primitive creation,
allocator growth, first-call costs) are left out; a run's rate is the images of the
remaining epochs over their time.  The runs alternate in rounds (the order reversed
every other round) so that load from other programs hits both alike; the report
gives every run's rate, the medians, the ratio ``tools/train.py / PyTorch`` (of the
medians, and per round), the load average before and after, and the versions.

Data: ``--data-dir DIR`` (a dataset folder in the layout of SPEC 5), or by default
a small folder built in a temporary place: copies of ``--train-images`` training
and ``--valid-images`` validation images of ``../shared/palm`` (spread over the H,
N and P files; ``--enlarge`` writes them at the photographs' original 2124x2056
size instead, so that JPEG decoding costs what it costs on the real archives), or,
when that folder is absent, the synthetic data set of
:func:`paddle_palm.data.synthetic.make_synthetic_palm`.

Results: a Markdown table on standard output and ``train_vs_torch-<stamp>.json``/``.md``
plus ``train_vs_torch-latest.json``/``.md`` under ``--out-dir`` (``bench/results``).

Examples::

    python bench/train_vs_torch.py                      # ResNet-50, 224 px, batch 10, 3 epochs, 2 rounds
    python bench/train_vs_torch.py --with-no-fast       # also tools/train.py --no-fast (plain dygraph)
    python bench/train_vs_torch.py --with-amp           # also tools/train.py --amp (bf16 convolutions)
    python bench/train_vs_torch.py --epochs 4 --rounds 3 --train-images 200
    python bench/train_vs_torch.py --quick              # smoke run: SqueezeNet 1.1, 64 px, 8 images
    python bench/train_vs_torch.py --config configs/palm_cpu.yaml --arch se_resnet18 --image-size 128 \\
        --batch-size 16                                 # the CPU recipe's network against its PyTorch twin
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from paddle_palm import cli  # noqa: E402
from paddle_palm.errors import ConfigError, DataError, MissingFileError, TrainingError  # noqa: E402

#: Prefix of the PyTorch loop's result line on its standard output.
REPLY_PREFIX = "@@TRAIN_VS_TORCH "
#: Names of the contenders in the report.
TRAIN_PY = "tools/train.py"
TRAIN_PY_NO_FAST = "tools/train.py --no-fast"
TRAIN_PY_AMP = "tools/train.py --amp"
TORCH = "PyTorch loop"
#: Settings of ``--quick``.
QUICK = {"arch": "squeezenet1_1", "image_size": 64, "batch_size": 4, "epochs": 2, "rounds": 1,
         "train_images": 8, "valid_images": 4, "warmup_epochs": 1}


# --------------------------------------------------------------------------- the data folder


def _pick_evenly(items, count):
    """``count`` items spread evenly over the sorted ``items`` (first and last included)."""
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def build_data(folder, shared, train_images, valid_images, image_size, enlarge=False):
    """Build a small dataset folder (SPEC 5 layout) for the timing runs.

    Args:
        folder: where to write it (created).
        shared: a dataset folder to copy images from (``../shared/palm``); when it is None or
            has no ``PALM-Training400`` the synthetic data set is generated instead.
        train_images, valid_images: how many images of each split.
        image_size: side of the synthetic images (the trainer resizes anyway).
        enlarge: write the copied images at the photographs' original size (2124x2056).

    Returns:
        (Path, str): the folder and a one-line description of what it holds.

    Raises:
        DataError: the source folder holds fewer images than asked for.
    """
    from paddle_palm.data.layout import GT_DIR, LABELS_CSV, TRAIN_DIR, VALID_DIR

    folder = Path(folder)
    shared = Path(shared) if shared else None
    if shared is None or not (shared / TRAIN_DIR).is_dir():
        from paddle_palm.data.synthetic import make_synthetic_palm

        make_synthetic_palm(folder, n_train=train_images, n_valid=valid_images, image_size=max(image_size, 32))
        return folder, (f"synthetic fundus-like data set (make_synthetic_palm, {train_images} training / "
                        f"{valid_images} validation images, {max(image_size, 32)} px)")
    import cv2

    from paddle_palm.data.labels import labels_to_csv, read_labels
    from paddle_palm.data.layout import find_labels_file, list_images, training_dir, validation_dir

    sources = list_images(training_dir(shared))
    if len(sources) < train_images:
        raise DataError(f"{training_dir(shared)} holds {len(sources)} training images, {train_images} asked for "
                        "(--train-images)")
    table = read_labels(find_labels_file(shared))
    table = table[[(validation_dir(shared) / name).is_file() for name in table["imgName"]]]
    if len(table) < valid_images:
        raise DataError(f"{shared} holds {len(table)} labelled validation images, {valid_images} asked for "
                        "(--valid-images)")
    table = table.iloc[:valid_images].reset_index(drop=True)
    if enlarge:
        from bench.data_pipeline import ORIGINAL_SIZE
    for split, names, source_dir in ((TRAIN_DIR, [p.name for p in _pick_evenly(sources, train_images)],
                                      training_dir(shared)),
                                     (VALID_DIR, list(table["imgName"]), validation_dir(shared))):
        target = folder / split
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            if enlarge:
                image = cv2.imread(str(source_dir / name))
                big = cv2.resize(image, ORIGINAL_SIZE, interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(target / name), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
            else:
                shutil.copyfile(source_dir / name, target / name)
    (folder / GT_DIR).mkdir(exist_ok=True)
    labels_to_csv(table, folder / GT_DIR / LABELS_CSV)
    labels_to_csv(table, folder / LABELS_CSV)
    how = "enlarged to 2124x2056 JPEG" if enlarge else "copied"
    return folder, (f"{train_images} training / {valid_images} validation images of {shared} ({how}; "
                    f"training images spread evenly over the sorted H/N/P files)")


def count_training_images(data_dir):
    """Number of training images in a dataset folder."""
    from paddle_palm.data.layout import list_images, training_dir

    return len(list_images(training_dir(data_dir)))


# --------------------------------------------------------------------------- tools/train.py


def train_py_command(args, data_dir, run_dir, fast=True, print_config=False, amp=False):
    """The ``tools/train.py`` command line of one timing run."""
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--arch", args.arch,
               "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
               "--epochs", str(args.epochs), "--num-workers", "0", "--no-progress",
               "--data-dir", str(data_dir), "--seed", str(args.seed)]
    if args.config:
        command[2:2] = ["--config", str(args.config)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if not fast:
        command.append("--no-fast")
    if amp:
        command.append("--amp")
    if print_config:
        return command + ["--print-config"]
    return command + ["--output-dir", str(run_dir)]


def resolved_config(args, data_dir):
    """The trainer's resolved settings for these options (``tools/train.py --print-config``), flattened.

    Raises:
        ConfigError: ``tools/train.py`` refused the options.
    """
    import yaml

    done = subprocess.run(train_py_command(args, data_dir, None, print_config=True), cwd=str(REPO),
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise ConfigError(f"tools/train.py --print-config failed: {_last_line(done.stderr)}")
    flat = {}
    for section in yaml.safe_load(done.stdout).values():
        flat.update(section)
    return flat


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _rate(epochs, warmup):
    """Images over seconds of the epochs after ``warmup`` (None when there are none)."""
    timed = [e for e in epochs if e["epoch"] > warmup]
    seconds = sum(e["seconds"] for e in timed)
    return (sum(e["images"] for e in timed) / seconds) if timed and seconds > 0 else None


def _run_timed(command, timeout, result):
    """Run ``command`` (from the repository root) within ``timeout`` seconds.

    Records ``wall_s`` in ``result``, or ``ok=False`` and the timeout as ``error``.

    Returns:
        subprocess.CompletedProcess or None: None when it timed out.
    """
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=str(REPO), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        result.update(ok=False, error=f"timed out after {timeout} s")
        return None
    result["wall_s"] = round(time.perf_counter() - started, 2)
    return done


def run_train_py(args, data_dir, run_dir, n_train, fast=True, amp=False):
    """Run ``tools/train.py`` once; return its per-epoch training rates read from ``history.csv``.

    Returns:
        dict: ``ok``, ``epochs`` (``epoch``, ``images``, ``images_per_second``, ``seconds`` of the
        training loop), ``rate`` (images/s after the warm-up epochs), ``execution`` (what the trainer
        says it ran: "fast path: 2 threads, oneDNN convolutions", "plain dygraph"), ``note`` (the
        trainer's note when the oneDNN operator was unavailable), ``wall_s``, ``command``, or
        ``error`` when the run failed.
    """
    command = train_py_command(args, data_dir, run_dir, fast=fast, amp=amp)
    result = {"command": " ".join(command[1:]), "load_1min_before": round(os.getloadavg()[0], 2)}
    done = _run_timed(command, args.timeout, result)
    if done is None:
        return result
    output = done.stdout + "\n" + done.stderr
    found = re.search(r"\((fast path: [^)]*|plain dygraph)\)", output)
    result["execution"] = found.group(1) if found else "?"
    note = re.search(r"note: oneDNN convolutions unavailable[^\n]*", output)
    if note:
        result["note"] = note.group(0)
    history = Path(run_dir) / "history.csv"
    if done.returncode != 0 or not history.is_file():
        result.update(ok=False, error=f"exit code {done.returncode}: {_last_line(done.stderr or done.stdout)}")
        return result
    with open(history, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    epochs = []
    for row in rows:
        rate = float(row["images_per_second"])
        epochs.append({"epoch": int(row["epoch"]), "images": n_train, "images_per_second": rate,
                       "seconds": n_train / rate if rate > 0 else float("inf"),
                       "epoch_seconds_with_validation": float(row["seconds"])})
    result.update(ok=True, epochs=epochs, rate=_rate(epochs, args.warmup_epochs))
    return result


# --------------------------------------------------------------------------- the PyTorch loop (child process)


def _epoch_seed(seed, epoch, stream):
    """The trainer's per-epoch seed (:func:`paddle_palm.engine.loaders.epoch_seed`, whose module imports Paddle)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1)[0] & 0x7FFFFFFF)


def _augmentation_setting(augment):
    """What the trainer gives ``PalmDataset`` for ``augment`` (:func:`paddle_palm.engine.loaders.augmentation`)."""
    if isinstance(augment, dict):
        return dict(augment)
    return augment == "flip"


def torch_loop(spec):
    """Train the PyTorch reference network on the folder's training images; per-epoch figures.

    Runs in its own process, which never imports Paddle.  ``spec`` holds ``data_dir``, ``arch``,
    ``num_classes``, ``loss``, ``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``image_size``,
    ``preprocess``, ``augment``, ``batch_size``, ``epochs``, ``seed`` and ``threads``.

    Returns:
        dict: ``epochs`` (``epoch``, ``images``, ``seconds``, ``images_per_second``, ``loss``),
        ``torch`` (its version) and ``threads`` (in force).
    """
    import torch

    from bench.torch_reference import MODELS
    from paddle_palm.data.labels import label_from_filename
    from paddle_palm.data.layout import list_images, training_dir
    from paddle_palm.data.transforms import make_augmentation, normalize_for, read_resized

    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(int(spec["seed"]))
    if spec["arch"] not in MODELS:
        raise ConfigError(f"no PyTorch reference network for {spec['arch']!r}; known: {', '.join(sorted(MODELS))}")
    paths = [str(p) for p in list_images(training_dir(spec["data_dir"]))]
    labels = np.array([label_from_filename(p) for p in paths], dtype=np.int64)
    size, method, seed, batch_size = spec["image_size"], spec["preprocess"], int(spec["seed"]), spec["batch_size"]
    augmentation = make_augmentation(_augmentation_setting(spec["augment"]))

    cache = {} if spec.get("cache") else None  # the trainer's PalmDataset(cache=True): decode and resize once

    def load(index, epoch):  # PalmDataset.__getitem__
        image = cache.get(index) if cache is not None else None
        if image is not None:
            image = image.copy()  # the augmentation must not alter the cached copy
        else:
            image = read_resized(paths[index], method, size)
            if cache is not None:
                cache[index] = image.copy()
        if augmentation is not None:
            image = augmentation(image, np.random.default_rng([seed, epoch, index]))
        return normalize_for(method, image)

    model = MODELS[spec["arch"]](num_classes=int(spec["num_classes"]))
    decay = float(spec.get("weight_decay") or 0.0)
    if spec["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), spec["lr"], weight_decay=decay)
    else:
        momentum = float(spec["momentum"]) if spec["optimizer"] == "momentum" else 0.0
        optimizer = torch.optim.SGD(model.parameters(), spec["lr"], momentum=momentum, weight_decay=decay)
    functional = torch.nn.functional
    epochs = []
    for epoch in range(int(spec["epochs"])):
        model.train()
        order = np.random.default_rng(_epoch_seed(seed, epoch, 1)).permutation(len(paths))
        loss_sum, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            images = torch.from_numpy(np.stack([load(int(i), epoch) for i in indices]))
            targets = torch.from_numpy(labels[indices])
            logits = model(images)
            if spec["loss"] == "bce":
                loss = functional.binary_cross_entropy_with_logits(logits.reshape(-1, 1),
                                                                   targets.float().reshape(-1, 1))
                predicted = (logits.detach().reshape(-1) > 0).long()
            else:
                loss = functional.cross_entropy(logits, targets)
                predicted = logits.detach().argmax(dim=1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not np.isfinite(value):
                raise TrainingError(f"the PyTorch loss became {value} at epoch {epoch + 1}")
            correct += int((predicted == targets).sum())
            loss_sum += value * len(indices)
            seen += len(indices)
        seconds = time.perf_counter() - started
        epochs.append({"epoch": epoch + 1, "images": seen, "seconds": seconds, "images_per_second": seen / seconds,
                       "loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1)})
    return {"epochs": epochs, "torch": torch.__version__, "threads": torch.get_num_threads()}


def torch_spec(args, config, data_dir):
    """The PyTorch loop's settings: the trainer's resolved ``config`` for this folder."""
    from paddle_palm.runtime import usable_cores

    keys = ("arch", "num_classes", "loss", "optimizer", "lr", "momentum", "weight_decay", "image_size",
            "preprocess", "augment", "batch_size", "epochs", "seed")
    spec = {key: config[key] for key in keys}
    spec["cache"] = bool(config.get("cache"))
    spec.update(data_dir=str(data_dir), threads=args.threads or usable_cores())
    return spec


def run_torch(args, spec):
    """Run :func:`torch_loop` in a child process; the same result dict as :func:`run_train_py`."""
    command = [sys.executable, str(Path(__file__).resolve()), "--torch-loop", json.dumps(spec)]
    result = {"command": "torch_loop " + json.dumps({k: v for k, v in spec.items() if k != "data_dir"}),
              "load_1min_before": round(os.getloadavg()[0], 2)}
    done = _run_timed(command, args.timeout, result)
    if done is None:
        return result
    reply = next((line[len(REPLY_PREFIX):] for line in done.stdout.splitlines() if line.startswith(REPLY_PREFIX)),
                 None)
    if done.returncode != 0 or reply is None:
        result.update(ok=False, error=f"exit code {done.returncode}: {_last_line(done.stderr or done.stdout)}")
        return result
    reply = json.loads(reply)
    result.update(ok=True, epochs=reply["epochs"], rate=_rate(reply["epochs"], args.warmup_epochs),
                  execution=f"torch {reply['torch']}, {reply['threads']} thread{'s' if reply['threads'] != 1 else ''}",
                  torch=reply["torch"])
    return result


# --------------------------------------------------------------------------- the report


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs, contenders):
    """Per contender: rates of the rounds, their median, and the ratios to the PyTorch loop."""
    summary = {}
    for name in contenders:
        mine = [run for run in runs if run["name"] == name]
        rates = [run.get("rate") for run in mine]
        summary[name] = {"rates": rates, "median": _median(rates),
                         "execution": next((r["execution"] for r in mine if r.get("execution")), "?"),
                         "failed": [f"round {r['round']}: {r['error']}" for r in mine if not r["ok"]]}
    torch_median = summary.get(TORCH, {}).get("median")
    for name, entry in summary.items():
        entry["vs_torch"] = entry["median"] / torch_median if entry["median"] and torch_median else None
        paired = []
        for run in runs:
            if run["name"] != name or not run.get("rate"):
                continue
            ref = next((r for r in runs if r["name"] == TORCH and r["round"] == run["round"] and r.get("rate")), None)
            paired.append(run["rate"] / ref["rate"] if ref else None)
        entry["vs_torch_per_round"] = paired
    return summary


def _fmt(value, digits=2, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def markdown(report):
    """The report as Markdown (a paragraph of conditions, the table, the headline ratio)."""
    meta, summary = report["meta"], report["summary"]
    versions, machine = meta["versions"], meta["machine"]
    lines = [
        f"Run {meta['date']} on {machine['cpu']} ({machine['cores']} cores, flags {' '.join(machine['flags'])}); "
        f"Python {versions['python']}, paddlepaddle {versions.get('paddlepaddle', '?')}, "
        f"torch {versions.get('torch', 'not installed')}, numpy {versions.get('numpy', '?')}.",
        "",
        f"Command: `{meta['command']}`.",
        "",
        f"{meta['arch']}, {meta['image_size']} px, batch {meta['batch_size']}, {meta['epochs']} epochs of "
        f"{meta['train_images']} training images per run (the first {meta['warmup_epochs']} left out), "
        f"{meta['rounds']} round{'s' if meta['rounds'] != 1 else ''} alternating the runs, "
        f"{meta['threads']} thread{'s' if meta['threads'] != 1 else ''}; data: {meta['data']}. "
        f"Load average before/after: {meta['load_before']} / {meta['load_after']}.",
        "",
        "Training images/s: images of an epoch over the time of its training loop (data loading, forward, "
        "backward, update; not validation or checkpoints); for tools/train.py its history.csv "
        "`images_per_second`.",
        "",
        "| run | execution | img/s per round | median img/s | vs PyTorch | per round |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in summary.items():
        rates = ", ".join(_fmt(r) for r in entry["rates"])
        per_round = ", ".join(_fmt(r, suffix="x") for r in entry["vs_torch_per_round"]) if name != TORCH else ""
        lines.append(f"| {name} | {entry['execution']} | {rates} | {_fmt(entry['median'])} | "
                     f"{_fmt(entry['vs_torch'], suffix='x')} | {per_round} |")
    fast = summary.get(TRAIN_PY, {})
    lines.append("")
    lines.append(f"**tools/train.py / PyTorch: {_fmt(fast.get('vs_torch'), suffix='x')}** (ratio of the medians; "
                 ">1: tools/train.py trains faster).")
    amp = summary.get(TRAIN_PY_AMP)
    if amp and amp.get("median") and fast.get("median"):
        lines.append(f"**tools/train.py --amp / tools/train.py: {_fmt(amp['median'] / fast['median'], suffix='x')}** "
                     f"({amp['execution']}).")
    for name, entry in summary.items():
        for failure in entry["failed"]:
            lines.append(f"- {name} failed, {failure}")
    for run in report["runs"]:
        if run.get("note"):
            lines.append(f"- {run['name']} round {run['round']}: {run['note']}")
    loads = ", ".join(f"{run['name']} r{run['round']}: {run['load_1min_before']}" for run in report["runs"])
    lines.append(f"- 1-minute load average before each run: {loads}.")
    return "\n".join(lines) + "\n"


def _versions():
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("paddlepaddle", "torch", "numpy", "opencv-python"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def write_report(report, out_dir, stamp):
    """Write ``train_vs_torch-<stamp>`` and ``train_vs_torch-latest`` as ``.json`` and ``.md``; return the text."""
    from bench.report import write_results

    text = markdown(report)
    write_results(out_dir, "train_vs_torch-", report, text, stamp=stamp)
    return text


# --------------------------------------------------------------------------- command line


def build_parser():
    """The argument parser (options grouped by what they choose)."""
    parser = cli.ArgumentParser(
        prog="train_vs_torch.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Time tools/train.py (a subprocess, exactly as a user runs it; its fast path is the default)
            against a PyTorch training loop on the same images, in one run.

            The PyTorch loop uses the network of bench/torch_reference.py and the trainer's own
            resolved settings (tools/train.py --print-config: loss, optimizer, lr, momentum, batch,
            preprocessing, augmentation), loads and preprocesses the images with paddle_palm's
            functions in the training process in the trainer's shuffled order, with as many
            threads. Compared: training images/s = images of an epoch / time of its training loop
            (tools/train.py: history.csv images_per_second), leaving out the first
            --warmup-epochs; runs alternate in --rounds, the report gives the medians and the
            ratio tools/train.py / PyTorch."""),
        epilog=textwrap.dedent("""\
            examples:
              python bench/train_vs_torch.py                  # ResNet-50, 224 px, batch 10, 3 epochs, 2 rounds
              python bench/train_vs_torch.py --with-no-fast   # also time tools/train.py --no-fast
              python bench/train_vs_torch.py --data-dir ../shared/palm --epochs 2 --rounds 1
              python bench/train_vs_torch.py --quick          # smoke run (about 15 s)

            A default run takes about 3-4 minutes on 2 cores (each tools/train.py run also validates and
            writes checkpoints after every epoch; those are not timed). Results: Markdown on standard
            output, train_vs_torch-<stamp>.json/.md and train_vs_torch-latest.json/.md in --out-dir."""),
    )
    what = parser.add_argument_group("what to train")
    what.add_argument("--arch", default="resnet50", help="architecture (needs a bench/torch_reference.py network: "
                      "resnet50, squeezenet1_1; default resnet50)")
    what.add_argument("--config", metavar="YAML", default=None,
                      help="a recipe for tools/train.py (e.g. configs/palm_cpu.yaml: se_resnet18, 128 px, batch 16); "
                           "--arch, --image-size and --batch-size still apply; the PyTorch loop follows the "
                           "resolved settings (loss, optimizer, augmentation, cache)")
    what.add_argument("--image-size", type=cli.positive_int, default=224, metavar="PX", help="input side (default 224)")
    what.add_argument("--batch-size", type=cli.positive_int, default=10, metavar="N",
                      help="images per batch, both sides (default 10, the course's)")
    what.add_argument("--epochs", type=cli.positive_int, default=3, metavar="E",
                      help="epochs per run, warm-up included (default 3)")
    what.add_argument("--warmup-epochs", type=cli.non_negative_int, default=1, metavar="N",
                      help="first epochs left out of the rate (default 1)")
    what.add_argument("--seed", type=cli.non_negative_int, default=0, metavar="N", help="seed of both (default 0)")
    what.add_argument("--threads", type=cli.positive_int, default=None, metavar="N",
                      help="threads of both (default: every usable core, the trainer's default)")
    what.add_argument("--with-no-fast", action="store_true",
                      help="also time tools/train.py --no-fast (plain Paddle dygraph; about 2.5x slower)")
    what.add_argument("--with-amp", action="store_true",
                      help="also time tools/train.py --amp (bf16 convolutions on CPUs with AVX-512 BF16 or AMX; "
                           "float32 elsewhere) and report its speed over tools/train.py's")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", default=None,
                      help="an existing dataset folder (tools/prepare_data.py's layout) to train on; default: build a small one")
    data.add_argument("--shared", metavar="DIR", default=str(REPO.parent / "shared" / "palm"),
                      help="where the built folder's images come from (default ../shared/palm; synthetic data "
                      "when it is absent)")
    data.add_argument("--train-images", type=cli.positive_int, default=100, metavar="N",
                      help="training images of the built folder (default 100: 10 batches per epoch)")
    data.add_argument("--valid-images", type=cli.positive_int, default=20, metavar="N",
                      help="validation images of the built folder (default 20; tools/train.py validates every epoch)")
    data.add_argument("--enlarge", action="store_true",
                      help="write the built folder's images at the original 2124x2056 size (JPEG decoding included)")
    run = parser.add_argument_group("run and output")
    run.add_argument("--rounds", type=cli.positive_int, default=2, metavar="R",
                     help="rounds; each runs every contender once, order reversed every other round (default 2)")
    run.add_argument("--timeout", type=cli.positive_int, default=3600, metavar="S",
                     help="seconds before one run is given up (default 3600)")
    run.add_argument("--quick", action="store_true",
                     help="smoke run: squeezenet1_1, 64 px, batch 4, 8 training / 4 validation images, 2 epochs, "
                     "1 round (the options above are ignored)")
    run.add_argument("--work-dir", metavar="DIR", default=None,
                     help="keep the data folder and the run folders here (default: a temporary folder, removed)")
    run.add_argument("--out-dir", metavar="DIR", default=str(REPO / "bench" / "results"),
                     help="where to write the JSON and Markdown (default bench/results)")
    parser.add_argument("--torch-loop", metavar="SPEC", default=None, help=argparse.SUPPRESS)
    return parser


def parse_args(argv=None):
    """Parse and check the options; ``--quick`` replaces the sizes with :data:`QUICK`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.timeout = min(args.timeout, 600)
    if args.epochs <= args.warmup_epochs:
        parser.error(f"--epochs ({args.epochs}) must exceed --warmup-epochs ({args.warmup_epochs}): "
                     "no epoch would be timed")
    return args


def _torch_available():
    code = subprocess.call([sys.executable, "-c", "import torch"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return code == 0


def main(argv=None):
    args = parse_args(argv)
    if args.torch_loop is not None:  # the child process of run_torch
        result = torch_loop(json.loads(args.torch_loop))
        sys.stdout.write(REPLY_PREFIX + json.dumps(result) + "\n")
        return 0
    started = time.time()

    def log(message):
        print(f"[{time.time() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if not _torch_available():
        raise ConfigError("PyTorch is not installed in this environment: nothing to compare with "
                          "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)")
    from bench.torch_reference import MODELS

    if args.arch not in MODELS:
        raise ConfigError(f"no PyTorch reference network for --arch {args.arch!r}; known: {', '.join(sorted(MODELS))}")
    from bench.run import machine_description

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    keep = args.work_dir is not None
    work = Path(args.work_dir) if keep else Path(tempfile.mkdtemp(prefix="train-vs-torch-"))
    work.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S")
    try:
        if args.data_dir:
            data_dir = Path(args.data_dir)
            if not data_dir.is_dir():
                raise MissingFileError(f"data folder not found: {data_dir}")
            description = f"{data_dir} (given)"
        else:
            data_dir, description = build_data(work / "data", args.shared, args.train_images, args.valid_images,
                                               args.image_size, enlarge=args.enlarge)
        n_train = count_training_images(data_dir)
        log(f"data: {description}")
        config = resolved_config(args, data_dir)
        spec = torch_spec(args, config, data_dir)
        log(f"trainer settings: {config['arch']}, loss {config['loss']}, {config['optimizer']} lr {config['lr']:g}, "
            f"preprocessing {config['preprocess']}, augment {config['augment']}, batch {config['batch_size']}")
        if n_train % args.batch_size:
            log(f"note: {n_train} training images are not a multiple of the batch ({args.batch_size}): "
                "each epoch ends with a smaller batch")
        contenders = ([TRAIN_PY, TORCH] + ([TRAIN_PY_NO_FAST] if args.with_no_fast else [])
                      + ([TRAIN_PY_AMP] if args.with_amp else []))
        meta = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python bench/train_vs_torch.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine_description(), "versions": _versions(), "arch": args.arch,
            "image_size": args.image_size, "batch_size": args.batch_size, "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs, "rounds": args.rounds, "train_images": n_train,
            "data": description, "threads": spec["threads"], "trainer_config": config,
            "torch_loop": {k: v for k, v in spec.items() if k != "data_dir"}, "load_before": load_before,
            "environment": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "PADDLE_PALM_ONEDNN")
                            if k in os.environ},
        }
        runs = []
        report = None
        for round_index in range(args.rounds):
            order = contenders if round_index % 2 == 0 else contenders[::-1]
            for name in order:
                log(f"round {round_index + 1}/{args.rounds}: {name} ...")
                if name == TORCH:
                    result = run_torch(args, spec)
                else:
                    kind = {TRAIN_PY: "fast", TRAIN_PY_NO_FAST: "no-fast", TRAIN_PY_AMP: "amp"}[name]
                    run_dir = work / "runs" / f"round{round_index + 1}-{kind}"
                    result = run_train_py(args, data_dir, run_dir, n_train, fast=(name != TRAIN_PY_NO_FAST),
                                          amp=(name == TRAIN_PY_AMP))
                    if not keep:
                        shutil.rmtree(run_dir, ignore_errors=True)
                result.update(name=name, round=round_index + 1)
                runs.append(result)
                if result["ok"]:
                    per_epoch = ", ".join(f"{e['images_per_second']:.2f}" for e in result["epochs"])
                    log(f"  {name}: {_fmt(result['rate'])} img/s after warm-up (epochs: {per_epoch}; "
                        f"{result.get('execution', '')}; {result['wall_s']:.0f} s in all)")
                else:
                    log(f"  {name} failed: {result['error']}")
            meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            meta["seconds"] = round(time.time() - started, 1)
            report = {"meta": meta, "summary": summarise(runs, contenders), "runs": runs}
            text = write_report(report, args.out_dir, stamp)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(text, end="")
    log(f"done in {time.time() - started:.0f}s; results in {args.out_dir}")
    return 0 if all(run["ok"] for run in runs) else 1


if __name__ == "__main__":
    cli.run(main)
