"""PaddleClas-style configuration on the command line: ``-c FILE`` and repeatable ``-o section.key=value``.

Precedence: defaults < recipe < ``-c`` file < ``-o`` overrides < the options written out.
Values are read as YAML (``yaml.safe_load``), never evaluated.
"""

import importlib.util

import pytest
import yaml

from paddle_palm import cli
from paddle_palm.engine import config as cfg
from paddle_palm.errors import ConfigError


@pytest.fixture(scope="module")
def train_tool(repo_root):
    spec = importlib.util.spec_from_file_location("train_tool_overrides", repo_root / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overrides_by_section_plain_key_and_paddleclas_name():
    out = cfg.apply_overrides({"lr": 0.1}, [
        "optimisation.epochs=5", "batch_size=4", "Global.seed=7", "Arch.name=resnet50",
        "Optimizer.lr.learning_rate=0.02", "Optimizer.name=Momentum", "data.augment={hflip: 0.5}",
        "run.threshold_rule=youden", "runtime.threads=2", "milestones=[3, 1]", "data.labels_file=",
    ])
    assert out == {"lr": 0.02, "epochs": 5, "batch_size": 4, "seed": 7, "arch": "resnet50", "optimizer": "momentum",
                   "augment": {"hflip": 0.5}, "threshold_rule": "youden", "threads": 2, "milestones": [1, 3],
                   "labels_file": None}


def test_paddleclas_list_items_and_translated_values():
    out = cfg.apply_overrides({}, [
        "Loss.Train.0.CELoss.epsilon=0.1", "DataLoader.Train.dataset.batch_transform_ops.0.MixupOperator.alpha=0.2",
        "Global.image_shape=[3, 160, 160]", "Arch.pretrained=True", "Optimizer.lr.name=Cosine",
        "Optimizer.lr.warmup_epoch=2", "Optimizer.lr.eta_min=0.0001", "EMA.decay=0.99",
    ])
    assert out == {"label_smoothing": 0.1, "mixup": 0.2, "image_size": 160, "pretrained": "imagenet",
                   "lr_schedule": "cosine", "warmup_epochs": 2, "end_lr": 0.0001, "ema": True, "ema_decay": 0.99}
    out = cfg.apply_overrides({}, ["Optimizer.lr.name=MultiStepDecay", "Optimizer.lr.milestones=[60, 30]",
                                   "Optimizer.lr.gamma=0.5", "Arch.pretrained=False", "Optimizer.name=AdamW"])
    assert out == {"lr_schedule": "multistep", "milestones": [30, 60], "gamma": 0.5, "pretrained": None,
                   "optimizer": "adamw"}
    assert cfg.apply_overrides({}, ["Optimizer.lr.name=Linear", "Optimizer.lr.end_lr=0.001", "Optimizer.lr.power=2"]) \
        == {"lr_schedule": "polynomial", "end_lr": 0.001, "power": 2.0}
    for name in ("Arch.pretrained", "Global.pretrained_model"):  # PaddleClas leaves the suffix out
        assert cfg.apply_overrides({}, [f"{name}=weights/mine"]) == {"pretrained": "weights/mine.pdparams"}
        assert cfg.apply_overrides({}, [f"{name}=weights/mine.pdparams"]) == {"pretrained": "weights/mine.pdparams"}
    assert cfg.apply_overrides({}, ["pretrained=imagenet", "Global.pretrained_model="]) == {"pretrained": None}


def test_later_override_wins_and_input_is_not_changed():
    base = {"epochs": 3}
    assert cfg.apply_overrides(base, ["epochs=4", "optimisation.epochs=6"]) == {"epochs": 6}
    assert base == {"epochs": 3}
    assert cfg.apply_overrides(base, []) == base and cfg.apply_overrides(base, None) == base


@pytest.mark.parametrize("item, expected", [
    ("optimisation.epoch=3", "did you mean 'epochs'"),
    ("epoch=3", "did you mean 'epochs'"),
    ("Global.epoch=3", "did you mean 'Global.epochs'"),
    ("data.epochs=3", "section 'optimisation'"),
    ("epochs", "section.key=value"),
    ("=3", "section.key=value"),
    ("epochs=[", "not YAML"),
    ("epochs=abc", "expected an integer"),
    ("lr=-1", "lr = -1"),
    ("cache=yes please", "expected true or false"),
    ("epochs=!!python/object/apply:os.system [echo]", "not YAML"),
    ("Optimizer.lr.name=Piecewise", "expected Constant, Cosine, Linear or MultiStepDecay"),
    ("Global.image_shape=[3, 224, 192]", "expected [3, size, size]"),
    ("Global.image_shape=[1, 224, 224]", "expected [3, size, size]"),
    ("Loss.Train.0.CELoss.epsilon=1", "expected a value below 1"),
    ("Loss.Train.1.CELoss.epsilon=0.1", "did you mean 'Loss.Train.0.CELoss.epsilon'"),
    ("EMA.decay=1.5", "ema_decay = 1.5"),
])
def test_bad_overrides_name_the_item(item, expected):
    with pytest.raises(ConfigError) as info:
        cfg.apply_overrides({}, [item])
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert item.partition("=")[0] in message


def _printed(train_tool, capsys, args):
    assert train_tool.main([*args, "--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_precedence_recipe_file_overrides_flags(train_tool, tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("arch: resnet50\nlr: 0.02\nepochs: 7\nseed: 3\ndata:\n  image_size: 96\n")
    printed = _printed(train_tool, capsys, ["-c", str(path), "-o", "Global.epochs=5", "-o", "optimisation.lr=0.03",
                                            "-o", "Global.seed=9", "--seed", "11"])
    assert printed["optimisation"]["epochs"] == 5  # -o over the file
    assert printed["optimisation"]["lr"] == 0.03
    assert printed["run"]["seed"] == 11  # the option written out over -o
    assert printed["data"]["image_size"] == 96  # the file over the recipe
    assert printed["optimisation"]["lr_schedule"] == "polynomial"  # the resnet50 recipe
    # -c is --config; -o alone can choose the architecture.
    assert _printed(train_tool, capsys, ["--config", str(path)])["optimisation"]["epochs"] == 7
    assert _printed(train_tool, capsys, ["-o", "Arch.name=SqueezeNet1_1"])["model"]["loss"] == "ce"


@pytest.mark.parametrize("args, expected", [
    (["--arch", "senet18", "-o", "optimisation.epoch=3"], "did you mean 'epochs'"),
    (["--arch", "senet18", "-o", "epochs=0"], "epochs = 0"),
    (["-c", "no/such/file.yaml"], "no/such/file.yaml"),
])
def test_bad_overrides_on_the_command_line_are_one_line(train_tool, tmp_path, capsys, args, expected):
    with pytest.raises(SystemExit) as info:
        cli.run(train_tool.main, [*args, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert info.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_help_explains_c_o_and_the_precedence(train_tool):
    text = train_tool.build_parser().format_help()
    assert "-c FILE, --config FILE" in text and "-o KEY=VALUE, --override KEY=VALUE" in text
    assert "Global.epochs" in " ".join(text.split())
    assert "-c FILE < -o <" in " ".join(text.split())
