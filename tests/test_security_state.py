"""Damaged and tampered state files, run configs and exports: one line naming the file and the field."""

import json
import os
import shutil
import subprocess
import sys

import paddle
import pytest

from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.errors import CheckpointError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(tool, *args, cwd, timeout=240):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _checkpoint(folder, states=None):
    paddle.seed(0)
    net = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.SGD(0.1, parameters=net.parameters())
    ckpt.save_checkpoint(folder, "latest", net, opt, states or {"epoch": 1, "global_step": 4, "arch": "x",
                                                                 "best": {"metric": "val_acc", "value": 0.5}})


def _edit(path, change):
    states = json.loads(path.read_text())
    change(states)
    path.write_text(json.dumps(states))


# --------------------------------------------------------------------------- .pdstates


def test_a_written_state_file_validates_and_carries_its_own_digest(tmp_path):
    _checkpoint(tmp_path)
    states = ckpt.verify_checkpoint(tmp_path)
    assert states["format"] == ckpt.STATES_FORMAT and states["digest"] == ckpt.states_digest(states)


@pytest.mark.parametrize("field, change", [
    ("epoch", lambda s: s.update(epoch=3)),                      # a plain edit: the own digest catches it
    ("digest", lambda s: s.pop("digest")),
])
def test_an_edited_state_file_is_detected(tmp_path, field, change):
    _checkpoint(tmp_path)
    _edit(tmp_path / "latest.pdstates", change)
    with pytest.raises(CheckpointError, match=r"latest\.pdstates.*'digest'") as info:
        ckpt.verify_checkpoint(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("field, value", [
    ("epoch", "two"), ("epoch", -1), ("epoch", True), ("global_step", 1.5), ("arch", ["resnet50"]),
    ("best", "high"), ("best", {"metric": "val_acc", "value": "nan"}), ("format", 99),
    ("files", {"../../etc/passwd": "0" * 64}), ("files", {"latest.pdparams": "not-a-digest"}),
    ("files", {"/tmp/latest.pdparams": "0" * 64}), ("rng", {"python": [3, [1, 2], None]}),
    ("rng", {"numpy": ["MT19937", "!!", 0, 0, 0.0]}), ("schedule", {"plateau_lr": "x"}),
])
def test_wrong_types_ranges_and_paths_are_refused_naming_the_field(tmp_path, field, value):
    """Even with a recomputed digest (whoever writes the file can): the schema refuses the value."""
    _checkpoint(tmp_path)

    def change(states):
        states[field] = value
        states["digest"] = ckpt.states_digest(states)

    _edit(tmp_path / "latest.pdstates", change)
    with pytest.raises(CheckpointError) as info:
        ckpt.verify_checkpoint(tmp_path)
    assert "latest.pdstates" in str(info.value) and f"'{field}" in str(info.value), str(info.value)


def test_a_damaged_journal_renames_nothing(tmp_path):
    _checkpoint(tmp_path)
    (tmp_path / "victim").write_text("mine")
    (tmp_path / ".latest.pdstates.pending").write_text(json.dumps({"files": {"latest/../../victim": "0" * 64}}))
    with pytest.raises(CheckpointError, match="journal"):
        ckpt.verify_checkpoint(tmp_path)
    assert (tmp_path / "victim").read_text() == "mine"


# --------------------------------------------------------------------------- the tools


@pytest.fixture(scope="module")
def run_and_export(tmp_path_factory):
    from paddle_palm.data.synthetic import make_synthetic_palm

    root = tmp_path_factory.mktemp("state")
    data = make_synthetic_palm(root / "data", n_train=8, n_valid=6, image_size=40, seed=3)
    result = run_tool("train.py", "--arch", "squeezenet1_1", "--data-dir", data, "--epochs", "1", "--image-size", "32",
                      "--batch-size", "4", "--no-progress", "--seed", "1", "--output-dir", root / "run", cwd=root)
    assert result.returncode == 0, result.stderr
    result = run_tool("export.py", "--weights", root / "run" / "best_model.pdparams", "--output", root / "exported",
                      cwd=root)
    assert result.returncode == 0, result.stderr
    return root, data


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.update(epoch="two"), "'epoch'"),
    (lambda s: s.update(epoch=3), "'digest'"),
    (lambda s: s.pop("global_step") and s.update(digest=ckpt.states_digest(s)), "'global_step'"),
])
def test_resume_with_a_tampered_state_file_is_one_line(run_and_export, tmp_path, change, expected):
    root, _ = run_and_export
    run = shutil.copytree(root / "run", tmp_path / "run")
    _edit(run / "latest.pdstates", change)
    before = sorted(os.listdir(run))
    line = one_error_line(run_tool("train.py", "--resume", run, "--epochs", "3", "--no-progress", cwd=tmp_path))
    assert "latest.pdstates" in line and expected in line, line
    assert sorted(os.listdir(run)) == before


