"""Course programs of 2020 and their checkpoints, under legacy_fluid against a real PaddlePaddle 1.8.5.

* The MNIST-chapter programs in ``tests/fluid_programs/mnist_*.py`` (training with resume,
  optimizer comparison, prediction from a PNG read with PIL) run with
  ``python -m legacy_fluid`` and print what 1.8.5 printed (``tests/golden/fluid/mnist_*.txt``):
  the same text once numbers are masked, numbers within 1e-4 relative or one unit of their
  last printed digit.
* Checkpoints: the files 1.8.5 wrote (``tests/golden/fluid/checkpoints``, model and optimizer
  state with and without learning-rate decays) resume under legacy_fluid exactly as they
  resumed on 1.8.5 (``checkpoint_resume.txt``); files legacy_fluid writes have 1.8.5's keys,
  dtypes and shapes, name only globals numpy 1.x has, and resume the same way.
  ``.ci/fluid_golden.sh`` also resumes legacy_fluid's files on a real 1.8.5.
* The restricted unpickler refuses any other global with one line naming file and global.
"""

import os
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "fluid"
sys.path.insert(0, str(ROOT / "tools"))

import make_fluid_golden as mfg  # noqa: E402

import legacy_fluid  # noqa: E402
from legacy_fluid import _safepickle  # noqa: E402


@pytest.mark.parametrize("name", mfg.MNIST_PROGRAMS)
def test_mnist_program_prints_what_paddle_1_8_5_printed(name):
    got = mfg.run_mnist_program(name)
    want = (GOLDEN / (name + ".txt")).read_text()
    assert mfg.compare_printed(got, want) == []


def test_mnist_golden_outputs_are_training_runs():
    resume = (GOLDEN / "mnist_train_resume.txt").read_text()
    assert "resume from ./checkpoint/mnist_epoch1" in resume
    # resumed training repeats epoch 2 of the uninterrupted run line by line
    first, second = resume.split("resume from ./checkpoint/mnist_epoch1\n")
    epoch2 = [line for line in first.splitlines() if line.startswith("epoch: 2") or line.startswith("epoch 2")]
    assert len(epoch2) == 4 and all(line in second for line in epoch2)
    assert "loss is: [" in resume  # avg_loss.numpy() printed as 1.8's shape-[1] array
    optimizers = (GOLDEN / "mnist_optimizers.txt").read_text()
    for name in ("SGD", "Momentum", "Adagrad", "Adam"):
        assert "{} validation acc:".format(name) in optimizers
    predict = (GOLDEN / "mnist_predict.txt").read_text()
    assert "input shape: [1, 1, 28, 28]" in predict
    assert "the predicted digit is: 3" in predict


def test_compare_printed_tolerates_rounding_only():
    assert mfg.compare_printed("loss 0.2512 [1.5]\n", "loss 0.2513 [1.5]\n") == []
    assert mfg.compare_printed("loss 0.2500\n", "loss 0.2513\n") != []
    assert mfg.compare_printed("acc 0.5\n", "loss 0.5\n") != []
    assert mfg.compare_printed("a\n", "a\nb\n") != []


# --------------------------------------------------------------------------- checkpoints


def golden_checkpoint_files():
    return sorted(p.name for p in (GOLDEN / "checkpoints").iterdir())


def globals_named(path):
    names = set()
    for op, arg, _ in pickletools.genops(Path(path).read_bytes()):
        if op.name in ("GLOBAL", "INST"):
            names.add(arg.replace(" ", "."))
        assert op.name != "STACK_GLOBAL" or False, "protocol-2 files name globals with GLOBAL"
    return names


def test_files_written_by_1_8_5_resume_as_on_1_8_5():
    got = mfg.resume_checkpoints(GOLDEN / "checkpoints")
    want = (GOLDEN / "checkpoint_resume.txt").read_text()
    assert mfg.compare_printed(got, want, rtol=1e-5) == []
    assert len(want.splitlines()) == 12


