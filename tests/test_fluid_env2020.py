"""What a 2020 program gets from legacy_fluid besides the fluid API.

* ``.numpy()`` of a one-element 1.8 result keeps shape ``[1]`` and converts with
  ``float()``/``int()``/``%`` formatting as the numpy of 2020 did (numpy 2.4 refuses);
* ``python -m legacy_fluid`` gives the environment of 2020 (:mod:`legacy_fluid.env2020`):
  removed numpy and Pillow names, numpy 1.x scalar printing, shapes printed as lists, no
  warnings 1.8 did not print; a plain ``import legacy_fluid`` / ``install()`` leaves numpy
  and Pillow alone;
* Adam uses 1.8.5's epsilon (added to ``sqrt(moment2)`` unscaled);
* 1.6-era calls fail as on 1.8.
"""

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

import legacy_fluid
from legacy_fluid import Fluid18Array, env2020

ROOT = Path(__file__).resolve().parents[1]


def run_code(tmp_path, code, *runner_args):
    program = tmp_path / "prog.py"
    program.write_text(code)
    return subprocess.run([sys.executable, "-m", "legacy_fluid", *runner_args, str(program)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=180)


def test_one_element_results_convert_like_numpy_of_2020():
    with legacy_fluid.installed() as fluid:
        with fluid.dygraph.guard(fluid.CPUPlace()):
            x = fluid.dygraph.to_variable(np.array([[0.25, 0.75]], dtype="float32"))
            mean = fluid.layers.mean(x)
            acc = fluid.layers.accuracy(x, fluid.dygraph.to_variable(np.array([[1]], dtype="int64")))
            value = mean.numpy()
            assert value.shape == (1,) and acc.numpy().shape == (1,)
            assert isinstance(value, np.ndarray) and type(value) is Fluid18Array
            assert float(value) == 0.5 and int(acc.numpy()) == 1 and complex(value) == 0.5
            assert "%.3f" % value == "0.500" and "{}".format(value) == "[0.5]"
            assert repr(value) == "array([0.5], dtype=float32)"
            assert float(value * 2) == 1.0  # arithmetic keeps the conversion
            assert type(pickle.loads(pickle.dumps(value))) is np.ndarray
            assert type(x.numpy()) is np.ndarray  # more than one element: plain array
            with pytest.raises(TypeError):
                float(np.concatenate([value, value]).view(Fluid18Array))
            assert float(mean) == 0.5
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                float(value)
                fluid.dygraph.Linear(2, 1)  # no deprecation warnings either
    assert type(paddle.to_tensor([1.0]).numpy()) is np.ndarray  # uninstalled: Paddle as before


def test_library_use_leaves_numpy_and_pillow_alone():
    code = ("import numpy as np, PIL.Image as I, legacy_fluid; legacy_fluid.install(); "
            "print(hasattr(np, 'int'), hasattr(I, 'ANTIALIAS'), np.get_printoptions()['legacy'])")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


def test_env2020_apply_and_restore():
    from PIL import Image

    had_int = "int" in np.__dict__
    changed = env2020.apply(shape_lists=False)
    try:
        assert np.int is int and np.float is float and np.object is object and np.bool(1)  # numpy 2 has its own np.bool
        assert Image.ANTIALIAS == Image.LANCZOS
        assert repr([np.float32(0.5)]) == "[0.5]"
        assert "int" in changed or had_int
    finally:
        env2020.restore()
    assert ("int" in np.__dict__) == had_int
    assert not hasattr(Image, "ANTIALIAS") or Image.__dict__.get("ANTIALIAS") is not None
    assert not env2020.applied()


PROGRAM_2020 = """
import numpy as np
from PIL import Image
import paddle.fluid as fluid
with fluid.dygraph.guard():
    x = fluid.dygraph.to_variable(np.ones((2, 3), dtype=np.float32))
    lin = fluid.dygraph.Linear(3, 1)
    loss = fluid.layers.mean(lin(x) * 0.0 + 0.25)
    loss.backward()
    grad = lin.weight.gradient()
    label = np.array([3]).astype(np.int)
    img = Image.new("L", (56, 56), 255).resize((28, 28), Image.ANTIALIAS)
    print(x.shape, [loss.numpy()[0]], grad.shape, label.dtype, img.size, np.asscalar(np.array([2])))
    print("loss %.2f" % loss.numpy(), float(loss.numpy()), type(x.shape).__name__, np.bool(1), np.object)
"""


def test_runner_gives_a_2020_program_its_environment(tmp_path):
    proc = run_code(tmp_path, PROGRAM_2020)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[2, 3] [0.25] (3, 1) int64 (28, 28) 2",
        "loss 0.25 0.25 list True <class 'object'>",
    ]
    assert proc.stderr == ""  # no warning 1.8 did not print


