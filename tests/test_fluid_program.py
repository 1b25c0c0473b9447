"""A course-style 1.8 program runs unchanged under legacy_fluid and prints what PaddlePaddle 1.8.5 printed.

``tests/fluid_programs/course_palm_cnn.py`` (readers, guard, Momentum + PolynomialDecay +
L2Decay, validation with ``accuracy``, ``save_dygraph``/``load_dygraph``, resumed training)
was run on a real 1.8.5; its output is ``tests/golden/fluid/course_program.txt``.  Here
it runs with ``python -m legacy_fluid`` and every printed line must match: the text
exactly once numbers are masked, learning rates to float32 precision (rtol 1e-7),
accuracies exactly, losses to rtol 1e-4 (float32 kernels of two Paddle generations
after 16 training steps; the measured difference is about 1e-6).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "tests" / "fluid_programs" / "course_palm_cnn.py"
GOLDEN = ROOT / "tests" / "golden" / "fluid" / "course_program.txt"
NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?|-?\d+")


def run_program(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "legacy_fluid", str(PROGRAM)], cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def numbers(line):
    return [float(x) for x in NUMBER.findall(line)]


def test_course_program_prints_what_paddle_1_8_5_printed(tmp_path):
    ours = run_program(tmp_path).splitlines()
    reference = GOLDEN.read_text().splitlines()
    assert len(ours) == len(reference)
    assert sum("loss is" in line for line in reference) == 12
    for got, want in zip(ours, reference):
        assert NUMBER.sub("#", got) == NUMBER.sub("#", want), (got, want)
        a, b = numbers(got), numbers(want)
        if "loss is" in want:
            epoch, batch, loss, lr = a
            assert (epoch, batch) == tuple(b[:2])
            assert loss == pytest.approx(b[2], rel=1e-4), want
            assert lr == pytest.approx(b[3], rel=1e-7), want
        elif "accuracy/loss" in want:
            assert a[0] == b[0], want  # accuracy
            assert a[1] == pytest.approx(b[1], rel=1e-4), want
        else:
            assert a == b
    # the program saved and reloaded its checkpoint
    assert (tmp_path / "palm_course_data" / "checkpoints" / "palm.pdparams").is_file()
    assert (tmp_path / "palm_course_data" / "checkpoints" / "palm.pdopt").is_file()


def test_golden_program_output_is_from_a_training_run():
    text = GOLDEN.read_text()
    assert text.startswith("start training ... \n")
    assert "saved: ['palm.pdopt', 'palm.pdparams']" in text and "[reloaded] accuracy/loss:" in text
