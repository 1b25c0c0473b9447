"""Crash safety of ``tools/train.py``: SIGKILL at the worst moments, then ``--resume`` (issue 7, point 2).

Users train for hours on machines that get interrupted.  The promises tested here:

* a training killed with SIGKILL (no chance to clean up) in the middle of an
  epoch, or while it is writing its checkpoint, leaves on disk only complete
  files: every visible ``.pdparams`` / ``.pdopt`` loads and every ``.pdstates`` is
  valid JSON at every moment of the run (a watcher thread reads each new version
  of each file as it appears);
* ``--resume`` continues it, and the final weights equal, bit for bit, those of
  an uninterrupted run with the same ``--seed`` (SPEC 5, issue 5);
* a checkpoint damaged later (a flipped byte, a truncated file, a garbled state
  file) is detected by the digests in ``.pdstates`` with a one-line message, and
  the run folder is left as it was.

The chain tested: run A is killed in the middle of epoch 2 (seen on its progress
bar); ``--resume`` B is killed while it writes a checkpoint (seen as a hidden
temporary or pending file in the run folder); ``--resume`` C trains to the end.
A reference run R with the same seed runs uninterrupted, alongside A.

The network is se_resnet18 at 32 px on 24 synthetic images (6 batches an epoch):
small enough to take seconds, big enough to learn, so that a resume that got the
data order, the flips, the optimizer state or the learning rate wrong would end
with other weights.
"""

import concurrent.futures
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EPOCHS = 3
TRAIN = ["--arch", "se_resnet18", "--image-size", "32", "--batch-size", "4", "--seed", "7", "--num-workers", "0",
         "--no-visualdl", "--lr", "0.01"]
