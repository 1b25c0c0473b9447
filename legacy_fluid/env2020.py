"""The library environment of 2020 for an old program: ``python -m legacy_fluid`` applies it.

Course programs of 2020 also use names that numpy and Pillow have removed since, and
print numbers the way the numpy of 2020 did.  :func:`apply` gives them, as far as it
can, what they had (each item can be switched off; :func:`restore` undoes all):

``numpy_names``
    the aliases numpy 1.20 deprecated and 1.24 removed: ``np.int``, ``np.float``,
    ``np.bool``, ``np.object``, ``np.str``, ``np.long``, ``np.unicode``, ``np.complex``;
    and names numpy 2.0 removed that have an exact equivalent: ``np.float_``,
    ``np.complex_``, ``np.cfloat``, ``np.longfloat``, ``np.singlecomplex``,
    ``np.clongfloat``, ``np.longcomplex``, ``np.string_``, ``np.unicode_``,
    ``np.NaN``, ``np.NAN``, ``np.Inf``, ``np.Infinity``, ``np.infty``, ``np.PINF``,
    ``np.NINF``, ``np.PZERO``, ``np.NZERO``, ``np.round_``, ``np.alltrue``,
    ``np.sometrue``, ``np.product``, ``np.cumproduct``, ``np.asfarray``,
    ``np.asscalar`` (removed in 1.23).  Only names missing from the installed numpy are
    added, so a numpy that still has them is untouched (numpy 2 brought ``np.bool`` back
    as its own boolean type, which 2020 code uses the same way).
``pillow_names``
    what Pillow 10 removed: ``Image.ANTIALIAS`` (= ``LANCZOS``), ``Image.LINEAR``
    (= ``BILINEAR``), ``Image.CUBIC`` (= ``BICUBIC``), ``ImageDraw.textsize`` and
    ``FreeTypeFont.getsize`` (from the text bounding box).  Skipped when Pillow is not
    installed.
``numpy_printing``
    numpy 2 prints a scalar inside a list as ``np.float32(0.06)``; numpy 1.x printed
    ``0.06``.  ``np.set_printoptions(legacy='1.25')`` restores 1.x printing (numpy >= 2 only).
``shape_lists``
    ``tensor.shape`` printed as a list, as 1.8's ``VarBase.shape`` was (Paddle 3.1+ returns
    a ``paddle.Size``, printed ``paddle.Size([...])``).  The value stays a ``paddle.Size``
    (a ``list`` subclass) for Paddle's own code; only printing and ``type()`` checks in the
    program see a list, because ``Tensor.shape`` then returns ``list(shape)``.
``quiet``
    warnings 1.8 did not print: every warning raised inside Paddle's own modules (its
    deprecation notes on 1.x-style calls, "No ccache found" on import) and numpy's
    ``DeprecationWarning``s.  Warnings that 1.8 printed itself (e.g. ``set_dict`` with
    unused keys) come from legacy_fluid and still show.  (``Tensor.gradient()``'s
    deprecation warning is gone anyway once legacy_fluid is installed.)  Applied first,
    before Paddle is imported.

Importing :mod:`legacy_fluid` or calling :func:`legacy_fluid.install` changes nothing
of numpy or Pillow; only :func:`apply` does.
"""

import warnings

__all__ = ["apply", "restore", "applied", "ITEMS"]

#: The switches of :func:`apply`, in the order they are applied.
ITEMS = ("quiet", "numpy_names", "pillow_names", "numpy_printing", "shape_lists")

_NUMPY_ALIASES = {
    # removed in numpy 1.24 (deprecated in 1.20): the builtin types
    "int": int, "float": float, "bool": bool, "object": object, "str": str, "long": int, "unicode": str,
    "complex": complex,
}
_NUMPY_2_REMOVED = {
    # removed in numpy 2.0: new name of each (np.<value>)
    "float_": "float64", "complex_": "complex128", "cfloat": "complex128", "longfloat": "longdouble",
    "singlecomplex": "complex64", "clongfloat": "clongdouble", "longcomplex": "clongdouble",
    "string_": "bytes_", "unicode_": "str_", "NaN": "nan", "NAN": "nan", "Inf": "inf", "Infinity": "inf",
    "infty": "inf", "round_": "round", "alltrue": "all", "sometrue": "any", "product": "prod",
    "cumproduct": "cumprod",
}

_STATE = {"undo": []}


def _set(owner, name, value):
    """Set ``owner.name`` and remember how to undo it."""
    missing = object()
    old = owner.__dict__.get(name, missing) if hasattr(owner, "__dict__") else missing
    setattr(owner, name, value)

    def undo():
        if old is missing:
            try:
                delattr(owner, name)
            except AttributeError:
                pass
        else:
            setattr(owner, name, old)

    _STATE["undo"].append(undo)


