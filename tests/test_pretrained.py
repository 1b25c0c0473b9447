"""Pretrained weights (``--pretrained imagenet|PATH``) and the fine-tuning options.

These machines cannot download: the weights files are written here in paddle.vision's
format (a ``paddle.vision.models`` network's ``state_dict`` saved with ``paddle.save``)
and go through the same code as the published ones; the ImageNet path runs Paddle's own
``get_weights_path_from_url`` up to the point where it would fetch.
"""

import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import paddle
import pytest
from paddle.utils import download
from paddle.vision.models import resnet as vision_resnet
from paddle.vision.models import squeezenet as vision_squeezenet

from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.engine import config as cfg
from paddle_palm.engine.optim import FineTuning, build_optimizer
from paddle_palm.engine.trainer import train
from paddle_palm.errors import CheckpointError, ConfigError, MissingFileError
from paddle_palm.models import build_model, convert, pretrained
from paddle_palm.safe_load import UnsafeFileError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """12 training and 8 validation images of 48 px."""
    return make_synthetic_palm(tmp_path_factory.mktemp("palm") / "data", n_train=12, n_valid=8, image_size=48, seed=3)


@pytest.fixture(scope="module")
def squeezenet_file(tmp_path_factory):
    """paddle.vision's squeezenet1_1 (1000 classes) saved as paddle.save writes it."""
    paddle.seed(7)
    path = tmp_path_factory.mktemp("weights") / "squeezenet1_1_vision.pdparams"
    paddle.save(paddle.vision.models.squeezenet1_1().state_dict(), str(path))
    return path


def _numpy(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def tiny_config(data_dir, out, **overrides):
    settings = {"arch": "squeezenet1_1", "data_dir": str(data_dir), "image_size": 32, "batch_size": 4, "epochs": 2,
                "output_dir": str(out), "progress": False, "visualdl": False, "seed": 5}
    settings.update(overrides)
    return cfg.resolve(settings)


# --------------------------------------------------------------------------- the published weights


def test_the_imagenet_table_is_paddle_vision_s():
    published = {**vision_resnet.model_urls, **vision_squeezenet.model_urls}
    for arch, (url, md5) in pretrained.IMAGENET_WEIGHTS.items():
        assert tuple(published[arch]) == (url, md5), arch
    assert set(pretrained.IMAGENET_WEIGHTS) <= set(convert.SUPPORTED)


def test_imagenet_for_a_network_without_published_weights_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"--pretrained imagenet is available for resnet50, resnet101, resnet152, "
                                          r"squeezenet1_0, squeezenet1_1; se_resnet18 has"):
        cfg.resolve({"arch": "se_resnet18", "pretrained": "imagenet"})


def test_imagenet_comes_from_paddle_s_cache(squeezenet_file, tmp_path, monkeypatch):
    # Paddle keeps downloads in WEIGHTS_HOME and uses a cached file whose md5 is the published one; the
    # seeded file stands for the published weights (its md5 in the table).
    url = pretrained.IMAGENET_WEIGHTS["squeezenet1_1"][0]
    cached = tmp_path / os.path.basename(url)
    cached.write_bytes(squeezenet_file.read_bytes())
    monkeypatch.setattr(download, "WEIGHTS_HOME", str(tmp_path))
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, "squeezenet1_1",
                        (url, hashlib.md5(cached.read_bytes()).hexdigest()))
    lines = []
    model = build_model("squeezenet1_1", num_classes=2)
    info = pretrained.load_pretrained(model, "squeezenet1_1", "imagenet", 2, log=lines.append)
    assert info["path"] == str(cached) and info["format"] == "paddle.vision"
    assert len(lines) == 1 and lines[0].startswith("the ImageNet weights of squeezenet1_1 from ")
    assert np.array_equal(model.state_dict()["features.0.weight"].numpy(), _numpy(squeezenet_file)["_conv.weight"])


