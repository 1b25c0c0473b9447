"""legacy_fluid: the PaddlePaddle 1.8 ``fluid`` dygraph API re-created on Paddle 3.x (SPEC 3).

The course programs of 2020 were written against ``paddle.fluid`` 1.8, which Paddle 2.6
and 3.x no longer ship.  :func:`install` registers :mod:`legacy_fluid.fluid` as
``paddle.fluid`` (and every submodule, e.g. ``paddle.fluid.dygraph.nn``), so those
programs run unchanged; :func:`uninstall` removes exactly what :func:`install` added::

    import legacy_fluid
    legacy_fluid.install()
    import paddle.fluid as fluid          # the 1.8 API, built on paddle 3.x
    from paddle.fluid.dygraph.nn import Conv2D, Pool2D, Linear

or, for a whole program: ``python -m legacy_fluid course_program.py``.

The 1.8 behaviours that change numbers are reproduced, not approximated (FLUID_1_8.md
section 0); a 1.8 name that is not provided raises :class:`NotProvidedError` naming
it.  ``legacy_fluid.models`` holds the reference SENet18 (SPEC 2.1) and ResNet
(SPEC 2.4) written in the old style.

Known differences from 1.8 (none changes the result of a course program; checked
against a real 1.8.5 by ``tools/make_fluid_golden.py`` and ``tests/test_fluid_*.py``):

* tensor operators (``a * b``, ``a + 1.0``) are Paddle 3's: a tensor of another dtype is
  promoted instead of cast to the left operand's dtype, and an integer tensor times a
  non-integral float gives a float instead of failing (FLUID_1_8.md section 0 #14);
  ``fluid.layers.elementwise_*`` keep 1.8's axis alignment;
* ``tensor.shape`` is Paddle 3's ``paddle.Size`` (a ``list`` subclass: indexing,
  ``len`` and comparisons behave as 1.8's list, printing shows ``paddle.Size([...])``;
  ``python -m legacy_fluid`` prints it as a list, see :mod:`legacy_fluid.env2020`);
* random draws (initializers, dropout masks) come from Paddle 3's generator, so
  seeded programs draw other numbers than 1.8 did;
* the static graph (``Executor``, ``program_guard``, ``fluid.data`` ...) is not provided.

Importing this package does not import Paddle (the reference models also run on a
real PaddlePaddle 1.8.5 under Python 3.7).
"""

import contextlib
import importlib
import pkgutil
import sys

# Paddle 2.6.x's libpaddle.so carries zlib symbols of its own: when Paddle is the first to load zlib,
# OpenCV's and Python's later zlib calls bind to Paddle's copy and crash (SIGSEGV in deflateReset).
# Loading the system zlib before Paddle avoids it; Paddle 3.x keeps its copy private.  The same
# difference is handled for paddle_palm in paddle_palm.compat.load_zlib_before_paddle.
import zlib  # noqa: F401,E402  (the import is the point)

from legacy_fluid._numpy1 import Fluid18Array, as_fluid18
from legacy_fluid._safepickle import UnsafeCheckpointError

__all__ = ["install", "uninstall", "is_installed", "installed", "provided_modules", "NotProvidedError",
           "UnsafeCheckpointError", "Fluid18Array"]

_PREFIX = "paddle.fluid"
_OWN = "legacy_fluid.fluid"

#: What install() changed, so that uninstall() undoes exactly that.
_STATE = {"modules": [], "attr_set": False, "finder": None, "tensor_methods": {}}


def _scalar_of(tensor, kind):
    numel = 1
    for dim in tensor.shape:
        numel *= dim
    if numel != 1:
        raise AssertionError("only one element variable can be converted to {}.".format(kind.__name__))
    return kind(tensor.numpy().reshape(-1)[0])


def _tensor_float(tensor):
    """1.8's ``VarBase.__float__``: any one-element tensor (``[1]`` results included)."""
    return _scalar_of(tensor, float)


def _tensor_int(tensor):
    """1.8's ``VarBase.__int__``: any one-element tensor."""
    return _scalar_of(tensor, int)


def _tensor_numpy(tensor, *args, **kwargs):
    """``Tensor.numpy()``; a one-element result is a :class:`Fluid18Array` (``float()`` works as in 2020)."""
    return as_fluid18(_STATE["tensor_methods"]["numpy"](tensor, *args, **kwargs))


def _tensor_gradient(tensor):
    """1.8's ``VarBase.gradient()``: the gradient as a numpy array, or None; without Paddle's
    deprecation warning (Paddle 2.1 to 3.x deprecate ``gradient()``, 1.8 printed nothing)."""
    grad = tensor.grad
    if grad is None:
        return None
    return _tensor_numpy(grad)


#: Tensor methods given 1.8's behaviour while installed: with numpy 2, Paddle 3 refuses
#: ``float()`` of the ``[1]``-shaped results (means, accuracies) that 1.8 returns, and
#: numpy 2.4 refuses ``float()`` of their ``.numpy()``.
_TENSOR_METHODS = {"__float__": _tensor_float, "__int__": _tensor_int, "numpy": _tensor_numpy,
                   "gradient": _tensor_gradient}