def test_files_written_here_match_1_8_5_files_and_resume_alike(tmp_path):
    names = mfg.checkpoint_files(tmp_path)
    assert names == golden_checkpoint_files()
    assert "sgd.pdopt" not in names  # plain SGD has no state, as on 1.8.5
    numpy1_globals = set()
    for name in names:
        numpy1_globals |= globals_named(GOLDEN / "checkpoints" / name)
    for name in names:
        ours = globals_named(tmp_path / name)
        assert ours <= numpy1_globals, (name, ours - numpy1_globals)
        assert not any(g.startswith("numpy._core") for g in ours)
        with open(tmp_path / name, "rb") as fh:
            mine = _safepickle.load(fh, name)
        with open(GOLDEN / "checkpoints" / name, "rb") as fh:
            theirs = _safepickle.load(fh, name)
        assert list(mine) == list(theirs), name
        for key, value in theirs.items():
            if isinstance(value, np.ndarray):
                assert type(mine[key]) is np.ndarray
                assert (mine[key].dtype, mine[key].shape) == (value.dtype, value.shape), (name, key)
                np.testing.assert_allclose(mine[key], value, rtol=1e-4, atol=1e-6, err_msg=name + ":" + key)
            else:
                assert mine[key] == value, (name, key)
    got = mfg.resume_checkpoints(tmp_path)
    assert mfg.compare_printed(got, (GOLDEN / "checkpoint_resume.txt").read_text(), rtol=1e-5) == []


def test_file_written_by_paddle_save_loads(tmp_path):
    import paddle

    layer = paddle.nn.Linear(3, 2)
    paddle.save(layer.state_dict(), str(tmp_path / "modern.pdparams"))
    with legacy_fluid.installed() as fluid:
        params, opt = fluid.load_dygraph(str(tmp_path / "modern"))
    assert opt is None
    np.testing.assert_array_equal(params["weight"], layer.weight.numpy())


class _Exploit(object):
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch {}".format(self.marker),))


def test_load_dygraph_refuses_foreign_globals_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "evil.pdparams", "wb") as fh:
        pickle.dump({"weight": np.zeros(2), "x": _Exploit(marker)}, fh, protocol=2)
    with legacy_fluid.installed() as fluid:
        with pytest.raises(legacy_fluid.UnsafeCheckpointError) as info:
            fluid.load_dygraph(str(tmp_path / "evil"))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "evil.pdparams") in message and "system" in message
    assert not marker.exists()
    (tmp_path / "cut.pdparams").write_bytes(pickle.dumps({"w": np.zeros(3)}, protocol=2)[:40])
    with legacy_fluid.installed() as fluid:
        with pytest.raises(legacy_fluid.UnsafeCheckpointError, match=r"cut\.pdparams: not a readable checkpoint"):
            fluid.load_dygraph(str(tmp_path / "cut"))


def test_runner_prints_one_error_line_for_a_refused_checkpoint(tmp_path):
    with open(tmp_path / "evil.pdparams", "wb") as fh:
        pickle.dump({"x": _Exploit(tmp_path / "ran")}, fh, protocol=2)
    program = tmp_path / "prog.py"
    program.write_text("import paddle.fluid as fluid\nfluid.load_dygraph('evil')\n")
    proc = subprocess.run([sys.executable, "-m", "legacy_fluid", str(program)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: evil.pdparams: refused to load the global posix.system (a checkpoint holds only numpy arrays, "
        "numbers, strings and containers)"]
    assert not (tmp_path / "ran").exists()


def test_unpickler_reads_both_numpy_spellings():
    data = {"a": np.arange(3, dtype="float32"), "s": np.float32(1.5), "t": (1, [2.0], {"k": "v"})}
    modern = pickle.dumps(data, protocol=4)  # whatever this numpy writes
    old = _safepickle.dumps(data)  # numpy.core names
    assert b"numpy._core" not in old
    for blob in (modern, old):
        import io

        loaded = _safepickle.load(io.BytesIO(blob), "x")
        np.testing.assert_array_equal(loaded["a"], data["a"])
        assert loaded["s"] == data["s"] and loaded["t"] == data["t"]
