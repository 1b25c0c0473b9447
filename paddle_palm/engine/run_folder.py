"""The run folder of a training: its lock, its log, its CSV files and its clean-up.

* :class:`RunFolder` - the folder for the time of a run (a context manager): created,
  locked, logged, Paddle's noise filtered, and removed again when the run that made it
  fails before saving anything;
* :class:`OutputLock` - ``train.lock``, so that two trainings never write into one folder;
* :class:`RunLog` - every message on the console and in ``train.log``;
* :func:`read_csv` / :func:`write_csv` - ``history.csv`` and ``loss.csv``, written atomically
  (what goes in them: :mod:`paddle_palm.engine.recorder`);
* :func:`remove_partial_writes` - the files a killed training left half-written;
* :func:`default_output_dir` - ``runs/<arch>-<date>-<time>``.
"""

import csv
import os
import shutil
import socket
import sys
import time
import warnings

from paddle_palm.engine.checkpoint import checkpoint_exists
from paddle_palm.errors import ConfigError, TrainingError
from paddle_palm.fileio import atomic_path

LOCK_NAME = "train.lock"


class OutputLock:
    """An exclusive claim on a run folder, so two trainings never write into the same one.

    The lock is a file ``train.lock`` holding ``pid host``, created with ``O_EXCL``.
    A lock left by a process that no longer exists (a crash, SIGKILL) on this host
    is taken over; a live one makes :meth:`acquire` raise :class:`TrainingError`.
    """

    def __init__(self, run_dir):
        self.path = os.path.join(os.fspath(run_dir), LOCK_NAME)
        self.held = False

    @staticmethod
    def _alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self):
        """Take the lock (or a stale one); raise TrainingError if a live training holds it."""
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        parts = fh.read().split()
                except FileNotFoundError:
                    continue
                pid = int(parts[0]) if parts and parts[0].isdigit() else None
                host = parts[1] if len(parts) > 1 else socket.gethostname()
                if pid is not None and pid != os.getpid() and (host != socket.gethostname() or self._alive(pid)):
                    raise TrainingError(
                        f"output folder {os.path.dirname(self.path)} is in use by another training "
                        f"(pid {pid} on {host}, lock file {self.path}); choose another --output-dir "
                        "or wait for it to finish"
                    ) from None
                # Stale: its owner is gone.  Remove and retry the exclusive create.
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(me)
            self.held = True
            return self
        raise TrainingError(f"could not take the lock {self.path}")

    def release(self):
        """Remove the lock file if this process holds it."""
        if self.held:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


class RunLog:
    """Messages to the console (through tqdm, so progress bars stay intact) and to ``train.log``."""

    def __init__(self, path=None, echo=True):
        self.path = path
        self.echo = echo
        self._fh = open(path, "a", encoding="utf-8", buffering=1) if path else None

    def __call__(self, message):
        if self.echo:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
        if self._fh:
            try:
                self._fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
            except OSError as exc:  # a full disk: write() names no file
                raise OSError(exc.errno, exc.strerror, self.path) from None

    def close(self):
        if self._fh:
            self._fh.close()
            self._fh = None


def read_csv(path):
    """The rows of a CSV file as dicts ([] when the file does not exist)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_csv(path, fields, rows):
    """Write ``rows`` (dicts) under the header ``fields``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def default_output_dir(arch):
    """``runs/<arch>-<YYYYmmdd-HHMMSS>`` (relative to the working folder)."""
    return os.path.join("runs", f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}")


def remove_partial_writes(run_dir):
    """Delete the half-written files that a killed training left behind (called under the folder's lock).

    :func:`paddle_palm.fileio.atomic_path` writes ``.<name>.<random>.tmp`` beside each output;
    a SIGKILL during a write leaves one.  Pending checkpoint files are handled by
    :func:`paddle_palm.engine.checkpoint.recover_checkpoint`.
    """
    for name in os.listdir(run_dir):
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.remove(os.path.join(run_dir, name))
            except OSError:
                pass


class RunFolder:
    """A training's output folder for the time of the run (a context manager).

    On entry the writing process (rank 0) creates the folder, checks that it can write
    there and takes its lock (:class:`OutputLock`); every process opens the log
    (:class:`RunLog`: ``train.log`` and the console for the writer, nothing for the
    others) and ignores the warnings ``quiet`` names.  On exit, in this order: a failed
    run notes ``stopped: <why>`` in ``train.log`` (not on the console, where the error
    is shown anyway), the log closes, the lock is released, the warning filters are
    restored, and a folder that this run created is removed again when the run failed
    before saving a checkpoint (so a mistyped option leaves no trace).

    Args:
        path: the folder.
        writer: whether this process writes files (rank 0 of a data-parallel run).
        echo: print the log on the console too.
        quiet: messages (regular expressions) of warnings to ignore during the run.

    Raises:
        ConfigError: the folder cannot be created or written to.
        TrainingError: another training holds its lock.
    """

    def __init__(self, path, writer=True, echo=True, quiet=()):
        self.path = os.fspath(path)
        self.writer = bool(writer)
        self.echo = echo
        self.quiet = tuple(quiet)
        self.created = False
        self.lock = None
        self.log = None
        self._warnings = None

    def __enter__(self):
        if self.writer:
            self._create()
            self.lock = OutputLock(self.path)
            try:
                self.lock.acquire()
            except BaseException:
                self._remove_if_created()
                raise
        self.log = RunLog(os.path.join(self.path, "train.log") if self.writer else None,
                          echo=self.echo and self.writer)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        for message in self.quiet:
            warnings.filterwarnings("ignore", message=message)
        return self

    def __exit__(self, exc_type, exc, tb):
        nothing_saved = not checkpoint_exists(self.path, "latest")
        if exc is not None and self.writer and not (self.created and nothing_saved):
            self.log.echo = False
            self.log(f"stopped: {' '.join(str(exc).split()) or type(exc).__name__}")
        self.log.close()
        if self.lock:
            self.lock.release()
        self._warnings.__exit__(None, None, None)
        if exc is not None and nothing_saved:
            # This run made the folder and wrote nothing worth keeping: leave no trace.
            self._remove_if_created()

    def remove_partial_writes(self):
        """Delete what a killed training left half-written (:func:`remove_partial_writes`)."""
        remove_partial_writes(self.path)

    def _create(self):
        self.created = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder {self.path}: {exc.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"output folder {self.path} is not writable")

    def _remove_if_created(self):
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
