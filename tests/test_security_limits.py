"""Resource flags have bounds, a full disk names the file, CSV cells never run as spreadsheet formulas."""

import csv
import os
import subprocess
import sys
import uuid

import pytest

from paddle_palm import cli
from paddle_palm.engine.reports import write_predictions_csv
from paddle_palm.errors import ConfigError
from paddle_palm.fileio import spreadsheet_safe, write_text_atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("tool, args, flag", [
    ("train.py", ["--arch", "squeezenet1_1", "--threads", "100000"], "--threads"),
    ("predict.py", ["--inference-model", "x", "y.jpg", "--threads", "100000"], "--threads"),
    ("train.py", ["--arch", "squeezenet1_1", "--num-workers", "5000"], "--num-workers"),
    ("eval.py", ["--weights", "w", "--data-dir", "d", "--batch-size", "1000000000"], "--batch-size"),
    ("train.py", ["--arch", "squeezenet1_1", "--image-size", "100000"], "--image-size"),
    ("predict.py", ["--weights", "w", "y.jpg", "--grid", "g.png", "--grid-max", "99999999"], "--grid-max"),
])
def test_resource_flags_out_of_bounds_are_one_line(tmp_path, tool, args, flag):
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *args], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and flag in lines[0] and "expected a value <=" in lines[0], lines
    assert os.listdir(tmp_path) == []  # no lock, no run folder


def test_threads_from_a_config_file_are_bounded_too():
    from paddle_palm.runtime import MAX_THREADS, setup_runtime

    with pytest.raises(ConfigError, match=f"1 to {MAX_THREADS}"):
        setup_runtime(device="cpu", fast=False, threads=100000)


def test_num_workers_from_a_config_file_are_bounded_too():
    from paddle_palm.engine.loaders import MAX_WORKERS, check_num_workers

    assert check_num_workers(2) == 2
    with pytest.raises(ConfigError, match=str(MAX_WORKERS)):
        check_num_workers(MAX_WORKERS + 1)


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://x\",\"y\").jpg", "+1.jpg", "-2.jpg", "@SUM(A1).jpg",
                                  "\tx.jpg", "\rx.jpg"])
def test_csv_cells_never_start_a_formula(tmp_path, name):
    record = {"file": name, "pm_probability": 0.25, "label": 0, "class_name": "=cmd|' /C calc'!A0"}
    path = write_predictions_csv([record], tmp_path / "p.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][0] == "'" + name and rows[1][3].startswith("'=")
    assert rows[1][1] == "0.250000"


def test_ordinary_cells_are_unchanged():
    assert spreadsheet_safe("photos/P0001.jpg") == "photos/P0001.jpg"
    assert spreadsheet_safe("病理性近视") == "病理性近视"


# --------------------------------------------------------------------------- a full disk


def _write_big(path):
    def main(argv):
        write_text_atomic(path, "x" * 200_000)

    return main


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KB tmpfs (needs the right to mount; skipped otherwise)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_no_space_left_names_the_file(full_disk, capsys):
    target = full_disk / "metrics.json"
    with pytest.raises(SystemExit) as info:
        cli.run(_write_big(target), [])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and err == [f"error: No space left on device: {target}"], err
    assert os.listdir(full_disk) == []  # the temporary file is gone


def test_a_file_size_limit_names_the_file_too(tmp_path):
    """The same path without mounting anything: RLIMIT_FSIZE makes write() fail without a file name."""
    target = tmp_path / f"{uuid.uuid4().hex}.json"
    code = (f"import resource, signal, sys; sys.path.insert(0, {REPO!r}); "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (10000, 10000)); "
            "from paddle_palm import cli; from paddle_palm.fileio import write_text_atomic; "
            f"cli.run(lambda argv: write_text_atomic({str(target)!r}, 'x' * 200000), [])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.strip() == f"error: File too large: {target}", result.stderr
    assert os.listdir(tmp_path) == []
