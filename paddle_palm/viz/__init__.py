"""Pictures of runs, evaluations and model decisions.

* :mod:`paddle_palm.viz.plots`: training curves, confusion matrix, ROC curve and
  the prediction grid, written as PNG files (matplotlib, Agg canvas).
* :mod:`paddle_palm.viz.gradcam`: Grad-CAM heat maps showing where in a fundus
  photograph a network looked, and their overlay on the image.

>>> from paddle_palm.viz import plot_roc, grad_cam
"""

from paddle_palm.viz.plots import (
    cjk_font,
    display_class_names,
    grid_titles,
    plot_confusion_matrix,
    plot_history,
    plot_loss_curve,
    plot_prediction_grid,
    plot_roc,
    save_figure,
)

_GRADCAM_NAMES = ("grad_cam", "overlay_heatmap", "default_target_layer", "GradCAM")

__all__ = [
    "cjk_font",
    "display_class_names",
    "grid_titles",
    "plot_confusion_matrix",
    "plot_history",
    "plot_loss_curve",
    "plot_prediction_grid",
    "plot_roc",
    "save_figure",
    *_GRADCAM_NAMES,
]


def __getattr__(name):
    # Grad-CAM needs Paddle; import it only when asked for, so plotting stays light.
    if name in _GRADCAM_NAMES:
        from paddle_palm.viz import gradcam

        return getattr(gradcam, name)
    raise AttributeError(f"module 'paddle_palm.viz' has no attribute {name!r}")
