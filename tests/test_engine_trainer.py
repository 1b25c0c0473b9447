"""The training loop on a tiny synthetic data set: outputs, exact resume, NaN stop, early stop, the lock."""

import csv
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.engine import config as cfg
from paddle_palm.engine.loaders import EpochBatchSampler
from paddle_palm.engine.run_folder import OutputLock
from paddle_palm.engine.trainer import Trainer, train
from paddle_palm.errors import ConfigError, TrainingError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """12 training and 8 validation images of 48 px."""
    return make_synthetic_palm(tmp_path_factory.mktemp("palm") / "data", n_train=12, n_valid=8, image_size=48, seed=1)


def tiny_config(data_dir, out, **overrides):
    settings = {"arch": "squeezenet1_1", "data_dir": str(data_dir), "image_size": 32, "batch_size": 4, "epochs": 2,
                "output_dir": str(out), "progress": False, "visualdl": False, "seed": 11}
    settings.update(overrides)
    return cfg.resolve(settings)


def _weights(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochBatchSampler(23, 4, seed=5), EpochBatchSampler(23, 4, seed=5)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and len(list(a)) == len(a) == 6
    b.set_epoch(4)
    assert list(a) != list(b)
    assert sorted(i for batch in a for i in batch) == list(range(23))
    # Two processes share every epoch without overlap (padded so both run as many batches).
    shards = [EpochBatchSampler(23, 4, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(3)
    seen = [i for s in shards for batch in s for i in batch]
    assert set(seen) == set(range(23)) and len(seen) == 24 and len(shards[0]) == len(shards[1]) == 3


def test_two_epochs_write_every_output(tiny_data, tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_config(tiny_data, out, log_interval=1), echo=False)
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    for name in ("best_model.pdparams", "best_model.pdstates", "latest.pdparams", "latest.pdopt", "latest.pdstates",
                 "history.csv", "loss.csv", "config.yaml", "loss.png", "history.png", "train.log"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "train.lock").exists()
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for key in ("train_loss", "val_loss", "val_acc", "val_auc", "lr", "seconds"):
        assert all(r[key] != "" for r in rows), key
    with open(out / "loss.csv", newline="") as fh:
        assert [int(r["iter"]) for r in csv.DictReader(fh)] == list(range(1, 7))  # 3 batches x 2 epochs
    states = ckpt.verify_checkpoint(out)
    assert states["epoch"] == 2 and states["global_step"] == 6 and states["best"]["metric"] == "val_acc"
    assert cfg.load_run_config(out / "best_model.pdparams")["arch"] == "squeezenet1_1"
    # The best weights load into a fresh network of the same architecture.
    from paddle_palm.models import build_model

    ckpt.load_weights(build_model("squeezenet1_1"), out / "best_model.pdparams", arch="squeezenet1_1")


def test_resumed_run_ends_with_exactly_the_weights_of_an_uninterrupted_one(tiny_data, tmp_path):
    # Dropout (SqueezeNet), random flips and the shuffle all draw random numbers: they must repeat exactly,
    # also when the resumed part loads its data in a worker process.
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_config(tiny_data, straight, epochs=3, augment="flip"), echo=False)
    train(tiny_config(tiny_data, split, epochs=1, augment="flip"), echo=False)
    resumed = cfg.resolve_resume(split, {"epochs": 3, "progress": False, "num_workers": 1})
    train(resumed, resume_dir=split, echo=False)
    a, b = _weights(straight / "latest.pdparams"), _weights(split / "latest.pdparams")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    with open(straight / "history.csv") as fa, open(split / "history.csv") as fb:
        cols = ("epoch", "train_loss", "val_loss", "val_acc")
        assert [[r[c] for c in cols] for r in csv.DictReader(fa)] == [[r[c] for c in cols] for r in csv.DictReader(fb)]


@pytest.mark.parametrize("arch, expected", [
    ("se_resnet18", "the training loss became nan"),  # one logit: the NaN reaches the loss
    ("squeezenet1_1", "the weights are no longer finite"),  # its final ReLU turns NaN into 0: the loss stays finite
])
def test_divergence_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tiny_data, tmp_path, arch, expected):
    out = tmp_path / "run"
    train(tiny_config(tiny_data, out, epochs=1, arch=arch), echo=False)
    # Make the next epoch diverge, deterministically: a NaN in the last layer's weights (what a
    # far too large learning rate eventually produces), written as a proper checkpoint.
    from paddle_palm.models import build_model

    net = build_model(arch)
    ckpt.load_weights(net, out / "latest.pdparams")
    state = net.state_dict()
    key = [k for k in state if k.endswith("weight")][-1]
    poisoned = state[key].numpy()
    poisoned[0] = np.nan
    state[key].set_value(poisoned)
    states = ckpt.read_states(out)
    opt = paddle.optimizer.Momentum(0.001, parameters=net.parameters())
    ckpt.restore_optimizer_state(net, opt, ckpt.load_state_file(out / "latest.pdopt"))
    ckpt.save_checkpoint(out, "latest", net, opt, {k: v for k, v in states.items() if k not in ("files", "format")})
    before = {n: (out / n).read_bytes() for n in os.listdir(out)
              if n.startswith(("latest", "best_model", "history", "config", "loss"))}

    with pytest.raises(TrainingError) as info:
        train(cfg.resolve_resume(out, {"epochs": 3, "lr": 0.5, "progress": False}), resume_dir=out, echo=False)
    message = str(info.value)
    assert expected in message and "epoch 2" in message and "latest.pdparams (epoch 1)" in message
    assert "--lr" in message
    # Nothing was saved after the bad step, config.yaml included (it still says lr 0.001).
    assert {n: (out / n).read_bytes() for n in before} == before
    assert ckpt.verify_checkpoint(out)["epoch"] == 1
    assert not (out / "train.lock").exists()
    assert "stopped:" in (out / "train.log").read_text()


def test_early_stop_after_epochs_without_improvement(tiny_data, tmp_path):
    # With a vanishing learning rate the validation loss cannot keep improving for long.
    summary = train(tiny_config(tiny_data, tmp_path / "run", epochs=6, lr=1e-12, early_stop=1, metric="val_acc"),
                    echo=False)
    assert summary["stopped_early"] and summary["epochs"] < 6
    assert summary["epochs"] == summary["best_epoch"] + 1


def test_best_metric_logic(tiny_data, tmp_path):
    t = Trainer(tiny_config(tiny_data, tmp_path, metric="val_loss"), str(tmp_path), log=lambda m: None)
    assert t._update_best({"loss": 0.5}, 1)
    assert not t._update_best({"loss": 0.6}, 2) and t.epochs_without_improvement == 1
    assert not t._update_best({"loss": float("nan")}, 3) and t.epochs_without_improvement == 2
    assert t._update_best({"loss": 0.4}, 4) and t.best == {"metric": "val_loss", "value": 0.4, "epoch": 4,
                                                           "val_loss": 0.4}
    # Accuracy ties go to the lower validation loss.
    a = Trainer(tiny_config(tiny_data, tmp_path, metric="val_acc"), str(tmp_path), log=lambda m: None)
    assert a._update_best({"accuracy": 0.96, "loss": 0.3}, 1)
    assert not a._update_best({"accuracy": 0.96, "loss": 0.35}, 2)
    assert a._update_best({"accuracy": 0.96, "loss": 0.2}, 3) and a.best["epoch"] == 3
    assert not a._update_best({"accuracy": 0.95, "loss": 0.1}, 4)
    assert a._update_best({"accuracy": 0.97, "loss": 0.5}, 5) and a.epochs_without_improvement == 0


def test_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "train.lock").write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        with pytest.raises(TrainingError, match=f"pid {sleeper.pid}"):
            OutputLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The owner is gone now: its lock is stale and taken over.
    with OutputLock(tmp_path) as lock:
        assert (tmp_path / "train.lock").read_text().split()[0] == str(os.getpid())
        assert lock.held
    assert not (tmp_path / "train.lock").exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        train(tiny_config(tmp_path / "missing-data", tmp_path / "run"), echo=False)
    assert not (tmp_path / "run").exists()