def test_offline_download_is_one_line_naming_the_url(repo_root, tiny_data, squeezenet_file, tmp_path):
    # A cached file whose md5 is not the published one is fetched again; here no connection can be made.
    home = tmp_path / "home"
    url = pretrained.IMAGENET_WEIGHTS["squeezenet1_1"][0]
    weights_home = home / ".cache" / "paddle" / "hapi" / "weights"
    weights_home.mkdir(parents=True)
    (weights_home / os.path.basename(url)).write_bytes(squeezenet_file.read_bytes())
    proxy = "http://127.0.0.1:9"  # the discard port: connection refused at once, also on machines with internet
    env = dict(os.environ, HOME=str(home), HTTPS_PROXY=proxy, https_proxy=proxy, HTTP_PROXY=proxy,
               http_proxy=proxy, ALL_PROXY=proxy, all_proxy=proxy, NO_PROXY="", no_proxy="")
    result = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "train.py"), "--arch", "squeezenet1_1", "--pretrained",
         "imagenet", "--data-dir", str(tiny_data), "--image-size", "32", "--epochs", "1", "--no-progress",
         "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=240, cwd=repo_root, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: could not download {url}: "), result.stderr
    assert lines[-1].endswith(f"; download it yourself from {url} and pass --pretrained PATH")
    assert "Traceback" not in result.stderr and "md5check" not in result.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- local files


def test_a_paddle_vision_file_loads_the_backbone_and_keeps_a_new_classifier(squeezenet_file):
    paddle.seed(1)
    model = build_model("squeezenet1_1", num_classes=2)
    fresh = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    lines = []
    info = pretrained.load_pretrained(model, "squeezenet1_1", str(squeezenet_file), 2, log=lines.append)
    theirs, ours = _numpy(squeezenet_file), model.state_dict()
    for name, their_name in convert.name_mapping("squeezenet1_1"):
        if name in convert.classifier_names("squeezenet1_1"):
            assert np.array_equal(ours[name].numpy(), fresh[name]), name  # ImageNet's 1000 classes do not fit
        else:
            assert np.array_equal(ours[name].numpy(), theirs[their_name]), name
    assert len(info["loaded"]) == 50 and info["skipped"] == ["_conv9.weight [1000, 512, 1, 1]", "_conv9.bias [1000]"]
    assert lines == [f"pretrained weights of squeezenet1_1 from {squeezenet_file} (paddle.vision names): loaded 50 "
                     "tensors (features.0.weight ... features.12.expand3x3.bias); skipped the file's classifier "
                     "_conv9.weight [1000, 512, 1, 1], _conv9.bias [1000] (initialised afresh for 2 outputs)"]


def _paddleclas_names(vision_state):
    # PaddleClas's ResNet-50 (legendary_models, vb): stem.0.*, blocks.0..15.conv0/conv1/conv2/short.{conv,bn}, fc.
    starts = {1: 0, 2: 3, 3: 7, 4: 13}
    out = {}
    for name, value in vision_state.items():
        parts = name.split(".")
        if parts[0] in ("conv1", "bn1"):
            new = "stem.0." + ("conv." if parts[0] == "conv1" else "bn.") + parts[1]
        elif parts[0].startswith("layer"):
            block = f"blocks.{starts[int(parts[0][5:])] + int(parts[1])}"
            if parts[2] == "downsample":
                new = f"{block}.short.{'conv' if parts[3] == '0' else 'bn'}.{parts[4]}"
            else:
                k = int(parts[2][-1]) - 1
                new = f"{block}.conv{k}.{'conv' if parts[2].startswith('conv') else 'bn'}.{parts[3]}"
        else:
            new = name
        out[new] = value
    return out


@pytest.mark.parametrize("names", ["paddle.vision", "PaddleClas", "paddle_palm"])
def test_resnet50_from_each_naming_computes_what_paddle_vision_computes(names, tmp_path):
    # A file with a fitting classifier (one logit) loads whole: the same outputs as paddle.vision's network.
    paddle.seed(3)
    vision = paddle.vision.models.resnet50(num_classes=1)
    vision.eval()
    state = vision.state_dict()
    if names == "PaddleClas":
        state = _paddleclas_names(state)
        assert "blocks.3.short.conv.weight" in state and "blocks.15.conv2.bn._variance" in state
    elif names == "paddle_palm":
        state = convert.from_paddle_vision("resnet50", state)
    path = tmp_path / "resnet50.pdparams"
    paddle.save(state, str(path))
    model = build_model("resnet50", num_classes=1)
    info = pretrained.load_pretrained(model, "resnet50", str(path), 1, log=lambda line: None)
    assert info["format"] == names and info["skipped"] == [] and len(info["loaded"]) == 267
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(0).uniform(-1, 1, (2, 3, 64, 64)).astype("float32"))
    np.testing.assert_allclose(model(x).numpy(), vision(x).numpy(), rtol=1e-4, atol=1e-5)