CHECKPOINT_SUFFIXES = (".pdparams", ".pdopt", ".pdstates", ".pdema")
PROGRESS = re.compile(r"epoch (\d+)/(\d+):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def env():
    e = dict(os.environ)
    # TQDM_*: every iteration is drawn on the progress bar (tqdm reads its defaults from the
    # environment), so that the moment to kill is seen however fast the machine is.
    e.update(PYTHONWARNINGS="ignore", MPLBACKEND="Agg", TQDM_MININTERVAL="0", TQDM_MINITERS="1")
    return e


class Watcher(threading.Thread):
    """Reads every new version of every visible checkpoint file in a run folder and checks it is complete.

    A version is ``(inode, size, mtime)``; a file replaced by an atomic rename is a new
    inode, so each version is read whole exactly once.  Temporary and pending files
    (names starting with a dot) are not checked: they are invisible to the loaders.
    ``on_hidden`` is called once when such a file first appears (the moment a checkpoint
    is being written).
    """

    def __init__(self, folder, on_hidden=None, interval=0.005):
        super().__init__(daemon=True)
        self.folder, self.on_hidden, self.interval = Path(folder), on_hidden, interval
        self.seen = {}  # name -> set of versions
        self.versions = 0
        self.problems = []
        self.hidden_seen = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.scan()
            time.sleep(self.interval)
        self.scan()

    def scan(self):
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith("."):
                if (name.endswith((".pending", ".tmp")) and any(s in name for s in CHECKPOINT_SUFFIXES)
                        and not self.hidden_seen):
                    self.hidden_seen.append(name)
                    if self.on_hidden:
                        self.on_hidden(name)
                continue
            if not name.endswith(CHECKPOINT_SUFFIXES):
                continue
            path = self.folder / name
            try:
                with open(path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    version = (st.st_ino, st.st_size, st.st_mtime_ns)
                    if version in self.seen.setdefault(name, set()):
                        continue
                    data = fh.read()
            except FileNotFoundError:  # replaced between listdir and open: the next scan sees the new one
                continue
            self.seen[name].add(version)
            self.versions += 1
            problem = check_checkpoint_bytes(name, data)
            if problem:
                self.problems.append(f"{name} (version {len(self.seen[name])}, {len(data)} bytes): {problem}")


def check_checkpoint_bytes(name, data):
    """None if ``data`` is a complete file of its kind, else what is wrong."""
    if not data:
        return "empty"
    if name.endswith(".pdstates"):
        try:
            states = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            return f"not complete JSON ({exc})"
        if not isinstance(states, dict) or "files" not in states:
            return "no 'files' digests"
        return None
    import paddle

    try:
        obj = paddle.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any failure means a half-written file
        return f"does not load ({type(exc).__name__})"
    return None if isinstance(obj, dict) else f"not a state dict ({type(obj).__name__})"


def start(args, stderr=subprocess.PIPE):
    return subprocess.Popen([PY, "tools/train.py", *map(str, args)], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=stderr)


def drain(stream, sink, on_chunk=None):
    """Read a pipe to the end in a thread, collecting its bytes (and reporting progress lines)."""
    def loop():
        buf = b""
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            sink.append(chunk)
            buf = (buf + chunk)[-4096:]
            if on_chunk:
                on_chunk(buf.decode("utf-8", errors="replace"))
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def run_until_killed(args, run_dir, should_kill, timeout=300):
    """Start a training, SIGKILL it when ``should_kill(progress_text, watcher)`` says so.

    Returns ``(watcher, stderr_text, killed_at)``; fails if the run ended on its own.
    """
    proc = start(args)
    killed = []

    def kill(reason):
        if not killed:
            killed.append(reason)
            proc.send_signal(signal.SIGKILL)

    watcher = Watcher(run_dir, on_hidden=lambda name: should_kill("hidden:" + name) and kill(f"while writing {name}"),
                      interval=0.002)
    watcher.start()
    err, out = [], []

    def on_progress(text):
        for match in PROGRESS.finditer(text.replace("\r", "\n")):
            reason = should_kill(match.groups())
            if reason:
                kill(reason if isinstance(reason, str) else f"progress {match.group(0)}")

    threads = [drain(proc.stderr, err, on_progress), drain(proc.stdout, out)]
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watcher.stop.set()
        watcher.join()
        for t in threads:
            t.join(timeout=10)
    text = b"".join(err).decode("utf-8", errors="replace")
    assert killed, f"the training ended (exit {proc.returncode}) before it could be killed:\n{text[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    return watcher, text, killed[0]


def run_to_end(args, run_dir, timeout=300):
    proc = start(args)
    watcher = Watcher(run_dir)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watcher.stop.set()
        watcher.join()
    assert proc.returncode == 0, f"training failed (exit {proc.returncode}):\n{err.decode(errors='replace')[-3000:]}"
    return watcher


def load_params(path):
    import paddle

    return {k: np.array(v.numpy() if hasattr(v, "numpy") else v) for k, v in paddle.load(str(path)).items()}


def assert_same_weights(a, b, what):
    pa, pb = load_params(a), load_params(b)
    assert sorted(pa) == sorted(pb), f"{what}: other parameter names"
    different = [k for k in pa if pa[k].shape != pb[k].shape or not np.array_equal(pa[k], pb[k])]
    assert not different, (f"{what}: {len(different)} of {len(pa)} tensors differ, e.g. {different[0]} "
                           f"(max abs diff {np.abs(pa[different[0]] - pb[different[0]]).max():.3g})")


def states_epoch(run_dir):
    from paddle_palm.engine import checkpoint as ckpt

    return ckpt.read_states(run_dir, "latest")["epoch"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from paddle_palm.data.synthetic import make_synthetic_palm

    return Path(make_synthetic_palm(tmp_path_factory.mktemp("crash") / "data", n_train=24, n_valid=8,
                                    image_size=40, seed=0))


@pytest.fixture(scope="module")
def chain(data, tmp_path_factory):
    """Run R (uninterrupted) alongside A (killed mid-epoch), then B (killed while saving), then C."""
    base = tmp_path_factory.mktemp("runs")
    ref_dir, run_dir = base / "reference", base / "crashed"
    common = [*TRAIN, "--data-dir", data, "--epochs", EPOCHS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        reference = pool.submit(run_to_end, [*common, "--output-dir", ref_dir, "--no-progress"], ref_dir)

        # A: killed once epoch 2 has begun and made progress, before it ends.
        def mid_epoch_two(groups):
            if isinstance(groups, str):
                return False
            epoch, _, done, total = map(int, groups)
            return epoch == 2 and 1 <= done <= total - 3

        watch_a, text_a, why_a = run_until_killed([*common, "--output-dir", run_dir], run_dir, mid_epoch_two)
        after_a = {"epoch": states_epoch(run_dir), "files": sorted(os.listdir(run_dir))}

        # B: resumed, killed as soon as it starts writing a checkpoint (the end of epoch 2).
        def while_saving(what):
            return isinstance(what, str) and what.startswith("hidden:")

        watch_b, text_b, why_b = run_until_killed(["--resume", run_dir, "--progress"], run_dir, while_saving)
        after_b = {"epoch": states_epoch(run_dir), "files": sorted(os.listdir(run_dir))}

        # C: resumed to the end.
        watch_c = run_to_end(["--resume", run_dir, "--no-progress"], run_dir)
        watch_r = reference.result()
    return {
        "reference": ref_dir, "run": run_dir, "watchers": {"A": watch_a, "B": watch_b, "C": watch_c, "R": watch_r},
        "why": {"A": why_a, "B": why_b}, "after_a": after_a, "after_b": after_b,
    }


def test_killed_mid_epoch_left_the_last_finished_epoch(chain):
    """A died in epoch 2: its checkpoint is epoch 1's, complete."""
    assert chain["why"]["A"].startswith("progress epoch 2/"), chain["why"]["A"]
    assert chain["after_a"]["epoch"] == 1, chain["after_a"]


def test_killed_while_saving_is_recovered(chain):
    """B died while writing a checkpoint: the next loader finishes or discards the commit."""
    assert chain["why"]["B"].startswith("while writing"), chain["why"]["B"]
    assert chain["after_b"]["epoch"] in (1, 2), chain["after_b"]


def test_every_checkpoint_on_disk_was_complete_at_every_moment(chain):
    problems = {k: w.problems for k, w in chain["watchers"].items() if w.problems}
    assert not problems, f"half-written checkpoint files were visible: {problems}"
    # The watcher did see the files it was meant to check (several versions each).
    seen = {k: w.versions for k, w in chain["watchers"].items()}
    assert seen["R"] >= 2 * 3 and seen["C"] >= 3, seen


def test_resumed_run_equals_uninterrupted_run(chain):
    from paddle_palm.engine import checkpoint as ckpt

    run, ref = chain["run"], chain["reference"]
    assert ckpt.verify_checkpoint(run, "latest")["epoch"] == EPOCHS
    assert ckpt.verify_checkpoint(ref, "latest")["epoch"] == EPOCHS
    assert_same_weights(run / "latest.pdparams", ref / "latest.pdparams", "latest weights")
    assert_same_weights(run / "best_model.pdparams", ref / "best_model.pdparams", "best weights")
    # The weights did move during the resumed part: equal results are not equal by accident.
    import csv

    with open(run / "history.csv", newline="") as fh:
        rows_run = list(csv.DictReader(fh))
    with open(ref / "history.csv", newline="") as fh:
        rows_ref = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows_run] == [str(e) for e in range(1, EPOCHS + 1)]
    for key in ("train_loss", "val_loss", "val_acc", "val_auc", "lr"):
        assert [r[key] for r in rows_run] == [r[key] for r in rows_ref], key
    assert rows_run[0]["train_loss"] != rows_run[-1]["train_loss"]
    leftovers = [n for n in os.listdir(run) if n.startswith(".") or n.endswith(".lock")]
    assert not leftovers, f"temporary, pending or lock files left in the finished run: {leftovers}"


# --------------------------------------------------------------------------- damaged checkpoints


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble_states(path):
    path.write_text(path.read_text()[:40])


DAMAGE = {
    "flipped-byte-in-weights": ("latest.pdparams", _flip_byte, [r"latest\.pdparams", r"damaged|digest"]),
    "truncated-optimizer-state": ("latest.pdopt", _truncate, [r"latest\.pdopt", r"damaged|digest|truncated"]),
    "garbled-state-file": ("latest.pdstates", _garble_states, [r"latest\.pdstates", r"damaged|JSON"]),
}


def _snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _resume_damaged(reference, folder, kind):
    name, damage, _ = DAMAGE[kind]
    run = folder / kind
    shutil.copytree(reference, run)
    damage(run / name)
    before = _snapshot(run)
    proc = subprocess.run([PY, "tools/train.py", "--resume", str(run), "--epochs", str(EPOCHS + 1)], cwd=ROOT,
                          env=env(), capture_output=True, timeout=300)
    return proc, before, _snapshot(run)


@pytest.fixture(scope="module")
def damaged(chain, tmp_path_factory):
    """``--resume`` of a copy of the reference run with one file damaged, for each kind of damage (two at a time)."""
    folder = tmp_path_factory.mktemp("damaged")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {kind: pool.submit(_resume_damaged, chain["reference"], folder, kind) for kind in DAMAGE}
    return {kind: f.result() for kind, f in futures.items()}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_clearly(damaged, kind):
    _, _, patterns = DAMAGE[kind]
    proc, before, after = damaged[kind]
    err = proc.stderr.decode("utf-8", errors="replace")
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith(" ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for pattern in patterns:
        assert re.search(pattern, lines[0], re.IGNORECASE), (pattern, lines[0])
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k) and k != "train.log")
    assert not changed, f"the refused resume changed {changed}"
