"""The commands as console scripts: setup.cfg's entry points, ``python -m``, and the thin ``tools/*.py``."""

import configparser
import importlib
import os
import subprocess
import sys

import pytest

from paddle_palm import cli

#: Each command: (console script, module under paddle_palm.commands, wrapper in tools/, a word of its --help).
COMMANDS = [
    ("palm-prepare-data", "prepare_data", "prepare_data.py", "--archives"),
    ("palm-train", "train", "train.py", "per-architecture defaults"),
    ("palm-eval", "eval", "eval.py", "--data-dir"),
    ("palm-predict", "predict", "predict.py", "--inference-model"),
    ("palm-export", "export", "export.py", "--output"),
    ("palm-summary", "summary", "summary.py", "--input-shape"),
    ("palm-app", "app", "app.py", "--max-upload-mb"),
]


def console_scripts(repo_root):
    parser = configparser.ConfigParser()
    parser.read(repo_root / "setup.cfg", encoding="utf-8")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


def test_every_console_script_names_a_command_entry(repo_root):
    scripts = console_scripts(repo_root)
    assert sorted(scripts) == sorted(script for script, *_ in COMMANDS)
    for script, module, _, _ in COMMANDS:
        target = scripts[script]
        assert target == f"paddle_palm.commands.{module}:entry", script
        module_name, function = target.split(":")
        command = importlib.import_module(module_name)
        assert callable(getattr(command, function)) and callable(command.main) and callable(command.build_parser)


@pytest.mark.parametrize("script, module, tool, word", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_python_dash_m_and_the_tool_show_the_same_help(repo_root, script, module, tool, word):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")]))
    runs = [subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, timeout=120,
                           cwd=repo_root, env=env)
            for argv in (["-m", f"paddle_palm.commands.{module}"], [str(repo_root / "tools" / tool)])]
    for run in runs:
        assert run.returncode == 0 and word in run.stdout, run.stderr
        assert "Traceback" not in run.stderr
    # The same options and texts; only the program name in the usage line may differ.
    assert runs[0].stdout.split("\n", 1)[1] == runs[1].stdout.split("\n", 1)[1]


def test_importing_a_command_changes_nothing_in_the_process(repo_root):
    """Warning filters, GLOG_minloglevel and signal handlers are set by a command's entry, not by an import."""
    # numpy installs warning filters of its own when it is first imported: it is imported first here,
    # so that only what paddle_palm itself changes is compared.
    code = ("import os, signal, sys, warnings\n"
            "import numpy\n"
            "before = (list(warnings.filters), os.environ.get('GLOG_minloglevel'), signal.getsignal(signal.SIGTERM))\n"
            "import paddle_palm.commands.train, paddle_palm.commands.eval, paddle_palm.commands.predict\n"
            "import paddle_palm.commands.export, paddle_palm.commands.summary, paddle_palm.commands.app\n"
            "import paddle_palm.commands.prepare_data\n"
            "after = (list(warnings.filters), os.environ.get('GLOG_minloglevel'), signal.getsignal(signal.SIGTERM))\n"
            "assert before == after, (before, after)\n"
            "assert 'paddle' not in sys.modules, 'a command imports Paddle before its entry ran'\n")
    env = {k: v for k, v in os.environ.items() if k != "GLOG_minloglevel"}
    env["PYTHONPATH"] = str(repo_root)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr


def test_shared_model_options_parse_alike():
    """eval, export and predict take --arch/--weights/--num-classes/--image-size/--preprocess/--threshold alike."""
    from paddle_palm.commands import eval as eval_command
    from paddle_palm.commands import export, predict

    common = ["--weights", "w.pdparams", "--arch", "resnet50", "--num-classes", "2", "--image-size", "128",
              "--preprocess", "b", "--threshold", "0.3"]
    parsed = [eval_command.build_parser().parse_args([*common, "--data-dir", "d"]),
              export.build_parser().parse_args([*common, "--output", "o"]),
              predict.build_parser().parse_args([*common, "x.jpg"])]
    for args in parsed:
        assert (args.weights, args.arch, args.num_classes, args.image_size, args.preprocess, args.threshold) == (
            "w.pdparams", "resnet50", 2, 128, "B", 0.3)


@pytest.mark.parametrize("argv, flag", [
    (["--weights", "w", "--data-dir", "d", "--image-size", "100000"], "--image-size"),
    (["--weights", "w", "--data-dir", "d", "--threshold", "1.5"], "--threshold"),
    (["--weights", "w", "--data-dir", "d", "--num-workers", "5000"], "--num-workers"),
])
def test_shared_options_keep_their_bounds(capsys, argv, flag):
    from paddle_palm.commands import eval as eval_command

    with pytest.raises(SystemExit) as info:
        eval_command.build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err


def test_app_threads_are_bounded_like_predicts():
    from paddle_palm.commands import app

    with pytest.raises(SystemExit):
        app.build_parser().parse_args(["--weights", "w", "--threads", str(cli.MAX_THREADS + 1)])
