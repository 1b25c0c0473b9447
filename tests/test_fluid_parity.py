"""SPEC 4 parity, three ways: real PaddlePaddle 1.8.5 (golden) == legacy_fluid == paddle_palm.

For SENet18 (SPEC 2.1, 224x224, batch 1) and ResNet-50 (SPEC 2.4, 64x64, batch 2), from
the same seeded weights (``tools/make_fluid_golden.seeded_array``, copied by the name
mapping of ``legacy_fluid.models.mapping``) and the same seeded batch:

* output shapes, trainable and BatchNorm-statistic parameter counts: equal;
* outputs after copying the weights: relative difference <= 1e-5 (after 5 training steps,
  which carry the steps' rounding differences: 1e-4);
* the loss on the batch, the learning rate of every ``PolynomialDecay`` step
  (``0.005 -> 0.001`` over 102.5 steps, SPEC 2.4) and the parameters after Momentum
  steps: one step in full train mode (batch statistics) and 1 and 5 steps with frozen
  BatchNorm statistics (see ``run_model_protocol`` for why), compared through per-tensor
  digests (sum and L2 norm of each parameter and of its change);
* a ``save_dygraph`` checkpoint loads into the modern model and gives the same outputs.

Tolerances (the measured maxima are one to three orders of magnitude below): parameters
rtol 1e-5 of the tensor's norm; their changes rtol 2e-3 of the change's norm for L2 and
5e-2 for the (cancelling) sums, plus 1e-6 of the tensor's norm (a conv bias in front of a
train-mode BatchNorm gets a zero gradient up to rounding); losses and learning rates rtol
1e-5.  SENet18 runs about 27 GMAC per forward pass, so the default run checks its first
frozen-BN step (the train-mode step is checked on ResNet-50); its five-step run is marked slow.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import legacy_fluid

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "fluid"
OUTPUT_RTOL = 1e-5
#: outputs after 5 training steps carry the steps' rounding differences (measured: 1.3e-5 on ResNet-50)
TRAINED_OUTPUT_RTOL = 1e-4


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_fluid_golden", ROOT / "tools" / "make_fluid_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture
def fluid():
    with legacy_fluid.installed() as module:
        yield module


def golden(arch):
    with open(GOLDEN / f"{arch}.json") as fh:
        return json.load(fh)


def assert_close_list(ours, reference, rtol, what):
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, what
    scale = np.maximum(np.abs(reference), 1e-12)
    worst = float(np.max(np.abs(ours - reference) / scale)) if ours.size else 0.0
    assert worst <= rtol, f"{what}: max relative difference {worst:.3g} > {rtol}"
    return worst


def assert_digests_close(ours, reference, what):
    """Compare ``{key: [sum, l2, delta_sum, delta_l2]}`` digests (see the module docstring)."""
    assert sorted(ours) == sorted(reference), what
    for key, ref in reference.items():
        got = ours[key]
        norm, delta_norm = abs(ref[1]), abs(ref[3])
        floor = 1e-6 * norm + 1e-9
        checks = (
            (got[0], ref[0], 1e-5 * norm + 1e-9, "sum"),
            (got[1], ref[1], 1e-5 * norm + 1e-9, "L2"),
            (got[2], ref[2], 5e-2 * delta_norm + floor, "change sum"),
            (got[3], ref[3], 2e-3 * delta_norm + floor, "change L2"),
        )
        for value, expected, tol, name in checks:
            assert abs(value - expected) <= tol, f"{what} {key} {name}: {value!r} vs {expected!r} (tol {tol:.3g})"


# ---------------------------------------------------------------- the modern leg


def build_modern(arch):
    from paddle_palm.models import build_model

    return build_model(arch)


def load_modern_weights(arch, model, legacy_state):
    """Copy a legacy-keyed state (numpy arrays) into a paddle_palm model through the mapping."""
    from legacy_fluid.models import mapping

    modern_state = mapping.legacy_to_modern(arch, legacy_state)
    own = model.state_dict()
    assert sorted(own) == sorted(modern_state), "the name mapping must cover exactly the modern state dict"
    for key, value in modern_state.items():
        assert list(own[key].shape) == list(np.shape(value)), key
        own[key].set_value(np.asarray(value))


def modern_digests(arch, model, initial):
    from legacy_fluid.models import mapping

    return {mapping.modern_to_legacy_key(arch, key): tool.digest(value.numpy(), initial[mapping.modern_to_legacy_key(
        arch, key)]) for key, value in model.state_dict().items()}


def modern_train_steps(arch, model, images, labels, steps, digest_steps, initial, frozen_bn):
    """The protocol's ``_train_steps`` with the modern API and paddle_palm's schedule (set before each update)."""
    from paddle_palm.engine.optim import LearningRateSchedule

    model.train()
    norms = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]
    for layer in norms:
        layer._use_global_stats = True if frozen_bn else None
    lr0, decay_steps, end = tool.POLY_LR
    # paddle.optimizer.lr.PolynomialDecay refuses the seed's fractional decay_steps (102.5)
    schedule = LearningRateSchedule("polynomial", lr0, steps_per_epoch=steps, epochs=1, end_lr=end,
                                    decay_steps=decay_steps)
    opt = paddle.optimizer.Momentum(learning_rate=lr0, momentum=0.9, parameters=model.parameters())
    img, label = paddle.to_tensor(images), paddle.to_tensor(labels)
    losses, lrs, digests = [], [], {}
    for step in range(1, steps + 1):
        loss = F.binary_cross_entropy_with_logits(model(img), label)
        loss.backward()
        opt.set_lr(schedule.lr(step - 1))
        lrs.append(tool.f32(opt.get_lr()))
        opt.step()
        opt.clear_grad()
        losses.append(tool.f32(loss.numpy()))
        if step in digest_steps:
            digests[str(step)] = modern_digests(arch, model, initial)
    for layer in norms:
        layer._use_global_stats = None
    return {"losses": losses, "lrs": lrs, "digests": digests}


def run_modern_protocol(arch, steps, digest_steps, batch_stats_step=True, checkpoint=None):
    """The protocol on ``paddle_palm``'s model; starting weights seeded, or read from a legacy ``checkpoint``."""
    settings = tool.MODEL_SETTINGS[arch]
    model = build_modern(arch)
    legacy_keys = golden(arch)["state_keys"]
    from legacy_fluid.models import mapping

    shapes = {mapping.modern_to_legacy_key(arch, k): v.shape for k, v in model.state_dict().items()}
    initial = {key: tool.seeded_array(key, shapes[key]) for key in legacy_keys}
    if checkpoint is None:
        load_modern_weights(arch, model, initial)
    else:  # a save_dygraph file of the legacy model, read by Paddle 3
        loaded = paddle.load(str(checkpoint), return_numpy=True)
        assert sorted(loaded) == sorted(legacy_keys)
        load_modern_weights(arch, model, loaded)
    images, labels = tool.seeded_batch(settings["input_shape"])
    result = {}
    model.eval()
    out = model(paddle.to_tensor(images))
    result["output_shape"] = list(out.shape)
    result["eval_output_initial"] = tool.flist(out.numpy())
    if batch_stats_step:
        result["batch_stats_step"] = modern_train_steps(arch, model, images, labels, 1, [1], initial, False)
        load_modern_weights(arch, model, initial)
    result["frozen_bn"] = modern_train_steps(arch, model, images, labels, steps, digest_steps, initial, True)
    model.eval()
    if steps == settings["steps"]:  # the golden's final outputs are after the full run
        result["eval_output_final"] = tool.flist(model(paddle.to_tensor(images)).numpy())
    return model, result


