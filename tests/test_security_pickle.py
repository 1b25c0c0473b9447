"""Checkpoints from strangers cannot run code: the restricted unpickler, per file kind and per tool.

Each poisoned file holds a pickle ``__reduce__`` payload that, under a plain
``paddle.load``, creates a marker file and then returns the correct array (so
the checkpoint would otherwise work).  Every loader of the project must refuse
it with one line naming the file and the global, and the marker must not exist.
"""

import io
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.errors import CheckpointError
from paddle_palm.safe_load import UnsafeFileError, load_pickle, paddle_load, restricted_loads


class _EvalPayload:
    """Pickles as ``eval(code)``: creates ``marker``, then yields ``array`` (a working checkpoint)."""

    def __init__(self, marker, array):
        self.marker, self.array = str(marker), array

    def __reduce__(self):
        code = (f"[open({self.marker!r}, 'w').close(), __import__('numpy').array({self.array.tolist()!r}, "
                f"dtype={str(self.array.dtype)!r})][1]")
        return eval, (code,)


class _SystemPayload:
    """Pickles as ``os.system('touch marker')``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poison(path, marker, kind=_EvalPayload):
    """Rewrite the Paddle pickle ``path`` with its first array replaced by a payload (as an attacker would)."""
    with open(path, "rb") as fh:
        state = pickle.load(fh, encoding="latin1")  # our own file, written by paddle.save: trusted here

    def swap(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                payload = (lambda a: kind(marker, a)) if kind is _EvalPayload else (lambda a: kind(marker))
                if isinstance(value, np.ndarray) and value.size:
                    obj[key] = payload(value)
                    return True
                if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
                    obj[key] = (value[0], payload(value[1]))  # a tensor as paddle.save writes it: (name, array)
                    return True
                if isinstance(value, dict) and swap(value):
                    return True
        return False

    assert swap(state), f"no array in {path}"
    with open(path, "wb") as fh:
        pickle.dump(state, fh, protocol=2)


def resign(run_dir, prefix="latest"):
    """Recompute the digests of ``<prefix>.pdstates`` after poisoning (the writer of a file can do that)."""
    path = os.path.join(run_dir, prefix + ".pdstates")
    with open(path, encoding="utf-8") as fh:
        states = json.load(fh)
    for name in states["files"]:
        states["files"][name] = ckpt.sha256_file(os.path.join(run_dir, name))
    states["digest"] = ckpt.states_digest(states)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(states, fh)


def _small_checkpoint(folder, ema=True):
    import paddle

    paddle.seed(0)
    net = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    opt = paddle.optimizer.Momentum(0.1, parameters=net.parameters())
    net(paddle.randn([2, 3, 6, 6])).mean().backward()
    opt.step()
    extra = {".pdema": {"shadow": {k: v.numpy() for k, v in net.state_dict().items()}, "updates": 3}} if ema else None
    ckpt.save_checkpoint(folder, "latest", net, opt, {"epoch": 1}, extra=extra)
    return net


# --------------------------------------------------------------------------- the loader itself


@pytest.mark.parametrize("suffix", [".pdparams", ".pdopt", ".pdema"])
@pytest.mark.parametrize("kind", [_EvalPayload, _SystemPayload])
def test_a_poisoned_file_of_each_kind_is_refused_and_runs_nothing(tmp_path, suffix, kind):
    _small_checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / ("latest" + suffix)
    poison(path, marker, kind)
    with pytest.raises(UnsafeFileError) as info:
        ckpt.load_state_file(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert ("builtins.eval" if kind is _EvalPayload else "posix.system") in message
    assert not marker.exists()


def test_the_payload_is_real(tmp_path):
    """The same file under plain ``paddle.load`` runs the payload: the refusal above is what stops it."""
    import paddle

    _small_checkpoint(tmp_path, ema=False)
    marker = tmp_path / "pwned"
    poison(tmp_path / "latest.pdparams", marker)
    state = paddle.load(str(tmp_path / "latest.pdparams"))
    assert marker.exists() and len(state) == 6


def test_checkpoints_written_by_paddle_load_exactly_as_paddle_load_gives_them(tmp_path):
    import paddle

    net = _small_checkpoint(tmp_path)
    for name in ("latest.pdparams", "latest.pdopt", "latest.pdema"):
        ours, theirs = paddle_load(tmp_path / name), paddle.load(str(tmp_path / name))
        assert ours.keys() == theirs.keys()
    ours = paddle_load(tmp_path / "latest.pdparams")
    for key, value in net.state_dict().items():
        assert isinstance(ours[key], paddle.Tensor) and np.array_equal(ours[key].numpy(), value.numpy())
    # paddle.save outside the project, any protocol, nested containers and numpy scalars.
    for protocol in (2, 3, 4):
        obj = {"w": paddle.to_tensor([1.0, 2.0]), "n": np.float32(3), "i": np.int64(2), "nested": [1, (2.5, "x")],
               "odict": net.state_dict()}
        paddle.save(obj, str(tmp_path / f"p{protocol}.pdparams"), protocol=protocol)
        loaded = paddle_load(tmp_path / f"p{protocol}.pdparams")
        assert np.array_equal(loaded["w"].numpy(), [1.0, 2.0]) and loaded["n"] == 3 and loaded["nested"] == [1, (2.5, "x")]


def test_paddle_1_8_and_numpy_1_pickles_load(tmp_path):
    """``save_dygraph`` of Paddle 1.8 (protocol 2, numpy 1 names ``numpy.core``, bytes as ``_codecs.encode``)."""
    array = np.arange(6, dtype="float32").reshape(2, 3)
    data = pickle.dumps({"fc.w_0": array, "StructuredToParameterName@@": {"fc.weight": "fc.w_0"}}, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # as numpy 1 writes it
    assert b"numpy.core.multiarray" in data
    obj = restricted_loads(data, "palm.pdparams")
    assert np.array_equal(obj["fc.w_0"], array)
    bytes_pickle = pickle.dumps({"raw": b"\x00\xff"}, protocol=2)
    assert b"_codecs" in bytes_pickle and restricted_loads(bytes_pickle, "x")["raw"] == b"\x00\xff"


def test_paddle_dense_tensor_reconstructor_only_in_its_own_form(tmp_path):
    class Dense:
        def __reduce__(self):
            return eval, ("data", {"data": np.ones(2, "float32")})

    assert np.array_equal(restricted_loads(pickle.dumps({"t": Dense()}, protocol=4), "x")["t"], [1, 1])

    class Other:
        def __reduce__(self):
            return eval, ("data", {"data": np.ones(2), "__builtins__": {}})

    with pytest.raises(UnsafeFileError, match="builtins.eval"):
        restricted_loads(pickle.dumps(Other(), protocol=4), "x")


@pytest.mark.parametrize("payload, refused", [
    (pickle.dumps(np.array([{"a": 1}], dtype=object)), "Python objects"),
    (pickle.dumps(io.BytesIO(b"x")), "_io.BytesIO"),
    (b"cos\nsystem\n(S'true'\ntR.", "os.system"),
    (b"\x80\x02cbuiltins\ngetattr\nq\x00.", "builtins.getattr"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.", "_codecs.encode"),
])
def test_other_globals_are_refused(payload, refused):
    with pytest.raises(UnsafeFileError, match=refused):
        restricted_loads(payload, "f.pdparams")


def test_damaged_files_are_one_line_errors(tmp_path):
    (tmp_path / "t.pdparams").write_bytes(b"\x80\x04\x95garbage")
    with pytest.raises(CheckpointError, match="not a complete Paddle checkpoint"):
        load_pickle(tmp_path / "t.pdparams")


# --------------------------------------------------------------------------- every tool


def run_tool(repo_root, tool, *args, cwd, timeout=240):
    return subprocess.run([sys.executable, str(repo_root / "tools" / tool), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def trained_run(repo_root, tmp_path_factory):
    """A one-epoch run with EMA (best_model, latest.pdparams/.pdopt/.pdema/.pdstates) and its data."""
    folder = tmp_path_factory.mktemp("poison")
    data = make_synthetic_palm(folder / "data", n_train=8, n_valid=6, image_size=40, seed=1)
    result = run_tool(repo_root, "train.py", "--arch", "squeezenet1_1", "--data-dir", data, "--epochs", "1",
                      "--image-size", "32", "--batch-size", "4", "--ema", "--no-progress", "--seed", "1",
                      "--output-dir", folder / "run", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "run", data


def _assert_refused(result, marker, path):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: refusing to load") and str(path) in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("tool", ["predict", "eval", "export"])
def test_every_weights_tool_refuses_a_poisoned_checkpoint(repo_root, trained_run, tmp_path, tool):
    run, data = trained_run
    shutil.copytree(run, tmp_path / "run")
    weights = tmp_path / "run" / "best_model.pdparams"
    marker = tmp_path / "pwned"
    poison(weights, marker)
    resign(tmp_path / "run", "best_model")
    args = {
        "predict": ["predict.py", "--weights", weights, data / "PALM-Validation400"],
        "eval": ["eval.py", "--weights", weights, "--data-dir", data, "--output-dir", tmp_path / "ev"],
        "export": ["export.py", "--weights", weights, "--output", tmp_path / "exported"],
    }[tool]
    _assert_refused(run_tool(repo_root, *args, cwd=tmp_path), marker, weights)
    assert not (tmp_path / "exported").exists() and not (tmp_path / "ev").exists()


@pytest.mark.parametrize("suffix", [".pdparams", ".pdopt", ".pdema"])
def test_resume_refuses_a_poisoned_latest_checkpoint(repo_root, trained_run, tmp_path, suffix):
    run, _ = trained_run
    shutil.copytree(run, tmp_path / "run")
    path = tmp_path / "run" / ("latest" + suffix)
    marker = tmp_path / "pwned"
    poison(path, marker)
    resign(tmp_path / "run")  # the digests match: only the loader can stop it
    before = (tmp_path / "run" / "latest.pdstates").read_bytes()
    result = run_tool(repo_root, "train.py", "--resume", tmp_path / "run", "--epochs", "2", "--ema", "--no-progress",
                      cwd=tmp_path)
    _assert_refused(result, marker, path)
    assert (tmp_path / "run" / "latest.pdstates").read_bytes() == before


def test_a_shared_container_graph_is_refused_at_once():
    """One list referenced from many places: 60 containers, 2**60 paths for any walk (Paddle's too)."""
    node = [np.zeros(1)]
    for _ in range(60):
        node = [node, node]
    with pytest.raises(UnsafeFileError, match="several places"):
        restricted_loads(pickle.dumps({"w": node}, protocol=4), "x")


FLUID18 = os.path.expanduser(os.path.join("~", ".cache", "paddle_palm", "fluid18", "bin", "python"))


@pytest.mark.skipif(not os.path.isfile(FLUID18), reason="real Paddle 1.8.5 not set up (.ci/fluid_golden.sh)")
def test_real_paddle_1_8_save_dygraph_files_load(tmp_path):
    import paddle

    code = ("import numpy as np, paddle.fluid as fluid\n"
            "with fluid.dygraph.guard():\n"
            "    fc = fluid.dygraph.Linear(3, 2)\n"
            "    opt = fluid.optimizer.AdamOptimizer(learning_rate=fluid.dygraph.PiecewiseDecay([1], [0.1, 0.01], 0),"
            " parameter_list=fc.parameters())\n"
            "    loss = fluid.layers.reduce_mean(fc(fluid.dygraph.to_variable(np.ones((2, 3), 'float32'))))\n"
            "    loss.backward(); opt.minimize(loss)\n"
            "    fluid.save_dygraph(fc.state_dict(), 'f18'); fluid.save_dygraph(opt.state_dict(), 'f18')\n")
    subprocess.run([FLUID18, "-c", code], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    for name in ("f18.pdparams", "f18.pdopt"):
        ours, theirs = paddle_load(tmp_path / name), paddle.load(str(tmp_path / name))
        assert sorted(ours) == sorted(theirs) and "weight" in ours or "LR_Scheduler" in ours
