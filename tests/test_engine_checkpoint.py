"""Checkpoints: journaled crash-safe writes, digests, and weights that must fit the architecture."""

import json
import os

import numpy as np
import paddle
import pytest

from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.errors import CheckpointError
from paddle_palm.models import build_model


def _net(seed=0):
    paddle.seed(seed)
    return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4), paddle.nn.Flatten(),
                                paddle.nn.Linear(4 * 6 * 6, 1))


def _trained(seed=0):
    net = _net(seed)
    opt = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=net.parameters())
    net(paddle.randn([2, 3, 8, 8])).mean().backward()
    opt.step()
    opt.clear_grad()
    return net, opt


def test_save_then_load_restores_weights_and_optimizer_state(tmp_path):
    net, opt = _trained()
    states = ckpt.save_checkpoint(tmp_path, "latest", net, opt, {"epoch": 4})
    assert set(states["files"]) == {"latest.pdparams", "latest.pdopt"}
    assert sorted(os.listdir(tmp_path)) == ["latest.pdopt", "latest.pdparams", "latest.pdstates"]
    assert ckpt.verify_checkpoint(tmp_path)["epoch"] == 4

    # A second copy built in the same process has other parameter names (conv2d_1.w_0 ...):
    # the optimizer state is keyed by structured names, so it still loads.
    other, other_opt = _net(seed=1), None
    other_opt = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=other.parameters())
    ckpt.load_weights(other, tmp_path / "latest.pdparams")
    ckpt.restore_optimizer_state(other, other_opt, ckpt.load_state_file(tmp_path / "latest.pdopt"))
    for (_, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy())
    # The velocities came back: one more step of each pair lands on the same weights, and a fresh
    # optimizer's step (no velocity) does not.  Paddle 2.6 holds restored accumulators until the
    # first step, so the step, not the optimizer's state_dict, is what shows it on every version.
    fresh = _net(seed=2)
    ckpt.load_weights(fresh, tmp_path / "latest.pdparams")
    fresh_opt = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=fresh.parameters())
    batch = paddle.randn([2, 3, 8, 8])
    for model, optimizer in ((net, opt), (other, other_opt), (fresh, fresh_opt)):
        model(batch).mean().backward()
        optimizer.step()
        optimizer.clear_grad()
    for (_, a), (_, b), (_, c) in zip(net.state_dict().items(), other.state_dict().items(), fresh.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy())
    assert any(not np.array_equal(a.numpy(), c.numpy())
               for (_, a), (_, c) in zip(net.state_dict().items(), fresh.state_dict().items()))


def test_weights_of_another_architecture_are_refused_with_both_names(tmp_path):
    squeeze = build_model("squeezenet1_1")
    ckpt.save_checkpoint(tmp_path, "best_model", squeeze)
    resnet = build_model("resnet50")
    with pytest.raises(CheckpointError) as info:
        ckpt.load_weights(resnet, tmp_path / "best_model.pdparams", arch="resnet50")
    message = str(info.value)
    assert "best_model.pdparams" in message and "'resnet50'" in message and "missing" in message


@pytest.mark.parametrize("damage", ["truncate", "empty", "text", "missing"])
def test_damaged_or_missing_weight_files_are_a_checkpoint_error(tmp_path, damage):
    net, _ = _trained()
    ckpt.save_checkpoint(tmp_path, "best_model", net)
    path = tmp_path / "best_model.pdparams"
    os.remove(tmp_path / "best_model.pdstates")  # no digest: the file itself must be recognised as bad
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("these are not weights\n")
    else:
        path.unlink()
    with pytest.raises(CheckpointError) as info:
        ckpt.load_weights(_net(), path, arch="tiny")
    assert "best_model.pdparams" in str(info.value)


def test_digest_detects_a_replaced_file(tmp_path):
    net, opt = _trained()
    ckpt.save_checkpoint(tmp_path, "latest", net, opt, {"epoch": 1})
    other, _ = _trained(seed=7)
    paddle.save(other.state_dict(), str(tmp_path / "latest.pdparams"))  # a valid file, but not this checkpoint's
    with pytest.raises(CheckpointError, match="digest"):
        ckpt.verify_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="damaged"):
        ckpt.load_weights(_net(), tmp_path / "latest.pdparams")


def test_interrupted_commit_is_rolled_forward(tmp_path):
    first, opt = _trained(seed=0)
    ckpt.save_checkpoint(tmp_path, "latest", first, opt, {"epoch": 1})
    second, opt2 = _trained(seed=3)
    # Simulate a SIGKILL after the journal was written and one file renamed: write epoch 2 fully, then
    # put back the journal and the epoch-2 optimizer file as pending, with the old .pdopt/.pdstates restored.
    old = {n: (tmp_path / n).read_bytes() for n in ("latest.pdopt", "latest.pdstates")}
    ckpt.save_checkpoint(tmp_path, "latest", second, opt2, {"epoch": 2})
    (tmp_path / ".latest.pdopt.pending").write_bytes((tmp_path / "latest.pdopt").read_bytes())
    (tmp_path / ".latest.pdstates.pending").write_bytes((tmp_path / "latest.pdstates").read_bytes())
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    # Now latest.pdparams is epoch 2 but latest.pdstates says epoch 1: inconsistent until recovered.
    states = ckpt.verify_checkpoint(tmp_path)  # recovers first
    assert states["epoch"] == 2
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".pending")]


def test_unfinished_write_without_journal_is_discarded(tmp_path):
    net, opt = _trained()
    ckpt.save_checkpoint(tmp_path, "latest", net, opt, {"epoch": 1})
    # What a SIGKILL leaves: a pending file without journal, and atomic-write temporaries.
    leftovers = [".latest.pdparams.pending", "..latest.pdparams.pending.k2x9.tmp", ".latest.pdopt.abc1.tmp"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"half a file")
    (tmp_path / ".other.csv.abc1.tmp").write_bytes(b"not ours")
    assert ckpt.verify_checkpoint(tmp_path)["epoch"] == 1
    assert not any((tmp_path / name).exists() for name in leftovers)
    assert (tmp_path / ".other.csv.abc1.tmp").exists()


def test_empty_or_foreign_folder_has_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt.verify_checkpoint(tmp_path)
    (tmp_path / "latest.pdstates").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a JSON"):
        ckpt.verify_checkpoint(tmp_path)
    (tmp_path / "latest.pdstates").write_text(json.dumps({"epoch": 3}))
    with pytest.raises(CheckpointError, match="not a paddle_palm state file"):
        ckpt.verify_checkpoint(tmp_path)


def test_resolve_weights_path(tmp_path):
    net, _ = _trained()
    ckpt.save_checkpoint(tmp_path, "best_model", net)
    assert ckpt.resolve_weights_path(tmp_path) == str(tmp_path / "best_model.pdparams")
    assert ckpt.resolve_weights_path(tmp_path / "best_model") == str(tmp_path / "best_model.pdparams")
    with pytest.raises(CheckpointError, match="no weights in folder"):
        ckpt.resolve_weights_path(tmp_path.joinpath("empty").mkdir() or tmp_path / "empty")