def modern_counts(model):
    trainable = sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
    stats = sum(int(np.prod(v.shape)) for k, v in model.state_dict().items()
                if k.endswith("._mean") or k.endswith("._variance"))
    return {"trainable": trainable, "bn_statistics": stats, "state_tensors": len(model.state_dict())}


# ---------------------------------------------------------------- the comparisons


def compare_protocols(ours, reference, steps, what):
    assert ours["output_shape"] == reference["output_shape"], what
    assert_close_list(ours["eval_output_initial"], reference["eval_output_initial"], OUTPUT_RTOL,
                      f"{what} eval outputs")
    phases = ["frozen_bn"] + (["batch_stats_step"] if "batch_stats_step" in ours else [])
    for phase in phases:
        n = len(ours[phase]["losses"])
        assert_close_list(ours[phase]["losses"], reference[phase]["losses"][:n], 1e-5, f"{what} {phase} losses")
        assert_close_list(ours[phase]["lrs"], reference[phase]["lrs"][:n], 1e-6, f"{what} {phase} lrs")
        for step, digest in ours[phase]["digests"].items():
            assert_digests_close(digest, reference[phase]["digests"][step], f"{what} {phase} step {step}")
    if len(ours["frozen_bn"]["losses"]) == steps:
        assert_close_list(ours["eval_output_final"], reference["eval_output_final"], TRAINED_OUTPUT_RTOL,
                          f"{what} outputs after training")


