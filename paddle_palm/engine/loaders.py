"""Reproducible data for training: datasets, per-epoch orders, batches.

Every random draw that decides what a training step sees is a function of
``(seed, epoch)`` (:func:`epoch_seed`): the order of the samples
(:class:`EpochBatchSampler`) and the augmentation of each image
(:class:`paddle_palm.data.PalmDataset` seeds it from ``(seed, epoch, index)``).
That is what makes a resumed run repeat an uninterrupted one exactly, with or
without worker processes, and lets several processes share an epoch without overlap.
"""

import contextlib
import functools
import math
import os
import sys
import threading
import time

import numpy as np

from paddle_palm.cli import SIGNAL_GRACE_SECONDS, raise_if_stopped
from paddle_palm.errors import ConfigError, DataError, MissingFileError, PalmError

#: Most data-loading worker processes accepted (each holds a copy of the data set).
MAX_WORKERS = 64

#: ``prctl`` option: the signal the kernel sends this process when its parent ends (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


#: Seconds a worker that received SIGTERM goes on serving batches before it ends (see
#: :func:`_end_after_parent`): longer than the parent may take to end after the same signal.
WORKER_TERM_GRACE_SECONDS = SIGNAL_GRACE_SECONDS + 2


def _end_after_parent(signum, frame):
    # SIGTERM sent to the process group (a job controller, ``kill -- -PGID``) reaches the parent
    # too.  Ending at once would let Paddle's reader thread log the workers' end as unexpected
    # before the parent's handler runs; so would pausing here, because the parent's main thread
    # may be waiting inside Paddle (C++) for this worker's next batch, where its own handler
    # cannot run until the batch comes.  So the worker goes on serving; the parent prints its one
    # line and ends, which ends this worker (PR_SET_PDEATHSIG).  A SIGTERM to the worker alone
    # ends it after the grace (the kernel's alarm, whose default action ends the process).
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(math.ceil(WORKER_TERM_GRACE_SECONDS))


def _end_with_parent(worker_id, parent_pid):
    import signal

    # Ctrl-C reaches the whole process group: only the parent reports it, the worker goes on
    # until the parent shuts it down.  SIGTERM ends it silently, after the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_after_parent)
    if sys.platform.startswith("linux"):
        import ctypes

        # However the parent ends (kill -9 included), the kernel kills this worker too.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent ended before the line above took effect
        os._exit(0)


def worker_init_function():
    """The ``worker_init_fn`` of every DataLoader with workers: a worker never outlives its parent.

    Workers ignore SIGINT (the parent prints the one line), die with SIGTERM without a
    traceback (after the parent when the whole group received it), and on Linux receive
    SIGKILL when the parent ends, even by ``kill -9``.
    """
    return functools.partial(_end_with_parent, parent_pid=os.getpid())


def check_num_workers(num_workers):
    """``num_workers`` as an int from 0 to :data:`MAX_WORKERS`, else ConfigError."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or not 0 <= num_workers <= MAX_WORKERS:
        raise ConfigError(f"num_workers must be an integer from 0 to {MAX_WORKERS}, got {num_workers!r}")
    return num_workers


def epoch_seed(seed, epoch, stream=0):
    """A 31-bit seed derived from (``seed``, ``epoch``, ``stream``): independent per epoch and use."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1)[0] & 0x7FFFFFFF)


def _batch_sampler_base():
    import paddle

    return paddle.io.BatchSampler


