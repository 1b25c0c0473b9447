"""``paddle.fluid.framework`` of 1.8: the mode queries, programs and variable types.

Paddle 3 always runs eagerly, so ``in_dygraph_mode()`` is True everywhere (in 1.8 it was
True inside ``dygraph.guard()`` only).  ``default_main_program()`` returns a small
:class:`Program` whose ``random_seed`` setter seeds Paddle's global generator, which is
what 1.8 course code uses it for (the random draws differ from 1.8's generator).  The
static-graph machinery (``program_guard``, ``Executor``, ...) is not provided.
"""

import contextlib

import paddle
from paddle.base import framework as _framework

from legacy_fluid.fluid import _support

__all__ = [
    "Program",
    "Variable",
    "Parameter",
    "ParamBase",
    "default_main_program",
    "default_startup_program",
    "in_dygraph_mode",
    "name_scope",
]

#: The 1.8 dygraph variable type; in Paddle 3 every tensor is a ``paddle.Tensor``.
Variable = paddle.Tensor
#: The 1.8 dygraph parameter type (``fluid.framework.ParamBase``).
ParamBase = _framework.EagerParamBase
Parameter = _framework.EagerParamBase


class Program(object):
    """The part of a 1.8 ``Program`` that dygraph code touches: ``random_seed``.

    Setting a non-zero ``random_seed`` calls ``paddle.seed`` (1.8 seeded its own generator).
    """

    def __init__(self):
        self._seed = 0

    @property
    def random_seed(self):
        """The seed last set on this program (0: not set)."""
        return self._seed

    @random_seed.setter
    def random_seed(self, seed):
        if not isinstance(seed, int):
            raise ValueError("Program.random_seed must be set by int type, but received {!r}".format(seed))
        self._seed = seed
        if seed != 0:
            paddle.seed(seed)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _support.not_provided("Program.{}".format(name), "static-graph programs are not provided")


_PROGRAMS = [(Program(), Program())]


def _push_programs():
    _PROGRAMS.append((Program(), Program()))


def _pop_programs():
    if len(_PROGRAMS) > 1:
        _PROGRAMS.pop()


def default_main_program():
    """The current main :class:`Program` (a fresh one inside every ``dygraph.guard()``)."""
    return _PROGRAMS[-1][0]


def default_startup_program():
    """The current startup :class:`Program` (a fresh one inside every ``dygraph.guard()``)."""
    return _PROGRAMS[-1][1]


def in_dygraph_mode():
    """True: Paddle 3 is always in dynamic-graph mode."""
    return True


@contextlib.contextmanager
def name_scope(prefix=None):
    """No-op in dygraph, as in 1.8."""
    yield


def _dygraph_tracer():
    """The current tracer (Paddle 3's)."""
    return _support.tracer()


__getattr__ = _support.module_getattr(__name__)