def test_files_that_do_not_fit_are_one_clear_line(squeezenet_file, tmp_path):
    model = build_model("squeezenet1_1", num_classes=2)
    other = tmp_path / "squeezenet1_0.pdparams"
    paddle.save(paddle.vision.models.squeezenet1_0().state_dict(), str(other))
    with pytest.raises(CheckpointError, match=r"does not fit squeezenet1_1: its parameter '_conv.weight' has shape "
                                              r"\[96, 3, 7, 7\], expected \[64, 3, 3, 3\]"):
        pretrained.load_pretrained(model, "squeezenet1_1", str(other), 2)
    with pytest.raises(CheckpointError, match="does not hold resnet50 weights: 265 of the backbone's"):
        pretrained.load_pretrained(build_model("resnet50"), "resnet50", str(squeezenet_file), 1)
    extra = tmp_path / "extra.pdparams"
    paddle.save(dict(paddle.load(str(squeezenet_file)), **{"head.weight": paddle.zeros([2])}), str(extra))
    with pytest.raises(CheckpointError, match="1 unexpected parameter.*head.weight"):
        pretrained.load_pretrained(model, "squeezenet1_1", str(extra), 2)
    with pytest.raises(MissingFileError, match="--pretrained file not found: no/such.pdparams"):
        pretrained.load_pretrained(model, "squeezenet1_1", "no/such.pdparams", 2)


def test_a_file_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"_conv.weight": Evil()}))
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        pretrained.load_pretrained(build_model("squeezenet1_1", num_classes=2), "squeezenet1_1", str(path), 2)


# --------------------------------------------------------------------------- fine-tuning options


def _tiny_net():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 1))


def _steps(kind, scale=1.0, freeze=0, groups=True, steps=3):
    model = _tiny_net()
    tuning = FineTuning(model, ["2.weight", "2.bias"], scale, freeze)
    config = dict(cfg.BASE_DEFAULTS, optimizer=kind, lr=0.1, weight_decay=1e-2)
    opt = build_optimizer(config, tuning.parameters() if groups else model.parameters())
    x = paddle.to_tensor(np.random.RandomState(0).randn(16, 4).astype("float32"))
    for step in range(steps):
        tuning.start_epoch(step + 1)
        opt.set_lr(0.1 * 0.8**step)  # the trainer sets every step's rate from the schedule
        loss = (model(x) ** 2).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["momentum", "adam", "adamw", "sgd"])
def test_backbone_lr_scale_is_a_parameter_group_under_the_schedule(kind):
    start = {k: v.numpy() for k, v in _tiny_net().state_dict().items()}
    plain, grouped = _steps(kind, groups=False), _steps(kind, scale=1.0)
    assert all(np.array_equal(plain[k], grouped[k]) for k in plain)  # the groups alone change nothing
    still = _steps(kind, scale=0.0)
    assert np.array_equal(still["0.weight"], start["0.weight"]) and not np.array_equal(still["2.weight"], start["2.weight"])
    if kind == "sgd":  # one plain SGD step moves the backbone by exactly the scale
        full, tenth = _steps(kind, steps=1), _steps(kind, scale=0.1, steps=1)
        np.testing.assert_allclose(tenth["0.weight"] - start["0.weight"], 0.1 * (full["0.weight"] - start["0.weight"]),
                                   rtol=0, atol=1e-7)  # float32 rounding of the weights
        assert np.array_equal(tenth["2.weight"], full["2.weight"])


@pytest.mark.parametrize("kind", ["momentum", "adam", "adamw"])
def test_freeze_keeps_the_backbone_for_the_first_epochs(kind):
    start = {k: v.numpy() for k, v in _tiny_net().state_dict().items()}
    two = _steps(kind, scale=0.5, freeze=2, steps=2)
    assert np.array_equal(two["0.weight"], start["0.weight"]) and not np.array_equal(two["2.bias"], start["2.bias"])
    three = _steps(kind, scale=0.5, freeze=2, steps=3)
    assert not np.array_equal(three["0.weight"], start["0.weight"])  # released in the third epoch