class EpochBatchSampler(_batch_sampler_base()):
    """Batches of indices whose order depends only on (seed, epoch): resumable and shardable.

    Args:
        size: number of samples.
        batch_size: samples per batch (per process when distributed).
        seed: the run's seed.
        shuffle: shuffle every epoch (training) or keep the order (validation).
        rank, world_size: this process's shard of every epoch (``indices[rank::world]``,
            the order padded by wrapping so that every process gets as many batches).
        drop_last: drop a last partial batch (the course keeps it: SPEC 1.3).
    """

    def __init__(self, size, batch_size, seed=0, shuffle=True, rank=0, world_size=1, drop_last=False):
        self.size, self.batch_size, self.seed = int(size), int(batch_size), int(seed)
        self.shuffle, self.rank, self.world_size, self.drop_last = shuffle, int(rank), int(world_size), drop_last
        self.epoch = 0

    def set_epoch(self, epoch):
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def indices(self):
        """This process's sample indices for the current epoch, in order."""
        order = np.arange(self.size)
        if self.shuffle:
            order = np.random.default_rng(epoch_seed(self.seed, self.epoch, 1)).permutation(self.size)
        if self.world_size > 1:
            per_rank = math.ceil(self.size / self.world_size)
            order = np.resize(order, per_rank * self.world_size)[self.rank::self.world_size]
        return order.tolist()

    def __iter__(self):
        order = self.indices()
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self):
        n = math.ceil(self.size / self.world_size) if self.world_size > 1 else self.size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


class MainThreadLoader:
    """Batches read in the calling thread: what ``--num-workers 0`` uses.

    ``paddle.io.DataLoader`` reads even without workers in a background thread, where an
    exception (an unreadable image) is printed as a traceback while the training loop
    waits forever.  Here the dataset's own error (an ``ImageError`` naming the file)
    reaches the caller.  Batches equal the DataLoader's: ``(float32 [N, ...], int64 [N])``.
    """

    def __init__(self, dataset, batch_sampler):
        self.dataset = dataset
        self.batch_sampler = batch_sampler

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        import paddle

        for indices in self.batch_sampler:
            items = [self.dataset[i] for i in indices]
            images = np.stack([np.asarray(item[0]) for item in items])
            labels = np.stack([np.asarray(item[1]) for item in items])
            yield paddle.to_tensor(images), paddle.to_tensor(labels)


@contextlib.contextmanager
def recording_worker_errors():
    """Record, instead of printing, what DataLoader reader threads raise while the block runs.

    Paddle's DataLoader re-raises a worker's exception in its reader thread, where
    Python would print it as a traceback (``threading.excepthook``), and the training
    loop then only sees "Blocking queue is killed".  Inside the block such exceptions
    (and our own errors) are kept for :func:`iterate_batches`, which re-raises them;
    the previous hook is back when the block ends, however it ends.

    Yields:
        list: the exceptions recorded so far (give it to :func:`iterate_batches`).
    """
    failures = []
    previous_hook = threading.excepthook

    def record(args):
        if "DataLoader worker" in str(args.exc_value) or isinstance(args.exc_value, PalmError):
            failures.append(args.exc_value)
            return
        previous_hook(args)

    threading.excepthook = record
    try:
        yield failures
    finally:
        threading.excepthook = previous_hook


def iterate_batches(loader, failures):
    """Iterate ``loader``, turning a failed DataLoader worker into our own one-line error.

    Args:
        loader: a ``paddle.io.DataLoader`` or :class:`MainThreadLoader`.
        failures: the list of an enclosing :func:`recording_worker_errors` block, where the
            reader thread's exception is found and re-raised as the error the worker hit
            (an ``ImageError`` naming the file, for example).

    Yields:
        the loader's batches.
    """
    iterator = iter(loader)
    while True:
        raise_if_stopped()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (SystemError, RuntimeError) as exc:
            if "Blocking queue is killed" not in str(exc) and "DataLoader" not in str(exc):
                raise
            deadline = time.monotonic() + 2.0
            while not failures and time.monotonic() < deadline:
                time.sleep(0.05)
            if failures:
                raise _worker_error(failures[0]) from None
            raise DataError("a data-loading worker failed reading an image; "
                            "run with --num-workers 0 to see which file") from None
        yield batch