def test_runner_plain_keeps_today_s_numpy(tmp_path):
    proc = run_code(tmp_path, "import numpy as np\nimport paddle.fluid\nprint(hasattr(np, 'int'))\n", "--plain")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_adam_adds_epsilon_unscaled_as_1_8_5():
    """One Adam step on tiny gradients: 1.8.5's ``p -= lr_t * m1 / (sqrt(m2) + eps)``.

    Paddle 2/3 add ``eps * sqrt(1 - beta2^t)`` instead (about 0.03 * eps at the first step),
    which makes steps on gradients near 1e-6 up to 10% longer."""
    g = np.array([[1.0], [1e-3], [1e-6], [3e-7]], dtype="float32")
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    with legacy_fluid.installed() as fluid:
        with fluid.dygraph.guard(fluid.CPUPlace()):
            lin = fluid.dygraph.Linear(4, 1, bias_attr=False)
            lin.set_dict({"weight": np.zeros((4, 1), "float32")})
            opt = fluid.optimizer.Adam(lr, parameter_list=lin.parameters())
            w = np.zeros((4, 1))
            m1 = np.zeros((4, 1))
            m2 = np.zeros((4, 1))
            for t in range(1, 4):
                loss = fluid.layers.reduce_sum(lin(fluid.dygraph.to_variable(g.reshape(1, 4))))
                loss.backward()
                opt.minimize(loss)
                lin.clear_gradients()
                m1 = b1 * m1 + (1 - b1) * g
                m2 = b2 * m2 + (1 - b2) * g * g
                lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                w = w - lr_t * m1 / (np.sqrt(m2) + eps)
                np.testing.assert_allclose(lin.weight.numpy(), w, rtol=2e-5)
            paddle_eps = w - lr_t * m1 / (np.sqrt(m2) + eps * np.sqrt(1 - b2 ** 3))
            assert abs(paddle_eps[3, 0] - w[3, 0]) > 1e-4  # the two rules differ visibly there


def test_1_6_era_calls_fail_as_on_1_8():
    with legacy_fluid.installed() as fluid:
        with fluid.dygraph.guard(fluid.CPUPlace()):
            with pytest.raises(AttributeError, match="parameter_list argument given to the Optimizer should not "
                                                     "be None in dygraph mode"):
                fluid.optimizer.SGD(learning_rate=0.1)
            with pytest.raises(AttributeError, match="module 'paddle.fluid.dygraph' has no attribute 'FC'"):
                fluid.dygraph.FC
            with pytest.raises(TypeError, match="name_scope"):
                fluid.dygraph.Conv2D("conv2d", num_filters=20, filter_size=5)
            with pytest.raises(TypeError, match="name_scope"):
                fluid.dygraph.Linear("fc", 10)
            with pytest.raises(TypeError, match="multiple values for argument 'pool_size'"):
                fluid.dygraph.Pool2D("pool", pool_size=2)
            assert fluid.dygraph.Layer("mnist").full_name() == "mnist_0"  # accepted by 1.8 too
