"""Ctrl-C, SIGTERM and kill -9 during training with worker processes: one line, right exit code, no orphans.

A terminal sends Ctrl-C to the whole process group, so the trials signal the
group (``os.killpg``), at a random moment after the DataLoader workers have
started: the race windows (a worker starting, a batch in flight, a checkpoint
being written) are hit differently each time.  Every trial must end within
seconds with exactly one line on stderr, exit code 130 (SIGINT) or 143
(SIGTERM), no process of the group left, and a last checkpoint that verifies.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.engine import checkpoint as ckpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_palm(tmp_path_factory.mktemp("sig") / "data", n_train=16, n_valid=8, image_size=40, seed=4)


def children(pid):
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True

def signal_and_reap(proc, signum, survivor_message):
    """Send ``signum`` to ``proc``'s process group (unless it has ended), wait for it (never a hang)
    and assert that no process of the group outlives it; return its stderr."""
    if proc.poll() is None:
        os.killpg(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 5
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(proc.pid), survivor_message
    return err


def start_training(data, out, epochs=200):
    args = [sys.executable, os.path.join(REPO, "tools", "train.py"), "--arch", "squeezenet1_1", "--data-dir", str(data),
            "--epochs", str(epochs), "--image-size", "32", "--batch-size", "4", "--num-workers", "2", "--no-progress",
            "--seed", "0", "--output-dir", str(out)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=str(out.parent))


def wait_for_workers(proc, count=2, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(proc.pid)
        if len(kids) >= count:
            return kids
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    with open(f"/proc/{proc.pid}/status") as fh:
        state = [line.strip() for line in fh if line.startswith(("State", "Threads"))]
    raise AssertionError(f"the DataLoader workers did not start: {state}, children {children(proc.pid)}, "
                         f"folder {sorted(os.listdir(proc.args[-1])) if os.path.isdir(proc.args[-1]) else None}")


def one_trial(data, out, signum, rng):
    proc = start_training(data, out)
    try:
        wait_for_workers(proc)
        time.sleep(rng.uniform(0.0, 1.5))
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    err = signal_and_reap(proc, signum, "a worker outlived the training")
    expected = {signal.SIGINT: ("error: interrupted", 130), signal.SIGTERM: ("error: terminated", 143)}[signum]
    assert err.strip().splitlines() == [expected[0]] and proc.returncode == expected[1], (proc.returncode, err)
    if ckpt.checkpoint_exists(out, "latest"):
        ckpt.verify_checkpoint(out, "latest")
        ckpt.load_state_file(out / "latest.pdparams")
    assert not (out / "train.lock").exists()


def _trials(data, tmp_path, count):
    rng = random.Random(13)
    for i in range(count):
        one_trial(data, tmp_path / f"run{i}", (signal.SIGINT, signal.SIGTERM)[i % 2], rng)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_signals_to_the_process_group_with_workers(data, tmp_path):
    """6 trials, SIGINT and SIGTERM alternating (about 30 s on 2 idle cores; the slow variant runs 40)."""
    _trials(data, tmp_path, 6)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_signals_to_the_process_group_with_workers_many_times(data, tmp_path):
    _trials(data, tmp_path, 40)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_workers_end_when_the_training_is_killed(data, tmp_path):
    for i in range(2):
        proc = start_training(data, tmp_path / f"run{i}")
        workers = wait_for_workers(proc)
        time.sleep(0.3 * i)
        proc.kill()  # SIGKILL to the training process only: nothing of it runs any more
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [w for w in workers if _alive(w)]
        for w in left:
            os.kill(w, signal.SIGKILL)
        assert not left, f"workers {left} outlived the killed training"


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- every tool


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sigrun") / "run"
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--arch", "squeezenet1_1",
                             "--data-dir", str(data), "--epochs", "1", "--image-size", "32", "--batch-size", "4",
                             "--no-progress", "--output-dir", str(out)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return out / "best_model.pdparams"


def _tool_args(tool, data, weights, out):
    return {
        "predict": ["--weights", weights, data / "PALM-Validation400", "--csv", out / "p.csv"],
        "eval": ["--weights", weights, "--data-dir", data, "--num-workers", "2", "--output-dir", out / "ev"],
        "export": ["--weights", weights, "--output", out / "exported"],
        "summary": ["--arch", "resnet50"],
        "prepare_data": ["--archives", os.path.join(os.environ.get("PALM_SHARED_DIR", os.path.join(REPO, "..", "shared")),
                                                    "palm-mini-zips"), "--out", out / "palm"],
    }[tool]


@pytest.mark.parametrize("tool, signum, delay", [
    ("eval", signal.SIGINT, 3.0), ("predict", signal.SIGTERM, 1.0), ("prepare_data", signal.SIGINT, 0.3),
    pytest.param("export", signal.SIGTERM, 2.5, marks=pytest.mark.slow),
    pytest.param("summary", signal.SIGINT, 1.5, marks=pytest.mark.slow),
    pytest.param("eval", signal.SIGTERM, 1.0, marks=pytest.mark.slow),
    pytest.param("predict", signal.SIGINT, 3.5, marks=pytest.mark.slow),
    pytest.param("export", signal.SIGINT, 0.5, marks=pytest.mark.slow),
])
def test_every_tool_ends_on_a_signal_with_one_line(data, trained, tmp_path, tool, signum, delay, request):
    """Signalled while importing, loading or working: one line and 128 + signal, or a normal finish."""
    if tool == "prepare_data":
        request.getfixturevalue("shared_zips")  # the PALM archives, or skip
    args = [sys.executable, os.path.join(REPO, "tools", tool + ".py"), *map(str, _tool_args(tool, data, trained, tmp_path))]
    # Bytes, decoded below: text mode would turn the carriage returns of progress bars into newlines.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(delay)
    err = signal_and_reap(proc, signum, "a process of the tool outlived it").decode("utf-8", "replace")
    if proc.returncode == 0:  # it finished before the signal
        assert "Traceback" not in err
        return
    message = {signal.SIGINT: "error: interrupted", signal.SIGTERM: "error: terminated"}[signum]
    # The tool's own notes printed before the signal (e.g. that no CJK font is installed) are its output, not the
    # signal's: the signal adds exactly one line.
    lines = [line for line in terminal_lines(err) if not line.startswith("note: ")]
    assert (proc.returncode, lines) == (128 + signum, [message]), err


_BAR_ON_SCREEN = """
import sys, time
sys.path.insert(0, {repo!r})
from paddle_palm import cli
from paddle_palm.progress import progress_bar

