"""The fluid 1.8 API on Paddle 3 against the golden files of a real PaddlePaddle 1.8.5 (FLUID_1_8.md).

``tests/golden/fluid/api.json`` was written by ``tools/make_fluid_golden.py`` running on
PaddlePaddle 1.8.5; here the very same case functions run on legacy_fluid and must give
the same results: structure, shapes, strings and flags exactly, numbers to float32
precision (rtol 1e-6; Adam's kernel rounds differently in the 7th digit: 1e-5).

The explicit tests below spell out the numbers-changing 1.8 rules (FLUID_1_8.md section
0) as examples of use.
"""

import importlib.util
import json
import math

import numpy as np
import paddle
import pytest

import legacy_fluid

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "fluid"


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


@pytest.fixture(scope="module")
def golden_api():
    with open(GOLDEN / "api.json") as fh:
        return json.load(fh)


def assert_same(ours, golden, path="", rtol=1e-6, atol=1e-7):
    """Recursive comparison: containers and non-floats exactly, floats to ``rtol``/``atol``."""
    if isinstance(golden, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(golden), f"{path}: keys {sorted(ours)}"
        for key in golden:
            assert_same(ours[key], golden[key], f"{path}.{key}", rtol, atol)
    elif isinstance(golden, list):
        assert isinstance(ours, list) and len(ours) == len(golden), f"{path}: {ours!r} != {golden!r}"
        for i, (a, b) in enumerate(zip(ours, golden)):
            assert_same(a, b, f"{path}[{i}]", rtol, atol)
    elif isinstance(golden, float) and not isinstance(golden, bool):
        assert math.isclose(ours, golden, rel_tol=rtol, abs_tol=atol), f"{path}: {ours!r} != {golden!r}"
    else:
        assert ours == golden, f"{path}: {ours!r} != {golden!r}"


TOLERANCES = {"optimizers": 1e-5}


@pytest.mark.parametrize("case", sorted(tool.API_CASES))
def test_api_case_matches_paddle_1_8_5(fluid, golden_api, case):
    ours = tool.run_api_cases(fluid, [case])[case]
    assert_same(ours, golden_api[case], case, rtol=TOLERANCES.get(case, 1e-6))


def test_golden_api_file_comes_from_paddle_1_8_5(golden_api):
    assert golden_api["_generated_by"] == {"paddle": "1.8.5", "python": "3.7"}


# ---- the numbers-changing rules, spelled out (FLUID_1_8.md section 0)


def test_pool2d_strides_by_one_unless_told(fluid):
    with fluid.dygraph.guard():
        x = fluid.dygraph.to_variable(np.arange(16, dtype="float32").reshape(1, 1, 4, 4))
        assert list(fluid.dygraph.Pool2D(pool_size=2)(x).shape) == [1, 1, 3, 3]
        assert list(fluid.dygraph.Pool2D(pool_size=2, pool_stride=2)(x).shape) == [1, 1, 2, 2]
        with pytest.raises(ValueError, match="Unknown pool_type"):
            fluid.dygraph.Pool2D(2, pool_type="min")


def test_dropout_downgrades_in_infer_and_follows_the_global_flag(fluid):
    with fluid.dygraph.guard():
        x = fluid.dygraph.to_variable(np.ones([10, 100], dtype="float32"))
        train = fluid.layers.dropout(x, 0.4, is_test=True).numpy()  # is_test is ignored in dygraph
        assert set(np.unique(train)) <= {0.0, 1.0} and (train == 0).any()
        net = fluid.dygraph.Linear(2, 2)
        net.eval()
        np.testing.assert_allclose(fluid.layers.dropout(x, 0.4).numpy(), 0.6, rtol=1e-6)
        net.train()
        with fluid.dygraph.no_grad():
            np.testing.assert_allclose(fluid.layers.dropout(x, 0.4).numpy(), 0.6, rtol=1e-6)


def test_backward_overwrites_grads_and_eval_stops_recording(fluid):
    with fluid.dygraph.guard():
        lin = fluid.dygraph.Linear(1, 1, param_attr=fluid.initializer.Constant(2.0), bias_attr=False)
        for value in (1.0, 3.0):
            fluid.layers.reduce_sum(lin(fluid.dygraph.to_variable(np.array([[value]], "float32")))).backward()
        assert lin.weight.gradient().tolist() == [[3.0]]  # paddle 3 alone would give 4
        lin.eval()
        assert lin(fluid.dygraph.to_variable(np.ones([1, 1], "float32"))).stop_gradient
        lin.train()


def test_lr_decay_steps_once_per_minimize_in_float32(fluid):
    with fluid.dygraph.guard():
        lin = fluid.dygraph.Linear(1, 1)
        opt = fluid.optimizer.Momentum(fluid.dygraph.PolynomialDecay(0.01, 5, 0.001), 0.9,
                                       parameter_list=lin.parameters())
        seen = []
        for _ in range(3):
            loss = fluid.layers.mean(lin(fluid.dygraph.to_variable(np.ones([1, 1], "float32"))))
            loss.backward()
            opt.minimize(loss)
            lin.clear_gradients()
            seen.append(float(opt.current_step_lr()))
    assert seen[0] == pytest.approx(0.01) and seen[1] == pytest.approx(0.0082000000402, abs=1e-12)
    with pytest.raises(TypeError, match="float or LearningRateDecay"):
        fluid.optimizer.SGD(1, parameter_list=lin.parameters())
    with pytest.raises(AttributeError, match="parameter_list"):
        fluid.optimizer.SGD(0.1)


def test_shapes_losses_and_accuracy_rules(fluid):
    with fluid.dygraph.guard():
        x = fluid.dygraph.to_variable(np.arange(24, dtype="float32").reshape(2, 3, 4))
        assert fluid.layers.mean(x).numpy().shape == (1,)
        assert list(fluid.layers.flatten(x, axis=2).shape) == [6, 4]
        assert fluid.layers.argmax(x).numpy().shape == (3, 4)  # axis 0 by default
        assert list(fluid.layers.elementwise_add(x, fluid.dygraph.to_variable(np.ones(3, "float32")), axis=1)
                    .shape) == [2, 3, 4]
        p = fluid.dygraph.to_variable(np.array([[0.25, 0.75]], "float32"))
        label = fluid.dygraph.to_variable(np.array([[1]], "int64"))
        assert fluid.layers.cross_entropy(p, label).numpy().tolist() == [[pytest.approx(-math.log(0.75))]]
        with pytest.raises(ValueError, match="int64"):
            fluid.layers.accuracy(p, fluid.dygraph.to_variable(np.array([[1]], "int32")))
        with pytest.raises(ValueError, match="must be 2"):
            fluid.layers.accuracy(p, fluid.dygraph.to_variable(np.array([1], "int64")))
        assert fluid.layers.leaky_relu(fluid.dygraph.to_variable(np.array([-1.0], "float32"))).numpy()[0] == \
            pytest.approx(-0.02)


def test_save_dygraph_suffix_rule_and_interop_with_paddle_load(fluid, tmp_path):
    with fluid.dygraph.guard():
        lin = fluid.dygraph.Linear(3, 2)
        opt = fluid.optimizer.Adam(0.01, parameter_list=lin.parameters())
        loss = fluid.layers.mean(lin(fluid.dygraph.to_variable(np.ones([1, 3], "float32"))))
        loss.backward()
        opt.minimize(loss)
        fluid.save_dygraph(lin.state_dict(), str(tmp_path / "ckpt"))
        fluid.save_dygraph(opt.state_dict(), str(tmp_path / "ckpt"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pdopt", "ckpt.pdparams"]
        params, opt_state = fluid.load_dygraph(str(tmp_path / "ckpt"))
        assert sorted(params) == ["bias", "weight"] and "linear_0.w_0_moment1_0" in opt_state
        with pytest.raises(RuntimeError, match="not found|Can't find"):
            fluid.dygraph.Linear(3, 2).set_dict({"weight": params["weight"]})
    modern = paddle.load(str(tmp_path / "ckpt.pdparams"))
    np.testing.assert_array_equal(modern["weight"].numpy(), params["weight"])
