"""``tools/train.py`` as users run it: --help, bad arguments, --config, a short real run, resume."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml

from paddle_palm.data.synthetic import make_synthetic_palm


def run_train(repo_root, *args, cwd=None, timeout=240):
    return subprocess.run([sys.executable, str(repo_root / "tools" / "train.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or repo_root)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_synthetic_palm(tmp_path_factory.mktemp("cli") / "data", n_train=12, n_valid=8, image_size=48, seed=2)


def test_help_lists_every_group_and_the_seed_recipes(repo_root):
    result = run_train(repo_root, "--help")
    assert result.returncode == 0, result.stderr
    for title in ("model:", "data:", "optimisation:", "run and output:", "runtime:"):
        assert title in result.stdout
    for option in ("--arch", "--data-dir", "--lr-schedule", "--resume", "--config", "--early-stop", "--ema", "--amp",
                   "--fast", "--device", "--metric", "--weight-decay", "--optimizer", "--num-workers", "--cache"):
        assert option in result.stdout
    assert "resnet50" in result.stdout and "102.5" in result.stdout  # the seed-001 schedule in the recipe table


@pytest.fixture(scope="module")
def train_tool(repo_root):
    """``tools/train.py`` loaded as a module, to call its ``main`` through ``paddle_palm.cli.run`` in-process."""
    spec = importlib.util.spec_from_file_location("train_tool", repo_root / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--arch", "squeezenet1_1", "--epochs", "0"], "--epochs"),
        (["--arch", "squeezenet1_1", "--lr", "fast"], "--lr"),
        (["--arch", "squeezenet1_1", "--optimizer", "rmsprop"], "--optimizer"),
        (["--arch", "squeezenet1_1", "--lr-schedule", "step"], "--lr-schedule"),
        (["--arch", "squeezenet1_1", "--milestones", "3,x"], "--milestones"),
        (["--arch", "resnet5"], "resnet5"),
        ([], "--arch"),
        (["--arch", "resnet50", "--loss", "bce", "--num-classes", "3"], "num_classes"),
        (["--config", "no/such/file.yaml"], "no/such/file.yaml"),
        (["--resume", "no/such/run"], "no/such/run"),
        (["--arch", "senet18", "--image-size", "64"], "224"),
        (["--arch", "squeezenet1_1", "--image-size", "16"], "image_size 16"),
        (["--arch", "squeezenet1_1", "--data-dir", "no/such/folder"], "no/such/folder"),
    ],
)
def test_bad_arguments_are_one_line_without_traceback(train_tool, tmp_path, capsys, args, expected):
    from paddle_palm import cli

    with pytest.raises(SystemExit) as info:
        cli.run(train_tool.main, [*args, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert info.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "out").exists()  # nothing is left behind by a run that could not start


@pytest.mark.parametrize("args, code", [(["--arch", "squeezenet1_1", "--batch-size", "-2"], 2), (["--arch", "nope"], 1)])
def test_bad_arguments_in_a_real_process(repo_root, tmp_path, args, code):
    result = run_train(repo_root, *args, cwd=tmp_path)
    assert result.returncode == code
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_config_file_with_command_line_override(train_tool, tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("arch: resnet50\nlr: 0.02\nepochs: 7\ndata:\n  image_size: 96\n")
    assert train_tool.main(["--config", str(path), "--epochs", "2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["arch"] == "resnet50"
    assert printed["optimisation"]["lr"] == 0.02 and printed["optimisation"]["epochs"] == 2
    assert printed["data"]["image_size"] == 96
    assert printed["optimisation"]["lr_schedule"] == "polynomial"  # from the resnet50 recipe


def test_train_two_epochs_then_resume_from_the_command_line(repo_root, tiny_data, tmp_path):
    out = tmp_path / "run"
    common = ["--image-size", "32", "--batch-size", "4", "--no-progress", "--seed", "3"]
    result = run_train(repo_root, "--arch", "squeezenet1_1", "--data-dir", tiny_data, "--epochs", "2",
                       "--output-dir", out, *common)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["best_metric"] == "val_acc"
    for name in ("best_model.pdparams", "latest.pdparams", "latest.pdopt", "latest.pdstates", "history.csv",
                 "config.yaml", "loss.png", "history.png", "train.log"):
        assert (out / name).is_file(), name
    assert "epoch 2/2" in (out / "train.log").read_text()

    # A second training into the same folder while the first holds it is refused, and changes nothing.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "train.lock").write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        before = (out / "latest.pdstates").read_bytes()
        locked = run_train(repo_root, "--resume", out, "--epochs", "3")
        assert locked.returncode == 1 and "in use" in locked.stderr and len(locked.stderr.strip().splitlines()) == 1
        assert (out / "latest.pdstates").read_bytes() == before
    finally:
        sleeper.kill()
        sleeper.wait()

    # The owner is gone: the stale lock is taken over and the run continues to the new total.
    resumed = run_train(repo_root, "--resume", out, "--epochs", "3", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs"] == 3
    assert "resuming" in (out / "train.log").read_text()


def test_without_data_dir_the_synthetic_set_is_generated_and_announced(repo_root, tmp_path):
    out = tmp_path / "run"
    result = run_train(repo_root, "--arch", "squeezenet1_1", "--epochs", "1", "--image-size", "32",
                       "--output-dir", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stdout
    assert (out / "synthetic-data" / "PALM-Training400").is_dir()


def test_resume_from_an_empty_folder_is_refused(train_tool, tmp_path, capsys):
    from paddle_palm import cli

    with pytest.raises(SystemExit) as info:
        cli.run(train_tool.main, ["--resume", str(tmp_path), "--epochs", "2"])
    assert info.value.code == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
