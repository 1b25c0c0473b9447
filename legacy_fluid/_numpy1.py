"""The numpy array that ``Variable.numpy()`` returns for a one-element 1.8 result.

1.8 has no 0-D tensors: ``fluid.layers.mean``, ``accuracy`` and the losses return shape
``[1]`` (FLUID_1_8.md section 0 #6), and course programs and their logging libraries
(VisualDL's ``add_scalar``, tb_paddle) call ``float()`` on ``loss.numpy()``.  The numpy of
2020 converted any one-element array to a Python number; numpy 1.25 to 2.3 warn and
numpy 2.4 refuses (``only 0-dimensional arrays can be converted to Python scalars``).

The choice made here: while legacy_fluid is installed, ``Tensor.numpy()`` returns a
:class:`Fluid18Array` view when the result has exactly one element and at least one
dimension.  It keeps the shape (``(1,)`` stays ``(1,)``, so the parity tests still see
1.8's shapes) and is an ``ndarray`` in every other respect, but ``float()``, ``int()``
and ``complex()`` (and so ``'%.4f' % value``) convert it as the numpy of 2020 did, on
every numpy version and without a warning.  It prints, and pickles, as a plain
``ndarray``, so nothing downstream can tell it apart or needs legacy_fluid to load it.
Arrays with more than one element are returned unchanged.
"""

import numpy as np

__all__ = ["Fluid18Array", "as_fluid18"]


class Fluid18Array(np.ndarray):
    """An ``ndarray`` with one element that converts to a Python number like numpy 1.x (see module doc)."""

    def _scalar(self, kind):
        if self.size != 1:
            # more than one element: numpy's own error, as numpy 1.x gave
            return getattr(np.asarray(self), "__{}__".format(kind.__name__))()
        return kind(np.asarray(self).reshape(-1)[0])

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __complex__(self):
        return self._scalar(complex)

    def __repr__(self):
        return repr(np.asarray(self))

    def __str__(self):
        return str(np.asarray(self))

    def __reduce__(self):
        return np.asarray(self).__reduce__()

    def __reduce_ex__(self, protocol):
        return np.asarray(self).__reduce_ex__(protocol)


def as_fluid18(array):
    """``array`` as a :class:`Fluid18Array` view when it has one element and ``ndim >= 1``, else unchanged."""
    if type(array) is np.ndarray and array.ndim >= 1 and array.size == 1:
        return array.view(Fluid18Array)
    return array
