"""legacy_fluid.install()/uninstall(): ``paddle.fluid`` appears and disappears cleanly (SPEC 3, 5).

Also: every name legacy_fluid exports exists in the real PaddlePaddle 1.8.5 (no invented
API), unprovided 1.8 names fail loudly with their name, and modern Paddle keeps working
in the same process.
"""

import importlib
import subprocess
import sys

import numpy as np
import paddle
import pytest

import legacy_fluid
from legacy_fluid.fluid import _support


@pytest.fixture
def fluid():
    with legacy_fluid.installed() as module:
        yield module


def test_install_registers_paddle_fluid_and_uninstall_removes_exactly_that():
    assert "paddle.fluid" not in sys.modules and not hasattr(paddle, "fluid")
    before = set(sys.modules)
    meta_path = list(sys.meta_path)
    float_before, int_before = paddle.Tensor.__float__, paddle.Tensor.__int__
    fluid = legacy_fluid.install()
    try:
        import paddle.fluid as imported
        from paddle.fluid.dygraph.base import to_variable
        from paddle.fluid.dygraph.nn import Conv2D, Linear, Pool2D  # noqa: F401
        from paddle.fluid.layer_helper import LayerHelper  # noqa: F401

        assert imported is fluid is paddle.fluid
        with fluid.dygraph.guard():
            mean = fluid.layers.mean(fluid.dygraph.to_variable(np.array([1.0, 2.0], "float32")))
            assert "%.2f" % mean == "1.50" and int(mean) == 1  # 1.8 accepted [1]-shaped scalars
            with pytest.raises(AssertionError, match="only one element"):
                float(fluid.dygraph.to_variable(np.ones([2], "float32")))
        assert to_variable is fluid.dygraph.to_variable
        assert Linear is fluid.dygraph.Linear is fluid.Linear
        assert legacy_fluid.is_installed()
        assert legacy_fluid.install() is fluid  # twice is harmless
        assert sorted(k for k in sys.modules if k.startswith("paddle.fluid")) == legacy_fluid.provided_modules()
    finally:
        legacy_fluid.uninstall()
    assert not legacy_fluid.is_installed()
    assert not hasattr(paddle, "fluid")
    assert paddle.Tensor.__float__ is float_before and paddle.Tensor.__int__ is int_before
    assert not [k for k in sys.modules if k.startswith("paddle.fluid")]
    assert sys.meta_path == meta_path
    assert set(sys.modules) - before <= {k for k in sys.modules if k.startswith("legacy_fluid")}
    with pytest.raises(ImportError):
        importlib.import_module("paddle.fluid")


def test_unprovided_module_and_names_raise_naming_the_call(fluid):
    with pytest.raises(ModuleNotFoundError, match=r"paddle\.fluid\.contrib is not provided by legacy_fluid"):
        importlib.import_module("paddle.fluid.contrib")
    with pytest.raises(legacy_fluid.NotProvidedError, match=r"paddle\.fluid\.Executor is not provided.*exists in "
                                                             r"PaddlePaddle 1\.8"):
        fluid.Executor
    with pytest.raises(NotImplementedError, match=r"paddle\.fluid\.layers\.conv3d is not provided"):
        fluid.layers.conv3d
    with pytest.raises(AttributeError, match=r"paddle\.fluid\.dygraph\.FC .*not a name of paddle\.fluid\.dygraph "
                                             r"in PaddlePaddle 1\.8\.5"):
        fluid.dygraph.FC
    assert not hasattr(fluid.optimizer, "LarsMomentum")
    with pytest.raises(legacy_fluid.NotProvidedError, match=r"act='hard_tanh'"):
        fluid.dygraph.Linear(2, 2, act="hard_tanh")(paddle.ones([1, 2]))
    with pytest.raises(legacy_fluid.NotProvidedError, match=r"trainable_statistics=True"):
        fluid.dygraph.BatchNorm(3, trainable_statistics=True)
    with pytest.raises(legacy_fluid.NotProvidedError, match="Optimizer.minimize\\(no_grad_set"):
        lin = fluid.dygraph.Linear(1, 1)
        fluid.optimizer.SGD(0.1, parameter_list=lin.parameters()).minimize(None, no_grad_set={"x"})


def _exported(module):
    return [name for name in getattr(module, "__all__", []) if not name.startswith("_")]


@pytest.mark.parametrize("name", legacy_fluid.provided_modules())
def test_every_exported_name_is_a_real_1_8_name(fluid, name):
    module = importlib.import_module(name)
    real = set(_support.api_1_8(name))
    invented = [n for n in _exported(module) if real and n not in real]
    assert not invented, f"{name} exports names that PaddlePaddle 1.8.5 does not have: {invented}"


def test_modern_paddle_unchanged_while_installed_and_after(fluid):
    # the modern API keeps its own semantics next to the legacy one
    x = paddle.to_tensor(np.arange(16, dtype="float32").reshape(1, 1, 4, 4))
    assert list(paddle.nn.MaxPool2D(2)(x).shape) == [1, 1, 2, 2]
    assert list(fluid.dygraph.Pool2D(2)(x).shape) == [1, 1, 3, 3]
    assert paddle.mean(x).shape == [] and list(fluid.layers.mean(x).shape) == [1]
    w = paddle.create_parameter([1], "float32")
    (w * 1.0).sum().backward()
    (w * 3.0).sum().backward()
    assert w.grad.numpy()[0] == pytest.approx(4.0)  # modern parameters still accumulate


def test_installed_context_restores_global_state():
    tracer = paddle.base.framework._dygraph_tracer()
    before = (tracer._train_mode, tracer._has_grad, paddle.get_default_dtype())
    with legacy_fluid.installed() as fluid:
        with fluid.dygraph.guard():
            model = fluid.dygraph.Linear(2, 2)
            model.eval()  # 1.8: switches gradient recording off globally
            assert not paddle.is_grad_enabled()
        model.eval()
        paddle.set_default_dtype("float64")
    assert (tracer._train_mode, tracer._has_grad, paddle.get_default_dtype()) == before
    assert not legacy_fluid.is_installed()


def test_python_m_legacy_fluid_runs_a_1_8_program(tmp_path, repo_root):
    program = tmp_path / "prog.py"
    program.write_text(
        "import sys\n"
        "import numpy as np\n"
        "import paddle.fluid as fluid\n"
        "with fluid.dygraph.guard():\n"
        "    x = fluid.dygraph.to_variable(np.ones([2, 3], 'float32'))\n"
        "    print(sys.argv[1:], fluid.layers.mean(x).numpy())\n"
    )
    proc = subprocess.run([sys.executable, "-m", "legacy_fluid", str(program), "a", "b"], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['a', 'b'] [1.]"
    missing = subprocess.run([sys.executable, "-m", "legacy_fluid", str(tmp_path / "nope.py")], cwd=repo_root,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "program not found" in missing.stderr