def test_fine_tuning_settings_are_checked():
    c = cfg.resolve({"arch": "squeezenet1_1", "backbone_lr_scale": 0.1, "freeze_epochs": 2})
    assert c["backbone_lr_scale"] == 0.1 and c["freeze_epochs"] == 2 and c["pretrained"] is None
    with pytest.raises(ConfigError, match="backbone_lr_scale = -1"):
        cfg.resolve({"arch": "squeezenet1_1", "backbone_lr_scale": -1})
    with pytest.raises(ConfigError, match="freeze_epochs = 1.5"):
        cfg.resolve({"arch": "squeezenet1_1", "freeze_epochs": 1.5})
    with pytest.raises(ConfigError, match="classifier is known.*se_resnet18 is not one"):
        cfg.resolve({"arch": "se_resnet18", "freeze_epochs": 1})


def test_the_finetune_recipe_resolves(repo_root):
    c = cfg.resolve({}, repo_root / "configs" / "palm_finetune.yaml")
    assert c["arch"] == "resnet50" and c["pretrained"] == "imagenet" and c["preprocess"] == "B"
    assert c["backbone_lr_scale"] == 0.1 and c["freeze_epochs"] == 1
    assert c["threshold_rule"] == "youden" and c["calibrate"] is True


# (A schedule whose length follows --epochs, as cosine does, differs when the first part is a 1-epoch run.)
@pytest.mark.parametrize("optimizer, schedule", [("momentum", {"lr_schedule": "polynomial", "decay_steps": 5,
                                                               "warmup_epochs": 1}),
                                                 ("adam", {"lr_schedule": "constant"})],
                         ids=["momentum-polynomial-warmup", "adam-constant"])
def test_a_resumed_fine_tuning_equals_an_uninterrupted_one(tiny_data, squeezenet_file, tmp_path, optimizer, schedule):
    weights = tmp_path / "weights.pdparams"
    weights.write_bytes(squeezenet_file.read_bytes())
    settings = dict(pretrained=str(weights), backbone_lr_scale=0.1, freeze_epochs=1, optimizer=optimizer,
                    augment="flip", **schedule)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_config(tiny_data, straight, epochs=2, **settings), echo=False)
    train(tiny_config(tiny_data, split, epochs=1, **settings), echo=False)
    # After the frozen epoch the backbone is still the file's.
    file, first = _numpy(squeezenet_file), _numpy(split / "latest.pdparams")
    assert np.array_equal(first["features.3.squeeze.weight"], file["_conv1._conv._conv.weight"])
    weights.unlink()  # a resumed run takes every weight from its checkpoint
    resumed = cfg.resolve_resume(split, {"epochs": 2, "progress": False})
    assert resumed["backbone_lr_scale"] == 0.1 and resumed["freeze_epochs"] == 1
    train(resumed, resume_dir=split, echo=False)
    a, b = _numpy(straight / "latest.pdparams"), _numpy(split / "latest.pdparams")
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["features.3.squeeze.weight"], file["_conv1._conv._conv.weight"])
    log = (straight / "train.log").read_text()
    assert "loaded 50 tensors" in log and "backbone lr x 0.1, backbone frozen for 1 epoch" in log
    assert "epoch 2: backbone released" in log
    assert "resuming" in (split / "train.log").read_text()


def test_the_train_options():
    from paddle_palm.commands.train import build_parser

    parser = build_parser()
    text = parser.format_help()
    for option in ("--pretrained", "--backbone-lr-scale", "--freeze-epochs"):
        assert option in text
    args = vars(parser.parse_args(["--arch", "resnet50", "--pretrained", "imagenet", "--backbone-lr-scale", "0.1",
                                   "--freeze-epochs", "2"]))
    c = cfg.resolve(args)
    assert (c["pretrained"], c["backbone_lr_scale"], c["freeze_epochs"]) == ("imagenet", 0.1, 2)
    assert "pretrained: imagenet" in cfg.to_yaml(c) and "freeze_epochs: 2" in cfg.to_yaml(c)