def test_training_into_a_locked_folder_changes_nothing(tiny_data, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "train.lock").write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        with pytest.raises(TrainingError, match="in use"):
            train(tiny_config(tiny_data, tmp_path), echo=False)
        assert sorted(os.listdir(tmp_path)) == ["train.lock"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_finished_run_is_not_overwritten(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(tiny_data, out, epochs=1), echo=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(tiny_data, out, epochs=1), echo=False)
    with pytest.raises(ConfigError, match="already trained 1 epochs"):
        train(cfg.resolve_resume(out, {"epochs": 1}), resume_dir=out, echo=False)


@pytest.mark.parametrize("dataset, arch", [("mnist", "se_resnet18_mnist"), ("cifar10", "senet18_cifar")])
def test_seed_data_sets_from_local_files(tmp_path, dataset, arch):
    rng = np.random.default_rng(0)
    if dataset == "mnist":
        from paddle_palm.data.mnist import write_mnist_files

        source = tmp_path / "mnist"
        write_mnist_files(source, rng.integers(0, 255, (8, 28, 28), dtype=np.uint8), rng.integers(0, 10, 8), mode="train")
        write_mnist_files(source, rng.integers(0, 255, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4), mode="test")
    else:
        from paddle_palm.data.cifar import write_cifar10_archive

        source = tmp_path / "cifar-10-python.tar.gz"
        write_cifar10_archive(source, rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 8),
                              rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 4))
    c = cfg.resolve({"arch": arch, "data_dir": str(source), "image_size": 32, "batch_size": 4, "epochs": 1,
                     "output_dir": str(tmp_path / "run"), "progress": False, "visualdl": False})
    assert (c["dataset"], c["loss"], c["num_classes"]) == (dataset, "ce", 10)
    summary = train(c, echo=False)
    assert summary["epochs"] == 1 and (tmp_path / "run" / "best_model.pdparams").is_file()
    assert cfg.load_run_config(tmp_path / "run")["classes"] == cfg.DATASET_CLASSES[dataset]
