"""Training configuration: seed recipes, YAML files, the command line over both, config.yaml round trips."""

import pytest
import yaml

from paddle_palm.engine import config as cfg
from paddle_palm.errors import ConfigError, MissingFileError
from paddle_palm.metrics import CLASS_NAMES_EN


def test_senet18_recipe_is_seed_000():
    c = cfg.resolve({"arch": "senet18"})
    # SPEC 2.1: sigmoid BCE on one logit, Momentum(0.001, 0.9), batch 10, 3 epochs, preprocessing A.
    assert (c["loss"], c["num_classes"], c["optimizer"], c["lr"], c["momentum"]) == ("bce", 1, "momentum", 0.001, 0.9)
    assert (c["batch_size"], c["epochs"], c["preprocess"], c["image_size"]) == (10, 3, "A", 224)
    assert c["lr_schedule"] == "constant"


@pytest.mark.parametrize("arch", ["resnet50", "resnet101", "resnet152"])
def test_resnet_recipe_is_seed_001(arch):
    c = cfg.resolve({"arch": arch})
    # SPEC 2.4: PolynomialDecay(0.005, decay_steps=(400//10+1)*2.5, end 0.001), Momentum 0.9, batch 10, 10 epochs.
    assert c["lr_schedule"] == "polynomial" and c["lr"] == 0.005 and c["end_lr"] == 0.001
    assert c["decay_steps"] == pytest.approx(102.5)
    assert (c["batch_size"], c["epochs"], c["loss"], c["num_classes"]) == (10, 10, "bce", 1)


def test_squeezenet_recipe_uses_two_classes_and_preprocessing_b():
    c = cfg.resolve({"arch": "squeezenet1_1"})
    assert (c["loss"], c["num_classes"], c["batch_size"], c["preprocess"], c["augment"]) == ("ce", 2, 16, "B", "flip")


def test_loss_decides_the_number_of_outputs():
    assert cfg.resolve({"arch": "resnet50", "loss": "ce"})["num_classes"] == 2
    assert cfg.resolve({"arch": "squeezenet1_1", "loss": "bce"})["num_classes"] == 1
    with pytest.raises(ConfigError, match="num_classes"):
        cfg.resolve({"arch": "resnet50", "loss": "bce", "num_classes": 2})


def test_yaml_file_overrides_recipe_and_command_line_overrides_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("arch: resnet50\nlr: 0.01\nepochs: 7\noptimisation:\n  batch_size: 4\n")
    c = cfg.resolve({"epochs": 2}, config_file=path)
    assert c["arch"] == "resnet50"
    assert c["lr"] == 0.01  # file over recipe (0.005)
    assert c["batch_size"] == 4  # a grouped key
    assert c["epochs"] == 2  # command line over file
    assert c["end_lr"] == 0.001  # untouched recipe value


@pytest.mark.parametrize(
    "text, message",
    [
        ("arch: resnet50\nlearning_rate: 0.1\n", "unknown setting 'learning_rate'"),
        ("arch: resnet50\nepochs: -3\n", "epochs = -3"),
        ("arch: resnet50\nlr: fast\n", "lr = 'fast'"),
        ("arch: resnet50\noptimizer: rmsprop\n", "expected one of momentum, sgd, adam"),
        ("arch: resnet50\ncache: maybe\n", "expected true or false"),
        ("- just\n- a list\n", "expected a mapping"),
        ("arch: [unclosed\n", "not a valid YAML file"),
    ],
)
def test_bad_yaml_values_name_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        cfg.resolve({}, config_file=path)
    assert message in str(info.value)


def test_missing_config_file_and_missing_architecture(tmp_path):
    with pytest.raises(MissingFileError, match="nope.yaml"):
        cfg.resolve({"arch": "resnet50"}, config_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="--arch"):
        cfg.resolve({})
    with pytest.raises(ConfigError, match="known models"):
        cfg.resolve({"arch": "resnet5"})


def test_written_config_reads_back_for_evaluation(tmp_path):
    c = cfg.resolve({"arch": "squeezenet1_1", "image_size": 96, "seed": 5})
    cfg.save_run_config(c, tmp_path)
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["model"]["arch"] == "squeezenet1_1"
    (tmp_path / "best_model.pdparams").write_bytes(b"")
    for where in (tmp_path, tmp_path / "best_model.pdparams", tmp_path / "config.yaml"):
        back = cfg.load_run_config(where)
        assert {k: back[k] for k in ("arch", "num_classes", "image_size", "preprocess", "loss")} == {
            "arch": "squeezenet1_1", "num_classes": 2, "image_size": 96, "preprocess": "B", "loss": "ce"}
        assert back["classes"] == list(CLASS_NAMES_EN) and back["classes_zh"] == ["非病理性近视", "病理性近视"]
    # A written config.yaml is itself a valid --config file that repeats the run.
    assert cfg.resolve({}, config_file=tmp_path / "config.yaml") == c


def test_load_run_config_without_a_config(tmp_path):
    with pytest.raises(MissingFileError, match="config.yaml"):
        cfg.load_run_config(tmp_path / "weights.pdparams")
    assert cfg.load_run_config(tmp_path, required=False) == {}


def test_resume_may_change_epochs_but_not_the_architecture(tmp_path):
    cfg.save_run_config(cfg.resolve({"arch": "squeezenet1_1", "epochs": 2}), tmp_path)
    c = cfg.resolve_resume(tmp_path, {"epochs": 5, "early_stop": 2})
    assert (c["epochs"], c["early_stop"], c["output_dir"]) == (5, 2, str(tmp_path))
    with pytest.raises(ConfigError, match="arch cannot change"):
        cfg.resolve_resume(tmp_path, {"arch": "resnet50"})
    with pytest.raises(ConfigError, match="batch_size cannot change"):
        cfg.resolve_resume(tmp_path, {"batch_size": 3})


def test_augment_keys_are_the_augmentation_fields():
    import dataclasses

    from paddle_palm.data.transforms import Augmentation

    assert cfg.AUGMENT_KEYS == tuple(f.name for f in dataclasses.fields(Augmentation))


def test_augmentation_mapping_is_validated(tmp_path):
    path = tmp_path / "aug.yaml"
    path.write_text("arch: squeezenet1_1\naugment:\n  hflip: 0.5\n  max_rotation: 15\n")
    assert cfg.resolve({}, config_file=path)["augment"] == {"hflip": 0.5, "max_rotation": 15.0}
    path.write_text("arch: squeezenet1_1\naugment:\n  saturation: 0.2\n  hue: 0.05\n")
    assert cfg.resolve({}, config_file=path)["augment"] == {"saturation": 0.2, "hue": 0.05}
    path.write_text("arch: squeezenet1_1\naugment:\n  zoom: 2\n")
    with pytest.raises(ConfigError, match="augment"):
        cfg.resolve({}, config_file=path)