def _numpy_names():
    import numpy as np

    added = []
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            _set(np, name, value)
            added.append(name)
    for name, new in _NUMPY_2_REMOVED.items():
        if name not in np.__dict__:
            _set(np, name, getattr(np, new))
            added.append(name)
    constants = {"PINF": float("inf"), "NINF": float("-inf"), "PZERO": 0.0, "NZERO": -0.0}
    for name, value in constants.items():
        if name not in np.__dict__:
            _set(np, name, value)
            added.append(name)
    if "asfarray" not in np.__dict__:
        def asfarray(a, dtype=np.float64):
            """numpy 1.x ``asfarray``: ``a`` as a floating-point array."""
            if not np.issubdtype(dtype, np.inexact):
                dtype = np.float64
            return np.asarray(a, dtype=dtype)

        _set(np, "asfarray", asfarray)
        added.append("asfarray")
    if "asscalar" not in np.__dict__:
        def asscalar(a):
            """numpy 1.x ``asscalar``: ``a.item()``."""
            return a.item()

        _set(np, "asscalar", asscalar)
        added.append("asscalar")
    return added


def _pillow_names():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return []
    added = []
    # removed in Pillow 10 (deprecated in 9.1)
    for old, new in (("ANTIALIAS", "LANCZOS"), ("LINEAR", "BILINEAR"), ("CUBIC", "BICUBIC")):
        if old not in Image.__dict__:
            _set(Image, old, getattr(Image.Resampling, new) if hasattr(Image, "Resampling") else getattr(Image, new))
            added.append("Image." + old)
    if not hasattr(ImageDraw.ImageDraw, "textsize"):
        def textsize(self, text, font=None, *args, **kwargs):
            """Pillow < 10 ``ImageDraw.textsize``: ``(width, height)`` of ``text``."""
            left, top, right, bottom = self.textbbox((0, 0), text, *args, font=font, **kwargs)
            return right - left, bottom - top

        _set(ImageDraw.ImageDraw, "textsize", textsize)
        added.append("ImageDraw.textsize")
    if not hasattr(ImageFont.FreeTypeFont, "getsize"):
        def getsize(self, text, *args, **kwargs):
            """Pillow < 10 ``FreeTypeFont.getsize``: ``(width, height)`` of ``text``."""
            left, top, right, bottom = self.getbbox(text, *args, **kwargs)
            return right, bottom

        _set(ImageFont.FreeTypeFont, "getsize", getsize)
        added.append("FreeTypeFont.getsize")
    return added


def _numpy_printing():
    import numpy as np

    if int(np.__version__.split(".")[0]) < 2:
        return []  # numpy 1.x already prints scalars as 2020 did
    saved = np.get_printoptions()
    np.set_printoptions(legacy="1.25")
    _STATE["undo"].append(lambda: np.set_printoptions(**saved))
    return ["numpy printing legacy='1.25'"]


def _shape_lists():
    import paddle

    probe = paddle.zeros([1])
    if type(probe.shape) is list:
        return []  # Paddle 2.6 / 3.0: already a list
    # Paddle 3.1+ returns paddle.Size; the program gets a plain list, as 1.8 gave
    descriptor = paddle.Tensor.__dict__.get("shape")
    if descriptor is None or not hasattr(descriptor, "__get__"):
        return []

    def shape(tensor):
        return list(descriptor.__get__(tensor, paddle.Tensor))

    _set(paddle.Tensor, "shape", property(shape, doc="The shape as a list (1.8's VarBase.shape)."))
    return ["Tensor.shape as list"]


def _quiet():
    saved = warnings.filters[:]
    # every warning raised from Paddle's own modules: its deprecations of 1.x-style calls
    # and notes such as "No ccache found" on import, none of which 1.8 printed
    warnings.filterwarnings("ignore", module=r"paddle(\.|$)")
    # numpy's deprecation notes about the names given back by numpy_names
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"numpy(\.|$)")

    def undo():
        warnings.filters[:] = saved
        warnings._filters_mutated()

    _STATE["undo"].append(undo)
    return ["warnings"]


_APPLIERS = {"numpy_names": _numpy_names, "pillow_names": _pillow_names, "numpy_printing": _numpy_printing,
             "shape_lists": _shape_lists, "quiet": _quiet}


def apply(numpy_names=True, pillow_names=True, numpy_printing=True, shape_lists=True, quiet=True):
    """Apply the chosen items of the 2020 environment (see the module doc); returns what changed.

    Returns:
        list of str: the names added and settings changed, e.g. ``['int', ..., 'Image.ANTIALIAS']``.
    """
    chosen = dict(numpy_names=numpy_names, pillow_names=pillow_names, numpy_printing=numpy_printing,
                  shape_lists=shape_lists, quiet=quiet)
    changed = []
    for item in ITEMS:
        if chosen[item]:
            changed += _APPLIERS[item]()
    return changed


def restore():
    """Undo everything :func:`apply` changed, newest first."""
    while _STATE["undo"]:
        _STATE["undo"].pop()()


def applied():
    """True while something applied by :func:`apply` is in force."""
    return bool(_STATE["undo"])

