"""The model registry: every architecture is a name.

Each model file decorates one tiny builder function per variant with
:func:`register_model`; :func:`build_model` builds any of them by name and
:func:`list_models` lists them, so a command line's ``--arch`` is just a
registry key (the timm pattern, STYLE.md).  :func:`model_spec` tells callers
what a model expects without building it: input channels and size, its default
number of outputs and the loss that goes with them, and its preprocessing (A or
B).  These facts are written once, in the registration; the training recipes
(:mod:`paddle_palm.engine.config`), evaluation, prediction and export read them here.
"""

import dataclasses
import difflib

from paddle_palm.errors import ConfigError
from paddle_palm.metrics import infer_loss

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a registered architecture is and expects.

    Attributes:
        name: the registry key, e.g. ``"resnet50"``.
        builder: the function that builds the network.
        num_classes: default number of outputs (1 means one logit, sigmoid loss).
        in_channels: input channels (3 for fundus photographs, 1 for MNIST).
        input_size: the input side the recipe uses (224 for PALM, 32 for CIFAR-10).
        min_input_size: the smallest input side the network accepts.
        spec_section: where the architecture is specified in SPEC.md.
        fixed_input_size: True when the network accepts only ``input_size``
            (its classifier was sized for one feature-map size, e.g. ``senet18``).
        preprocess: the image preprocessing its recipe uses: ``"A"`` (SPEC 1.3) or ``"B"`` (SPEC 1.4).
    """

    name: str
    builder: object
    num_classes: int
    in_channels: int = 3
    input_size: int = 224
    min_input_size: int = 32
    spec_section: str = ""
    fixed_input_size: bool = False
    preprocess: str = "A"

    @property
    def loss(self):
        """The training loss of the default outputs: ``"bce"`` for one logit, ``"ce"`` for classes."""
        return infer_loss(self.num_classes)


def register_model(
    num_classes, in_channels=3, input_size=224, min_input_size=32, spec_section="", fixed_input_size=False,
    preprocess="A",
):
    """Decorator registering a builder ``fn(num_classes=..., **kw)`` under its function name."""

    def decorate(fn):
        name = fn.__name__
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name, fn, num_classes, in_channels, input_size, min_input_size, spec_section, fixed_input_size, preprocess
        )
        return fn

    return decorate


def list_models():
    """Sorted list of every registered model name."""
    return sorted(_REGISTRY)


def model_spec(name):
    """The :class:`ModelSpec` of ``name``; an unknown name is a ``ConfigError`` listing the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list_models(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; known models: {', '.join(list_models())}") from None


def resolve_num_classes(name, num_classes=None, class_dim=None, arch=None):
    """The number of outputs asked for: ``num_classes``, or its alias ``class_dim``, or ``name``'s default.

    ``class_dim`` is the course's (fluid) name for the number of outputs.

    Args:
        name: a registered model, whose :attr:`ModelSpec.num_classes` is the default.
        num_classes, class_dim: what the caller gave (None: not given).
        arch: the name to use in messages (default: ``name``).

    Raises:
        ConfigError: both given, with different values.
    """
    if num_classes is not None and class_dim is not None and class_dim != num_classes:
        raise ConfigError(
            f"{arch or name}: num_classes={num_classes!r} and class_dim={class_dim!r} disagree; give one of them"
        )
    if num_classes is None:
        num_classes = class_dim
    return model_spec(name).num_classes if num_classes is None else num_classes


def build_model(name, num_classes=None, **kwargs):
    """Build the registered model ``name``.

    Args:
        name: a key of :func:`list_models`.
        num_classes: number of outputs; None means the architecture's own default
            (1 logit for ``senet18`` and ``resnet*``, 2 for ``squeezenet*``, 10 for
            the CIFAR-10 and MNIST variants).
        **kwargs: passed to the builder (architecture options).  ``class_dim``,
            the course's (fluid) name for the number of outputs, is accepted as
            an alias of ``num_classes``.

    Returns:
        paddle.nn.Layer: the network, in train mode.
    """
    spec = model_spec(name)
    num_classes = resolve_num_classes(name, num_classes, kwargs.pop("class_dim", None))
    return spec.builder(num_classes=num_classes, **kwargs)