def main(argv):
    with progress_bar(total=24, desc="extracting x.zip", unit="file", leave={leave}) as bar:
        bar.update(1)
        print("ready", flush=True)
        time.sleep(30)
    return 0

cli.start(main)
"""


@pytest.mark.parametrize("leave", [True, False])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_under_a_progress_bar_leaves_only_its_line(tmp_path, signum, leave):
    """The bar is drawn on stderr without a newline: the signal's line replaces it, it is not appended to it."""
    script = tmp_path / "tool.py"
    script.write_text(_BAR_ON_SCREEN.format(repo=REPO, leave=leave))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == b"ready"
    err = signal_and_reap(proc, signum, "the tool outlived it").decode("utf-8", "replace")
    assert "extracting x.zip" in err  # the bar was drawn
    message = {signal.SIGINT: "error: interrupted", signal.SIGTERM: "error: terminated"}[signum]
    assert (proc.returncode, terminal_lines(err)) == (128 + signum, [message]), err


_SLOW_TEARDOWN = """
import sys, time
sys.path.insert(0, {repo!r})
from paddle_palm import cli

class SlowTeardown:
    def __del__(self):  # runs in Python's module clean-up, after it restored the default signal actions
        time.sleep(3)

keep = SlowTeardown()

def main(argv):
    print("done", flush=True)
    return 0

cli.start(main)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_finished_tool_exits_is_one_line_or_nothing(tmp_path, signum):
    """Python's shutdown resets SIGINT/SIGTERM before tearing the modules down: a tool must not be
    killed by the default action (no line, exit -signal) while it exits."""
    script = tmp_path / "tool.py"
    script.write_text(_SLOW_TEARDOWN.format(repo=REPO))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == b"done"
    time.sleep(0.5)  # the work is done: the process is exiting
    err = signal_and_reap(proc, signum, "the tool outlived it").decode("utf-8", "replace")
    message = {signal.SIGINT: "error: interrupted", signal.SIGTERM: "error: terminated"}[signum]
    assert (proc.returncode, terminal_lines(err)) in ((0, []), (128 + signum, [message])), err


_LONE_WORKER = """
import os, signal, sys, time
sys.path.insert(0, {repo!r})
import paddle
from paddle_palm.engine import loaders

