"""A screening app in the browser: upload fundus photographs, see the PM probability and where the model looked.

``python tools/app.py --inference-model DIR`` (or ``--weights FILE``) serves on
http://127.0.0.1:7860:

* a page (Gradio) where one uploads one or several photographs and sees, for
  each, the PM probability, the decision at the model's threshold in Chinese and
  English, and a Grad-CAM overlay beside the photograph; the model's identity
  (architecture, training date, validation AUC from its run); a threshold slider
  with the sensitivity and specificity on the model's validation split;
* the same as an HTTP API with JSON in and out (``POST /api/screen``,
  ``GET /api/model``, ``GET /api/operating-point``; see :mod:`paddle_palm.app.server`).

:mod:`paddle_palm.app.screening` holds the model and the upload checks and needs
only Paddle; :mod:`paddle_palm.app.server` the page and the routes, which need the
``app`` extra (``pip install "paddle_palm[app]"``: Gradio, with FastAPI and
uvicorn).
"""

from paddle_palm.errors import ConfigError

__all__ = ["APP_EXTRA_HINT", "require_web_stack"]

#: The one line a user sees when the web packages are missing.
APP_EXTRA_HINT = 'the screening app needs Gradio: pip install "paddle_palm[app]" (or: pip install gradio)'


def require_web_stack(import_now=True):
    """Import the web packages the app needs, or raise ConfigError with :data:`APP_EXTRA_HINT`.

    Args:
        import_now: False only checks that they are installed (fast: importing
            Gradio takes seconds, so a command can say at once what is missing).

    Returns:
        module: ``gradio`` (None when ``import_now`` is False).
    """
    if not import_now:
        import importlib.util

        for name in ("gradio", "fastapi", "uvicorn"):
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError, AttributeError):  # a broken or blocked package counts as missing
                found = False
            if not found:
                raise ConfigError(APP_EXTRA_HINT)
        return None
    try:
        import fastapi  # noqa: F401
        import gradio
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(APP_EXTRA_HINT) from None
    return gradio
