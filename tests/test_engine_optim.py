"""Learning-rate schedules (against the formulas of the seeds and Paddle's own schedulers) and the EMA."""

import math

import numpy as np
import paddle
import pytest

from paddle_palm.engine import config as cfg
from paddle_palm.engine.optim import LearningRateSchedule, ModelEMA, build_optimizer


def test_polynomial_is_seed_001_per_batch():
    # SPEC 2.4: PolynomialDecay(0.005, decay_steps=102.5, end_lr=0.001), power 1, one step per batch.
    s = LearningRateSchedule("polynomial", 0.005, steps_per_epoch=40, epochs=10, end_lr=0.001, decay_steps=102.5)
    assert s.lr(0) == pytest.approx(0.005)
    assert s.lr(50) == pytest.approx((0.005 - 0.001) * (1 - 50 / 102.5) + 0.001)
    assert s.lr(102) > 0.001
    assert s.lr(103) == pytest.approx(0.001) and s.lr(400) == pytest.approx(0.001)


def test_polynomial_matches_paddle_with_integer_steps():
    ref = paddle.optimizer.lr.PolynomialDecay(0.01, decay_steps=20, end_lr=0.0001, power=2.0)
    s = LearningRateSchedule("polynomial", 0.01, steps_per_epoch=5, epochs=6, end_lr=0.0001, decay_steps=20, power=2.0)
    for step in range(30):
        assert s.lr(step) == pytest.approx(ref.last_lr, rel=1e-9)
        ref.step()


def test_cosine_matches_paddle_and_ends_at_end_lr():
    ref = paddle.optimizer.lr.CosineAnnealingDecay(0.1, T_max=12, eta_min=0.001)
    s = LearningRateSchedule("cosine", 0.1, steps_per_epoch=3, epochs=4, end_lr=0.001)
    for step in range(12):
        assert s.lr(step) == pytest.approx(ref.last_lr, rel=1e-6)
        ref.step()
    assert s.lr(12) == pytest.approx(0.001)


def test_multistep_and_warmup():
    s = LearningRateSchedule("multistep", 0.1, steps_per_epoch=4, epochs=10, milestones=[2, 5], gamma=0.5)
    assert [s.lr(e * 4) for e in range(7)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])
    w = LearningRateSchedule("constant", 0.2, steps_per_epoch=5, epochs=3, warmup_epochs=1)
    assert [w.lr(i) for i in range(6)] == pytest.approx([0.04, 0.08, 0.12, 0.16, 0.2, 0.2])


def test_plateau_matches_paddle_reduce_on_plateau():
    # SPEC 2.2: ReduceLROnPlateau(mode min, factor 0.94, patience 1, min_lr 1e-6), on the validation loss.
    ref = paddle.optimizer.lr.ReduceOnPlateau(0.1, mode="min", factor=0.5, patience=1, min_lr=0.02)
    s = LearningRateSchedule("plateau", 0.1, steps_per_epoch=3, epochs=20, plateau_factor=0.5, plateau_patience=1,
                             min_lr=0.02)
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    for loss in losses:
        ref.step(loss)
        s.end_epoch(loss)
        assert s.lr(0) == pytest.approx(ref.last_lr)
    assert s.lr(0) == pytest.approx(0.02)
    # The state survives a round trip (a resumed run continues the same schedule).
    t = LearningRateSchedule("plateau", 0.1, steps_per_epoch=3, epochs=20)
    t.set_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()


def test_schedule_from_resolved_config():
    c = cfg.resolve({"arch": "resnet50"})
    s = LearningRateSchedule.from_config(c, steps_per_epoch=40)
    assert s.lr(0) == pytest.approx(0.005) and s.lr(200) == pytest.approx(0.001)


@pytest.mark.parametrize("name, kind", [("momentum", paddle.optimizer.Momentum), ("sgd", paddle.optimizer.SGD),
                                        ("adam", paddle.optimizer.Adam), ("adamw", paddle.optimizer.AdamW)])
def test_build_optimizer(name, kind):
    layer = paddle.nn.Linear(3, 1)
    c = dict(cfg.BASE_DEFAULTS, optimizer=name, lr=0.01, weight_decay=1e-4, grad_clip=1.0)
    opt = build_optimizer(c, layer.parameters())
    assert isinstance(opt, kind) and opt.get_lr() == pytest.approx(0.01)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_adamw_decouples_the_weight_decay(name):
    # The first Adam step moves every weight by the rate times the sign of its gradient; AdamW
    # also takes rate * decay of the weight off it, Adam with L2 only adds decay * w to the gradient.
    paddle.seed(0)
    layer = paddle.nn.Linear(3, 1)
    start = layer.weight.numpy().copy()
    c = dict(cfg.BASE_DEFAULTS, optimizer=name, lr=0.1, weight_decay=0.5)
    opt = build_optimizer(c, layer.parameters())
    x = paddle.to_tensor(np.array([[1.0, -2.0, 0.5]], dtype="float32"))
    layer(x).sum().backward()
    opt.step()
    grad = x.numpy().reshape(3, 1)
    if name == "adamw":
        expected = start * (1 - 0.1 * 0.5) - 0.1 * np.sign(grad)
    else:
        expected = start - 0.1 * np.sign(grad + 0.5 * start)
    np.testing.assert_allclose(layer.weight.numpy(), expected, rtol=0, atol=1e-5)


def test_ema_follows_the_weights():
    paddle.seed(0)
    layer = paddle.nn.Sequential(paddle.nn.Linear(2, 2), paddle.nn.BatchNorm1D(2))
    ema = ModelEMA(layer, decay=0.5)
    start = layer[0].weight.numpy().copy()
    with paddle.no_grad():
        layer[0].weight.set_value(paddle.zeros([2, 2]))
    ema.update(layer)  # d = min(0.5, 2/11)
    d = 2 / 11
    assert np.allclose(ema.shadow["0.weight"].numpy(), start * d)
    with ema.swapped_into(layer):
        assert np.allclose(layer[0].weight.numpy(), start * d)
    assert np.allclose(layer[0].weight.numpy(), 0.0)  # restored after the block
    assert math.isclose(ema.state_dict()["updates"], 1)


def test_ema_restored_from_arrays_updates_its_own_copies():
    """A resumed average (arrays from the checkpoint file) becomes tensors of its own."""
    layer = paddle.nn.Linear(2, 2)
    saved = {k: v.numpy().copy() for k, v in layer.state_dict().items()}
    original = saved["weight"].copy()
    ema = ModelEMA(layer, decay=0.5)
    ema.set_state_dict({"shadow": saved, "updates": 100})
    with paddle.no_grad():
        layer.weight.set_value(paddle.zeros([2, 2]))
    ema.update(layer)
    assert np.allclose(ema.shadow["weight"].numpy(), saved["weight"] * 0.5)
    assert np.array_equal(saved["weight"], original)  # the loaded arrays are not written to
    assert ema.updates == 101