loaders.WORKER_TERM_GRACE_SECONDS = 1.0  # read by the forked worker


class Pids(paddle.io.Dataset):
    def __len__(self):
        return 10000

    def __getitem__(self, index):
        time.sleep(0.01)
        return [os.getpid()]


loader = paddle.io.DataLoader(Pids(), batch_size=1, num_workers=1, worker_init_fn=loaders.worker_init_function(),
                              timeout=20)
batches = iter(loader)
worker = int(next(batches)[0].numpy().ravel()[0])
signal.signal(signal.SIGCHLD, lambda *_: None)  # Paddle's handler would raise when the worker ends: expected here
os.kill(worker, signal.SIGTERM)
served = {{int(next(batches)[0].numpy().ravel()[0]) for _ in range(20)}}
print("served after SIGTERM by", "the worker" if served == {{worker}} else served, flush=True)
time.sleep(3.0)
try:
    with open(f"/proc/{{worker}}/stat") as stat:
        state = stat.read().rsplit(")", 1)[1].split()[0]
except OSError:
    state = "gone"
print("worker after the grace:", "ended" if state in ("gone", "Z") else state, flush=True)
os._exit(0)
"""


def test_a_worker_given_sigterm_alone_goes_on_serving_then_ends(tmp_path):
    """The tool's main thread may be waiting in Paddle for the worker's next batch when a group SIGTERM
    arrives: the worker keeps serving (so the tool reaches its own handler) and ends after its grace."""
    script = tmp_path / "lone_worker.py"
    script.write_text(_LONE_WORKER.format(repo=REPO))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert proc.stdout.splitlines() == ["served after SIGTERM by the worker", "worker after the grace: ended"], (
        proc.stdout + proc.stderr)


def terminal_lines(text):
    """The non-empty lines a terminal shows for ``text``: a carriage return overwrites from column 0,
    so a progress bar that clears itself (tqdm's ``leave=False``) leaves nothing."""
    shown_lines = []
    for line in text.split("\n"):
        shown = []
        for segment in line.split("\r"):
            shown[: len(segment)] = segment
        if "".join(shown).strip():
            shown_lines.append("".join(shown).rstrip())
    return shown_lines


# --------------------------------------------------------------------------- a swallowed interruption


def _signal_self():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs at the next step of this frame


def _run_and_count(main, capsys):
    from paddle_palm import cli

    with pytest.raises(SystemExit) as stop:
        cli.run(main, [])
    return stop.value.code, capsys.readouterr().err.strip().splitlines()


def test_an_interruption_a_library_swallows_is_raised_at_the_next_batch(capsys):
    """Paddle's DataLoader shutdown has bare ``except:`` clauses: the Stopped must come back."""
    from paddle_palm import cli

    steps = []

    def main(argv):
        try:
            _signal_self()
        except BaseException:  # noqa: B036  what the library does
            pass
        for step in range(5):
            cli.raise_if_stopped()
            steps.append(step)
        return 0

    assert _run_and_count(main, capsys) == (130, ["error: interrupted"])
    assert steps == []


def test_an_interruption_inside_del_is_raised_again(capsys):
    """Python drops exceptions raised in ``__del__`` (and in at-fork handlers such as logging's)."""
    steps = []

    class Finalised:
        def __del__(self):
            _signal_self()

    def main(argv):
        Finalised()  # collected at once: the Stopped is raised inside __del__
        for step in range(100):
            time.sleep(0.01)
            steps.append(step)
        return 0

    assert _run_and_count(main, capsys) == (130, ["error: interrupted"])
    assert len(steps) < 5
