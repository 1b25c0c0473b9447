"""The training losses, with and without label smoothing and mixup, against the formulas in numpy."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.engine import config as cfg
from paddle_palm.engine.losses import compute_loss, mixup_plan
from paddle_palm.engine.trainer import make_train_step, train
from paddle_palm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

LOGITS_1 = np.array([[2.0], [-1.0], [0.5], [-3.0]], dtype=np.float32)
LOGITS_2 = np.array([[2.0, -1.0], [0.3, 0.1], [-0.5, 1.5], [0.0, 0.0]], dtype=np.float32)
LABELS = np.array([1, 0, 1, 0], dtype=np.int64)


def numpy_bce(logits, targets):
    p = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
    return float(np.mean(-(targets * np.log(p) + (1 - targets) * np.log(1 - p))))


def numpy_ce(logits, soft):
    z = logits.astype(np.float64)
    log_p = z - z.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    return float(np.mean(-(soft * log_p).sum(axis=1)))


def loss_of(logits, loss, smoothing, reduction="mean"):
    return float(compute_loss(paddle.to_tensor(logits), paddle.to_tensor(LABELS), loss, reduction=reduction,
                              label_smoothing=smoothing))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_bce_targets_move_to_one_minus_half_e_and_half_e(smoothing):
    targets = LABELS * (1 - smoothing) + smoothing / 2
    assert loss_of(LOGITS_1, "bce", smoothing) == pytest.approx(numpy_bce(LOGITS_1, targets), rel=1e-5)
    assert loss_of(LOGITS_1, "bce", smoothing, "sum") == pytest.approx(4 * numpy_bce(LOGITS_1, targets), rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_ce_targets_are_the_smoothed_one_hot_rows(smoothing):
    soft = np.eye(2)[LABELS] * (1 - smoothing) + smoothing / 2
    assert loss_of(LOGITS_2, "ce", smoothing) == pytest.approx(numpy_ce(LOGITS_2, soft), rel=1e-5)


def test_smoothing_stops_pushing_a_confident_right_answer():
    """Without smoothing a larger right logit always lowers the loss; with it the loss has a minimum."""
    logits = np.array([[4.0], [-4.0], [4.0], [-4.0]], dtype=np.float32)
    assert loss_of(logits * 2, "bce", 0.0) < loss_of(logits, "bce", 0.0)
    assert loss_of(logits * 2, "bce", 0.2) > loss_of(logits, "bce", 0.2)
    # the gradient vanishes where sigmoid(z) = 1 - e/2, i.e. z = log((1 - e/2) / (e/2))
    best = np.log(0.9 / 0.1)
    tensor = paddle.to_tensor(np.array([[best]], dtype=np.float32), stop_gradient=False)
    compute_loss(tensor, paddle.to_tensor(np.array([1])), "bce", label_smoothing=0.2).backward()
    assert abs(float(tensor.grad.numpy().item())) < 1e-6


@pytest.mark.parametrize("value, message", [(1.0, "label_smoothing = 1.0"), (-0.1, "label_smoothing = -0.1"),
                                            ("lots", "label_smoothing = 'lots'")])
def test_bad_values_are_one_config_error(value, message):
    with pytest.raises(ConfigError, match=message):
        cfg.resolve({"arch": "squeezenet1_1", "label_smoothing": value})


def test_a_run_records_it_and_it_changes_the_training(tmp_path):
    data = make_synthetic_palm(tmp_path / "data", n_train=8, n_valid=4, image_size=40, seed=2)

    def run(name, smoothing):
        train(cfg.resolve(tiny_settings(data, tmp_path / name, label_smoothing=smoothing)), echo=False)
        return weights(tmp_path / name)

    plain, smoothed = run("plain", 0.0), run("smoothed", 0.2)
    assert cfg.load_run_config(tmp_path / "smoothed" / "best_model.pdparams")["label_smoothing"] == 0.2
    assert cfg.load_run_config(tmp_path / "plain" / "best_model.pdparams")["label_smoothing"] == 0.0
    assert any(not np.array_equal(plain[k], smoothed[k]) for k in plain)


def tiny_settings(data, out, **overrides):
    return {"arch": "squeezenet1_1", "data_dir": str(data), "image_size": 32, "batch_size": 4, "epochs": 1,
            "output_dir": str(out), "progress": False, "visualdl": False, "seed": 3, **overrides}


def weights(run_dir):
    return {k: v.numpy() for k, v in paddle.load(str(run_dir / "latest.pdparams")).items()}


# --------------------------------------------------------------------------- mixup


def test_mixup_plan_follows_the_seed_step_and_process():
    lam, perm = mixup_plan(0.2, 8, seed=1, step=5)
    again = mixup_plan(0.2, 8, seed=1, step=5)
    assert lam == again[0] and np.array_equal(perm, again[1])
    assert 0.0 <= lam <= 1.0 and sorted(perm) == list(range(8))
    others = [mixup_plan(0.2, 8, seed=s, step=t, rank=r) for s, t, r in ((2, 5, 0), (1, 6, 0), (1, 5, 1))]
    assert all(o[0] != lam for o in others)
    # Beta(0.2, 0.2) puts most of its weight near 0 and 1; Beta(8, 8) near 0.5.
    draws = np.array([mixup_plan(0.2, 4, seed=0, step=t)[0] for t in range(400)])
    assert np.mean((draws < 0.1) | (draws > 0.9)) > 0.5
    assert abs(np.mean([mixup_plan(8.0, 4, seed=0, step=t)[0] for t in range(400)]) - 0.5) < 0.03


class Linear(paddle.nn.Layer):
    def __init__(self, outputs):
        super().__init__()
        self.fc = paddle.nn.Linear(12, outputs)

    def forward(self, x):
        return self.fc(x.reshape([x.shape[0], -1]))


@pytest.mark.parametrize("loss, outputs", [("bce", 1), ("ce", 2)])
def test_a_mixed_step_blends_the_images_and_the_two_losses(loss, outputs):
    paddle.seed(0)
    model = Linear(outputs)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    lam, perm = 0.7, np.array([2, 0, 3, 1])
    value, logits = make_train_step(model, loss, label_smoothing=0.1)(paddle.to_tensor(images),
                                                                       paddle.to_tensor(LABELS), (lam, perm))
    blended = lam * images + (1 - lam) * images[perm]
    expected_logits = model(paddle.to_tensor(blended))
    np.testing.assert_allclose(logits.numpy(), expected_logits.numpy(), rtol=1e-5, atol=1e-6)
    expected = (lam * compute_loss(expected_logits, paddle.to_tensor(LABELS), loss, label_smoothing=0.1)
                + (1 - lam) * compute_loss(expected_logits, paddle.to_tensor(LABELS[perm]), loss, label_smoothing=0.1))
    assert float(value) == pytest.approx(float(expected), rel=1e-5)
    plain, _ = make_train_step(model, loss, label_smoothing=0.1)(paddle.to_tensor(images), paddle.to_tensor(LABELS))
    assert float(plain) != pytest.approx(float(value), rel=1e-3)


def test_a_mixup_run_resumes_exactly_and_differs_from_a_plain_one(tmp_path):
    data = make_synthetic_palm(tmp_path / "data", n_train=8, n_valid=4, image_size=40, seed=2)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(cfg.resolve(tiny_settings(data, straight, epochs=2, mixup=0.4)), echo=False)
    train(cfg.resolve(tiny_settings(data, split, epochs=1, mixup=0.4)), echo=False)
    train(cfg.resolve_resume(split, {"epochs": 2, "progress": False}), resume_dir=split, echo=False)
    a, b = weights(straight), weights(split)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert cfg.load_run_config(straight / "best_model.pdparams")["mixup"] == 0.4
    train(cfg.resolve(tiny_settings(data, tmp_path / "plain", epochs=2)), echo=False)
    plain = weights(tmp_path / "plain")
    assert any(not np.array_equal(a[k], plain[k]) for k in a)


def test_command_line_option():
    out = subprocess.run([sys.executable, "tools/train.py", "--arch", "senet18", "--label-smoothing", "0.1",
                          "--print-config"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "label_smoothing: 0.1" in out.stdout
    bad = subprocess.run([sys.executable, "tools/train.py", "--arch", "senet18", "--label-smoothing", "2",
                          "--print-config"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--label-smoothing" in bad.stderr and "Traceback" not in bad.stderr
    mixed = subprocess.run([sys.executable, "tools/train.py", "--arch", "senet18", "--mixup", "0.2", "--print-config"],
                           capture_output=True, text=True, cwd=REPO)
    assert mixed.returncode == 0 and "mixup: 0.2" in mixed.stdout, mixed.stderr
    negative = subprocess.run([sys.executable, "tools/train.py", "--arch", "senet18", "--mixup", "-1"],
                              capture_output=True, text=True, cwd=REPO)
    assert negative.returncode == 2 and "--mixup" in negative.stderr and "Traceback" not in negative.stderr