def test_a_tampered_config_yaml_is_one_line(run_and_export, tmp_path):
    root, _ = run_and_export
    run = shutil.copytree(root / "run", tmp_path / "run")
    (run / "config.yaml").write_text("model: !!python/object/apply:os.system ['touch pwned']\n")
    line = one_error_line(run_tool("train.py", "--resume", run, "--epochs", "3", "--no-progress", cwd=tmp_path))
    assert "config.yaml" in line, line
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("damage, expected", [
    ("garbage-model", "digest"),
    ("outside-path", "'files.model'"),
    ("symlink-out", "outside the export folder"),
    ("old-format", "'format'"),
    ("bad-threshold", "'threshold'"),
])
def test_a_damaged_export_is_refused_before_paddle_inference_reads_it(run_and_export, tmp_path, damage, expected):
    root, data = run_and_export
    folder = shutil.copytree(root / "exported", tmp_path / "exported")
    record_path = folder / "preprocess.json"
    record = json.loads(record_path.read_text())
    model = record["files"]["model"]
    if damage == "garbage-model":
        (folder / model).write_bytes(os.urandom(4096))
    elif damage == "outside-path":
        record["files"]["model"] = "/etc/passwd"
        record["files"]["sha256"]["/etc/passwd"] = "0" * 64
    elif damage == "symlink-out":
        outside = tmp_path / model
        shutil.copyfile(folder / model, outside)
        os.remove(folder / model)
        os.symlink(outside, folder / model)
    elif damage == "old-format":
        record["format"] = 1
    elif damage == "bad-threshold":
        record["threshold"] = "high"
    record_path.write_text(json.dumps(record))
    result = run_tool("predict.py", "--inference-model", folder, data / "PALM-Validation400", cwd=tmp_path)
    line = one_error_line(result)
    assert result.returncode == 1 and "preprocess.json" in line or model in line, line
    assert expected in line, line


def test_weights_beside_a_foreign_or_tampered_state_file(tmp_path):
    """PaddleClas writes a pickled ``.pdstates``: ignored.  One of ours that was edited: refused."""
    paddle.seed(0)
    net = paddle.nn.Linear(3, 2)
    paddle.save(net.state_dict(), str(tmp_path / "best_model.pdparams"))
    paddle.save({"epoch": 3, "metric": 0.9}, str(tmp_path / "best_model.pdstates"))  # PaddleClas layout
    assert ckpt.load_weights(paddle.nn.Linear(3, 2), tmp_path / "best_model.pdparams")
    ckpt.save_checkpoint(tmp_path, "best_model", net, None, {"epoch": 1})
    _edit(tmp_path / "best_model.pdstates", lambda s: s.update(epoch=7))
    with pytest.raises(CheckpointError, match=r"best_model\.pdstates.*'digest'"):
        ckpt.load_weights(paddle.nn.Linear(3, 2), tmp_path / "best_model.pdparams")
