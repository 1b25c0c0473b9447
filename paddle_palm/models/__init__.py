"""The architecture zoo (SPEC 2): one file per family, each registering its variants.

>>> from paddle_palm.models import build_model, list_models
>>> model = build_model("squeezenet1_1", num_classes=2)

Beside the families: ``layers`` (input checks, initialisers), ``summary``
(parameter counts, the ``paddle.summary`` table of ``tools/summary.py``) and
``convert`` (weight names to and from ``paddle.vision.models``).
"""

from paddle_palm.models.registry import ModelSpec, build_model, list_models, model_spec, register_model

# Importing each family registers its variants.
from paddle_palm.models import resnet, senet, squeezenet  # noqa: E402,F401  isort:skip

__all__ = ["ModelSpec", "build_model", "list_models", "model_spec", "register_model"]