class NotProvidedError(AttributeError, NotImplementedError):
    """A PaddlePaddle 1.8 API (name, argument value or module) that legacy_fluid does not provide.

    It is an ``AttributeError`` (so ``hasattr`` and ``getattr(..., default)`` behave) and a
    ``NotImplementedError``; the message names the call and says it is not provided.
    """


def _own_modules():
    """Import every module of legacy_fluid.fluid and return them by their own name."""
    root = importlib.import_module(_OWN)
    found = {_OWN: root}
    for info in pkgutil.walk_packages(root.__path__, _OWN + "."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf.startswith("_"):
            continue
        found[info.name] = importlib.import_module(info.name)
    return found


class _NotProvidedFinder(object):
    """Meta-path finder: ``import paddle.fluid.X`` of a module we do not provide fails clearly."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_PREFIX + "."):
            raise ModuleNotFoundError(
                "{} is not provided by legacy_fluid (the PaddlePaddle 1.8 dygraph API on Paddle 3.x); "
                "the provided modules are listed by legacy_fluid.provided_modules()".format(fullname),
                name=fullname,
            )
        return None


def provided_modules():
    """Sorted names (as ``paddle.fluid...``) of the modules that :func:`install` registers."""
    return sorted(_PREFIX + name[len(_OWN):] for name in _own_modules())


def is_installed():
    """True while legacy_fluid is registered as ``paddle.fluid``."""
    return bool(_STATE["modules"])


def install():
    """Register legacy_fluid as ``paddle.fluid`` and its submodules; return the fluid module.

    Adds ``sys.modules['paddle.fluid']``, ``sys.modules['paddle.fluid.dygraph']``, ...,
    the attribute ``paddle.fluid``, a finder that makes ``import paddle.fluid.X`` of an
    unprovided module fail with a clear message, and gives tensors 1.8's conversions:
    ``float()``/``int()`` take any one-element tensor (Paddle 3 with numpy 2 refuses
    shape ``[1]``; 0-D tensors behave as before), ``.numpy()`` of a one-element tensor
    is a :class:`Fluid18Array` (shape kept, ``float()`` works on every numpy), and
    ``.gradient()`` prints no deprecation warning.  numpy and Pillow are left alone
    (:mod:`legacy_fluid.env2020` restores their 2020 names on request).  Calling it
    twice is harmless.

    Raises:
        RuntimeError: if a real ``paddle.fluid`` is already importable (Paddle <= 2.5).
    """
    import paddle

    fluid = importlib.import_module(_OWN)
    if is_installed():
        return fluid
    existing = sys.modules.get(_PREFIX)
    if existing is not None and existing is not fluid:
        raise RuntimeError(
            "paddle.fluid already exists (Paddle {}); legacy_fluid is for Paddle versions without it".format(
                paddle.__version__
            )
        )
    added = []
    for own_name, module in sorted(_own_modules().items()):
        alias = _PREFIX + own_name[len(_OWN):]
        if alias not in sys.modules:
            sys.modules[alias] = module
            added.append(alias)
    _STATE["modules"] = added
    if getattr(paddle, "fluid", None) is None:
        paddle.fluid = fluid
        _STATE["attr_set"] = True
    finder = _NotProvidedFinder()
    sys.meta_path.append(finder)
    _STATE["finder"] = finder
    for name, method in _TENSOR_METHODS.items():
        _STATE["tensor_methods"][name] = getattr(paddle.Tensor, name)
        setattr(paddle.Tensor, name, method)
    return fluid


def uninstall():
    """Remove exactly what :func:`install` added (modules, the ``paddle.fluid`` attribute, the finder,
    the tensor methods)."""
    for alias in _STATE["modules"]:
        sys.modules.pop(alias, None)
    _STATE["modules"] = []
    if _STATE["attr_set"]:
        paddle = sys.modules.get("paddle")
        if paddle is not None and hasattr(paddle, "fluid"):
            del paddle.fluid
        _STATE["attr_set"] = False
    finder = _STATE["finder"]
    if finder is not None and finder in sys.meta_path:
        sys.meta_path.remove(finder)
    _STATE["finder"] = None
    if _STATE["tensor_methods"]:
        import paddle

        for name, original in _STATE["tensor_methods"].items():
            setattr(paddle.Tensor, name, original)
        _STATE["tensor_methods"] = {}


@contextlib.contextmanager
def installed():
    """``with legacy_fluid.installed() as fluid:``: the 1.8 API for the block, then Paddle as before.

    Restores on exit what 1.8 programs change globally: the tracer's train and grad flags
    (``Layer.eval()`` switches gradients off, as in 1.8), Paddle's default dtype and
    device, and uninstalls unless the API was installed before the block.  Tests use it
    to run 1.8 code in the same process as modern Paddle code.
    """
    import paddle
    from paddle.base import framework

    was_installed = is_installed()
    tracer = framework._dygraph_tracer()
    saved = (tracer._train_mode, tracer._has_grad, paddle.get_default_dtype(), paddle.get_device())
    try:
        yield install()
    finally:
        tracer = framework._dygraph_tracer()
        tracer._train_mode, tracer._has_grad = saved[0], saved[1]
        paddle.set_default_dtype(saved[2])
        paddle.set_device(saved[3])
        if not was_installed:
            uninstall()