def _worker_error(exc):
    """Our error from a worker's re-raised exception: its type and the last line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = lines[-1] if lines else type(exc).__name__
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    elif message.startswith(type(exc).__name__ + ": "):
        message = message[len(type(exc).__name__) + 2:]
    if isinstance(exc, PalmError):
        return type(exc)(message)
    return DataError(f"a data-loading worker failed: {message}")


def augmentation(augment):
    """The ``augment`` setting as :class:`~paddle_palm.data.PalmDataset` takes it.

    ``"none"`` -> False; ``"flip"`` -> True (seed 004's random horizontal and vertical
    flips, SPEC 1.4); a mapping (from a YAML file) -> the fields of
    :class:`paddle_palm.data.transforms.Augmentation` (``hflip``, ``vflip``,
    ``max_rotation``, ``scale``, ``brightness``, ``contrast``, ``saturation``, ``hue``).
    """
    if isinstance(augment, dict):
        return dict(augment)
    return augment == "flip"


def build_datasets(config, run_dir, log):
    """The training and validation datasets a configuration asks for.

    Without ``data_dir`` the small synthetic fundus-like data set is generated
    (idempotently) in ``<run_dir>/synthetic-data`` and used; the log says so.

    Returns:
        (train_set, valid_set, data_dir)
    """
    if config["dataset"] != "palm":
        return build_seed_datasets(config, log)
    from paddle_palm.data import PalmDataset

    data_dir = config.get("data_dir")
    if not data_dir:
        from paddle_palm.data.synthetic import make_synthetic_palm

        target = os.path.join(run_dir, "synthetic-data")
        data_dir = os.fspath(make_synthetic_palm(target))
        log(f"no --data-dir given: training on the synthetic fundus-like data set generated in {data_dir} "
            "(pass --data-dir DIR for the real PALM data; see tools/prepare_data.py)")
    elif not os.path.isdir(data_dir):
        raise MissingFileError(f"data folder not found: {data_dir} (expected the folder written by tools/prepare_data.py)")
    common = dict(image_size=config["image_size"], preprocess=config["preprocess"], cache=config["cache"])
    train_set = PalmDataset(data_dir, "train", augment=augmentation(config["augment"]), seed=config["seed"], **common)
    valid_set = PalmDataset(data_dir, "valid", augment=False, labels_file=config.get("labels_file"), **common)
    if config["cache"]:
        train_set.warm_cache(progress=config["progress"])
        valid_set.warm_cache(progress=config["progress"])
    if len(train_set) == 0:
        raise DataError(f"no training images in {data_dir}")
    if len(valid_set) == 0:
        raise DataError(f"no validation images in {data_dir}")
    return train_set, valid_set, data_dir


def build_seed_datasets(config, log):
    """MNIST (seed 002) or CIFAR-10 (seed 003) from local files in their standard formats (SPEC 1.5).

    ``data_dir`` is the folder with the four MNIST idx files, or CIFAR-10's
    ``cifar-10-python.tar.gz`` / its extracted folder; their test split validates.
    """
    data_dir = config.get("data_dir")
    if not data_dir:
        raise ConfigError(f"--dataset {config['dataset']} needs --data-dir: the data set cannot be downloaded here; "
                          "point it at the files in their standard format")
    if not os.path.exists(data_dir):
        raise MissingFileError(f"data not found: {data_dir}")
    size = config["image_size"]
    if config["dataset"] == "mnist":
        from paddle_palm.data.mnist import MNIST

        train_set, valid_set = MNIST(data_dir, "train", image_size=size), MNIST(data_dir, "test", image_size=size)
    else:
        from paddle_palm.data.cifar import Cifar10

        train_set, valid_set = Cifar10(data_dir, "train", image_size=size), Cifar10(data_dir, "test", image_size=size)
    log(f"{config['dataset']}: {len(train_set)} training and {len(valid_set)} test images from {data_dir}")
    return train_set, valid_set, data_dir
