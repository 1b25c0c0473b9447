"""Data-pipeline measurements on original-size (about 2000 px) fundus photographs.

The shared PALM copies are 224x224; the archives users download hold photographs
of about 2124x2056 pixels, whose JPEG decoding dominates the cost of a sample.
:func:`make_originals` enlarges a few shared images to that size (``cv2.resize``)
into a temporary dataset folder, then :func:`measure` times:

* the course reader (``paddle_palm.data.readers.data_loader``, SPEC 1.3);
* ``PalmDataset`` without the cache, with the cache (after ``warm_cache``), and
  with the cache and ``paddle.io.DataLoader`` workers;
* the share of a training loop spent waiting for data, with the fast
  SqueezeNet 1.1 training step (:class:`bench.paths.PaddleDygraph`) consuming the
  batches: ``wait / (wait + step)``.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

#: Size of the PALM photographs (width, height).
ORIGINAL_SIZE = (2124, 2056)


def make_originals(shared_dir, out_dir, count):
    """Enlarge ``count`` shared training images (spread over H, N, P) to :data:`ORIGINAL_SIZE`.

    Args:
        shared_dir: a dataset folder holding ``PALM-Training400/*.jpg``.
        out_dir: where to create ``PALM-Training400/``.
        count: number of images.

    Returns:
        Path: the new ``PALM-Training400`` folder.
    """
    import cv2

    source = Path(shared_dir) / "PALM-Training400"
    names = sorted(p.name for p in source.glob("*.jpg"))
    if len(names) < count:
        raise FileNotFoundError(f"{source}: {len(names)} images, {count} needed")
    picked = [names[i] for i in np.linspace(0, len(names) - 1, count).astype(int)]
    target = Path(out_dir) / "PALM-Training400"
    target.mkdir(parents=True, exist_ok=True)
    for name in picked:
        image = cv2.imread(str(source / name))
        big = cv2.resize(image, ORIGINAL_SIZE, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(target / name), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return target


def _palm_dataset():
    try:
        from paddle_palm.data import PalmDataset
    except ImportError:
        from paddle_palm.data.dataset import PalmDataset
    return PalmDataset


def _paddle_batches(dataset, batch_size, workers):
    import paddle

    loader = paddle.io.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=False,
                                  num_workers=workers, use_shared_memory=False)
    for images, labels in loader:
        yield images, labels


def _course_batches(folder, batch_size, image_size):
    import paddle

    from paddle_palm.data.readers import data_loader

    reader = data_loader(str(folder), batch_size=batch_size, mode="train", image_size=image_size)
    for images, labels in reader():
        yield paddle.to_tensor(images), paddle.to_tensor(labels.reshape(-1).astype("int64"))


def _epoch_rate(batches):
    start, seen = time.perf_counter(), 0
    for images, _ in batches:
        seen += int(images.shape[0])
    return seen / (time.perf_counter() - start)


def _loop_share(batches, step):
    """Wait-for-data time, step time and the waiting share over one pass of ``batches``."""
    wait = compute = 0.0
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:
            wait += time.perf_counter() - start
            break
        middle = time.perf_counter()
        wait += middle - start
        step(images, labels)
        compute += time.perf_counter() - middle
    return {"wait_s": wait, "step_s": compute, "share": wait / max(wait + compute, 1e-9)}


def measure(shared_dir, count=100, image_size=224, batch_size=10, workers=2, arch="squeezenet1_1"):
    """Time the readers on ``count`` original-size images.

    Args:
        shared_dir: a dataset folder with ``PALM-Training400`` (the 224-px shared copies).
        count: images to enlarge and read.
        image_size: the network's input size.
        batch_size: images per batch.
        workers: ``DataLoader`` workers for the "cache + workers" pipeline.
        arch: the architecture whose training step consumes the batches.

    Returns:
        dict: ``images``, ``original_size``, ``make_s``, ``rates`` (pipeline -> images/s for
        one epoch), ``warm_cache_s``, ``step`` (the training step's execution path), ``loop``
        (pipeline -> ``wait_s``, ``step_s``, ``share``).
    """
    import paddle

    from bench.paths import PaddleDygraph, paddle_loss

    PalmDataset = _palm_dataset()
    tmp = tempfile.mkdtemp(prefix="bench-originals-")
    try:
        start = time.perf_counter()
        folder = make_originals(shared_dir, tmp, count)
        result = {"images": count, "original_size": list(ORIGINAL_SIZE), "make_s": time.perf_counter() - start,
                  "workers": workers}

        plain = PalmDataset(tmp, "train", image_size=image_size, preprocess="A")
        cached = PalmDataset(tmp, "train", image_size=image_size, preprocess="A", cache=True)
        start = time.perf_counter()
        cached.warm_cache()
        result["warm_cache_s"] = time.perf_counter() - start

        pipelines = {
            "course reader": lambda: _course_batches(folder, batch_size, image_size),
            "PalmDataset": lambda: _paddle_batches(plain, batch_size, 0),
            "PalmDataset + cache": lambda: _paddle_batches(cached, batch_size, 0),
            f"PalmDataset + cache + {workers} workers": lambda: _paddle_batches(cached, batch_size, workers),
        }
        result["rates"] = {name: _epoch_rate(make()) for name, make in pipelines.items()}

        try:  # the trainer's step: oneDNN convolutions when the operator is available
            runner = PaddleDygraph(arch, batch_size, image_size, onednn_conv=True)
            result["step"] = "dygraph + setup_runtime + oneDNN conv"
        except RuntimeError:
            runner = PaddleDygraph(arch, batch_size, image_size)
            result["step"] = "dygraph + setup_runtime"
        model, optimizer, loss_name = runner.model, runner.optimizer, runner.loss_name

        def step(images, labels):
            model.train()
            loss = paddle_loss(model(images), labels, loss_name)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            float(loss)

        step(paddle.to_tensor(runner.images), paddle.to_tensor(runner.labels))  # warm-up
        result["loop"] = {name: _loop_share(make(), step) for name, make in pipelines.items()}
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # a quick look: python bench/data_pipeline.py SHARED_DIR
    import json
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(json.dumps(measure(sys.argv[1], count=20), indent=1))
