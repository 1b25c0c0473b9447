"""The fast CPU path trains like plain dygraph: same losses and updates on a fixed seed.

MKL's code path is chosen once per process, so each mode runs in its own
subprocess: ``setup_runtime(fast=False)`` (plain Paddle dygraph: one thread,
MKL's generic kernels, gradual underflow) and ``setup_runtime(fast=True)``
(AVX2 MKL kernels, one thread per core, FTZ/DAZ, and the model's convolutions
switched to the oneDNN operator of ``paddle_palm.ops`` by ``accelerate_model``),
with the plain dynamic-graph training step, as the trainer does.  Both train the project's
ResNet-50 (Momentum, sigmoid loss) and SqueezeNet 1.1 (Adam, softmax loss) for a
few steps on a small fixed batch.

The comparison is step by step ("teacher forcing"): before each step the fast
process loads plain dygraph's parameters and optimizer state of that step, so a
rounding difference cannot compound.  This matters: ResNet-50 with batch norm on
a small batch amplifies float32 rounding so quickly that two equally valid
float32 runs (plain dygraph with 1 and with 2 threads) differ by ~10% in loss
after four free-running steps, while each single step agrees to ~1e-5.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

#: Relative tolerance on a step's loss from the same state (float32 sums in another order).
LOSS_RTOL = 5e-5
#: Norm of (fast update - plain update) over the norm of the plain update, all parameters together.
UPDATE_RTOL = 2e-3
STEPS = 3

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from paddle_palm import runtime
mode, steps, folder = sys.argv[2], int(sys.argv[3]), sys.argv[4]
info = runtime.setup_runtime(device="cpu", fast=mode == "fast")
import numpy as np, paddle
from paddle_palm.models import build_model

def run(arch, optimizer, loss_name, size):
    paddle.seed(0)
    model = build_model(arch)
    model.train()
    if mode == "fast":
        info["conv"] = runtime.accelerate_model(model, threads=info["threads"], channels_last=True)
    params = model.parameters()
    opt = (paddle.optimizer.Adam(1e-3, parameters=params) if optimizer == "adam"
           else paddle.optimizer.Momentum(1e-3, momentum=0.9, parameters=params))
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.uniform(-1, 1, (8, 3, size, size)).astype("float32"))
    y = paddle.to_tensor(np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype="int64"))

    def step(images, labels):
        logits = model(images)
        if loss_name == "bce":
            loss = paddle.nn.functional.binary_cross_entropy_with_logits(
                logits.reshape([-1, 1]), labels.astype("float32").reshape([-1, 1]))
        else:
            loss = paddle.nn.functional.cross_entropy(logits, labels)
        return loss, logits

    prefix = os.path.join(folder, arch)
    losses, update_errors = [], []
    for k in range(steps):
        if mode == "fast" and k > 0:  # restart each step from plain dygraph's state (teacher forcing)
            model.set_state_dict(paddle.load(f"{prefix}.{k}.pdparams"))
            opt.set_state_dict(paddle.load(f"{prefix}.{k}.pdopt"))
        elif mode == "plain":
            paddle.save(model.state_dict(), f"{prefix}.{k}.pdparams")
            paddle.save(opt.state_dict(), f"{prefix}.{k}.pdopt")
        before = {p.name: p.numpy().copy() for p in params}
        loss, _ = step(x, y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
        if mode == "fast" and k + 1 < steps:
            plain_next = paddle.load(f"{prefix}.{k + 1}.pdparams")
            diff = change = 0.0
            for key, value in model.state_dict().items():
                if value.name not in before:  # batch-norm statistics: not an optimizer update
                    continue
                q = plain_next[key].numpy().astype(np.float64)
                diff += float(((value.numpy() - q) ** 2).sum())
                change += float(((q - before[value.name]) ** 2).sum())
            worst = (diff / change) ** 0.5  # |fast update - plain update| / |plain update|, all parameters
            update_errors.append(worst)
    return {"losses": losses, "update_errors": update_errors}

out = {"resnet50": run("resnet50", "momentum", "bce", 64),
       "squeezenet1_1": run("squeezenet1_1", "adam", "ce", 64)}
out["info"] = {k: v for k, v in info.items() if k != "cpu"}
print("RESULT " + json.dumps(out))
"""


def _run(mode, folder):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), mode, str(STEPS), str(folder)], capture_output=True,
                          text=True, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast-path")
    plain = _run("plain", folder)  # saves its state before each step
    return plain, _run("fast", folder)


def test_fast_mode_really_changes_the_settings(trajectories):
    plain, fast = trajectories
    assert plain["info"]["fast"] is False and plain["info"]["threads"] is None
    assert plain["info"]["flush_denormal"] is False
    assert fast["info"]["fast"] is True and fast["info"]["threads"] >= 1
    assert "conv" not in plain["info"]


def test_fast_mode_uses_onednn_convolutions_when_they_build(trajectories):
    from paddle_palm import ops

    _, fast = trajectories
    if ops.load() is None:
        assert fast["info"]["conv"] == "paddle"
        pytest.skip(f"oneDNN operator unavailable here: {ops.unavailable_reason()}")
    assert fast["info"]["conv"] == "onednn"


@pytest.mark.parametrize("arch", ["resnet50", "squeezenet1_1"])
def test_loss_trajectory_matches_plain_dygraph(trajectories, arch):
    """Each step's loss, computed from plain dygraph's state at that step, equals plain dygraph's."""
    plain, fast = trajectories
    assert len(plain[arch]["losses"]) == len(fast[arch]["losses"]) == STEPS
    assert np.all(np.isfinite(plain[arch]["losses"]))
    np.testing.assert_allclose(fast[arch]["losses"], plain[arch]["losses"], rtol=LOSS_RTOL, atol=1e-7)


@pytest.mark.parametrize("arch", ["resnet50", "squeezenet1_1"])
def test_each_update_matches_plain_dygraph(trajectories, arch):
    """The parameters after each fast step differ from plain dygraph's by a tiny fraction of the update."""
    _, fast = trajectories
    errors = fast[arch]["update_errors"]
    assert len(errors) == STEPS - 1
    assert max(errors) < UPDATE_RTOL, errors


def test_training_actually_moves(trajectories):
    """Guard against a vacuous comparison: the losses change from step to step."""
    plain, _ = trajectories
    for arch in ("resnet50", "squeezenet1_1"):
        assert len(set(round(v, 6) for v in plain[arch]["losses"])) > 1