def test_golden_protocol_settings():
    for arch in ("senet18", "resnet50"):
        ref = golden(arch)
        assert ref["_generated_by"] == {"paddle": "1.8.5", "python": "3.7"}
        assert ref["input_shape"] == tool.MODEL_SETTINGS[arch]["input_shape"]
        lr0, decay_steps, end = tool.POLY_LR
        expected = [(lr0 - end) * (1 - n / decay_steps) + end for n in range(5)]
        assert_close_list(ref["frozen_bn"]["lrs"], expected, 1e-6, f"{arch} lrs follow PolynomialDecay")
        assert ref["checkpoint_files"] == [f"{arch}.pdopt", f"{arch}.pdparams"]


def test_resnet50_three_way(fluid, tmp_path):
    reference = golden("resnet50")
    legacy = tool.run_model_protocol(fluid, "resnet50", workdir=tmp_path)
    assert legacy["counts"] == reference["counts"]
    assert legacy["state_keys"] == reference["state_keys"]
    assert legacy["checkpoint_files"] == reference["checkpoint_files"]
    assert legacy["optimizer_state_keys"] == reference["optimizer_state_keys"]
    compare_protocols(legacy, reference, 5, "legacy resnet50")

    model, modern = run_modern_protocol("resnet50", 5, [1, 5])
    assert modern_counts(model) == reference["counts"]
    assert reference["counts"]["trainable"] == 23510081  # SPEC 2.4 / paddle.vision with one output
    compare_protocols(modern, reference, 5, "modern resnet50")

    # the legacy checkpoint (written by save_dygraph after training) loads into the modern model
    check_checkpoint_loads_into_modern("resnet50", tmp_path / "resnet50.pdparams", reference)


def check_checkpoint_loads_into_modern(arch, path, reference):
    from legacy_fluid.models import mapping

    state = paddle.load(str(path))
    model = build_modern(arch)
    model.set_state_dict(mapping.legacy_to_modern(arch, state))
    model.eval()
    images, _ = tool.seeded_batch(tool.MODEL_SETTINGS[arch]["input_shape"])
    out = tool.flist(model(paddle.to_tensor(images)).numpy())
    assert_close_list(out, reference["eval_output_final"], TRAINED_OUTPUT_RTOL, f"{arch} checkpoint in paddle_palm")


def test_senet18_three_way_one_step(fluid, tmp_path):
    """SENet18's first frozen-BN step; the modern model starts from the legacy model's ``save_dygraph`` file."""
    reference = golden("senet18")
    legacy = tool.run_model_protocol(fluid, "senet18", steps=1, digest_steps=[1], workdir=tmp_path,
                                     batch_stats_step=False, final_eval=False, save_initial=tmp_path / "initial")
    assert legacy["counts"] == reference["counts"]
    assert legacy["state_keys"] == reference["state_keys"]
    compare_protocols(legacy, reference, 5, "legacy senet18")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initial.pdparams"]

    model, modern = run_modern_protocol("senet18", 1, [1], batch_stats_step=False,
                                        checkpoint=tmp_path / "initial.pdparams")
    assert modern_counts(model) == reference["counts"]
    compare_protocols(modern, reference, 5, "modern senet18")


def test_senet18_mixed_style_equals_pure_style(fluid):
    """The seed's paddle.nn + fluid Linear network computes what the pure 1.8 one does."""
    from legacy_fluid.models import senet_mixed

    reference = golden("senet18")
    model = senet_mixed.SENet18()
    state = model.state_dict()
    assert list(state) == reference["state_keys"]
    model.set_state_dict({k: tool.seeded_array(k, v.shape) for k, v in state.items()})
    model.eval()
    images, _ = tool.seeded_batch(tool.MODEL_SETTINGS["senet18"]["input_shape"])
    out = tool.flist(model(paddle.to_tensor(images)).numpy())
    assert_close_list(out, reference["eval_output_initial"], OUTPUT_RTOL, "mixed-style senet18")
    assert isinstance(model.out, fluid.dygraph.Linear) and list(model.out.weight.shape) == [10, 1]
    bound = 1 / math.sqrt(25088)
    assert float(paddle.abs(senet_mixed.SENet18().out.weight).max()) <= bound


@pytest.mark.slow
def test_senet18_three_way_five_steps(fluid, tmp_path):
    reference = golden("senet18")
    legacy = tool.run_model_protocol(fluid, "senet18", workdir=tmp_path)
    compare_protocols(legacy, reference, 5, "legacy senet18")
    _, modern = run_modern_protocol("senet18", 5, [1, 5])
    compare_protocols(modern, reference, 5, "modern senet18")
    check_checkpoint_loads_into_modern("senet18", tmp_path / "senet18.pdparams", reference)
