"""Plots of training runs and evaluations, written as PNG files.

Every function draws on its own ``matplotlib.figure.Figure`` (the Agg canvas,
no ``pyplot`` state, no window), writes the file atomically
(:func:`paddle_palm.fileio.atomic_path`: a crash never leaves half a PNG) and
returns the path.  The figures follow the course:

* :func:`plot_loss_curve`: seed 001's ``plot_change_loss`` (title "train loss",
  x "iter", the loss recorded every 10 batches, red line with a grid);
* :func:`plot_history`: seed 004's accuracy and loss curves per epoch;
* :func:`plot_prediction_grid`: seed 003's grid of images titled with the
  predicted and the true class, green when right and red when wrong;
* :func:`plot_confusion_matrix` and :func:`plot_roc`: the screening view (issue 5).

Chinese class names (非病理性近视 / 病理性近视, seed 004) are drawn with a CJK
font when one is installed (Noto Sans CJK, Source Han Sans, WenQuanYi, SimHei,
...); otherwise the known names fall back to English and any other CJK text to
"class i", so matplotlib never warns about missing glyphs, and one line on
stderr (:data:`CJK_FONT_HINT`) says how to install a CJK font.
"""

import functools
import math
import sys
from pathlib import Path

import numpy as np

from paddle_palm.errors import DataError
from paddle_palm.fileio import atomic_path
from paddle_palm.metrics import CLASS_NAMES_EN, CLASS_NAMES_ZH

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
]

#: Fonts able to draw Chinese, in order of preference.
CJK_FONT_CANDIDATES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "STHeiti",
    "SimSun",
    "FangSong",
    "Arial Unicode MS",
    "AR PL UMing CN",
    "Droid Sans Fallback",
)

_ZH_TO_EN = dict(zip(CLASS_NAMES_ZH, CLASS_NAMES_EN))


@functools.lru_cache(maxsize=1)
def cjk_font():
    """Name of an installed font that can draw Chinese, or None."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONT_CANDIDATES:
        if name in installed:
            return name
    return None


#: How to get the Chinese class names drawn; README ("Chinese class names") says the same.
CJK_FONT_HINT = ("Chinese class names are drawn in English: no CJK font is installed "
                 "(apt-get install fonts-wqy-microhei or fonts-noto-cjk, or put SimHei.ttf in ~/.fonts; "
                 "then rm -rf ~/.cache/matplotlib)")


@functools.lru_cache(maxsize=1)
def _note_cjk_fallback():
    """Say once per process why the Chinese names became English, and how to get them."""
    print(f"note: {CJK_FONT_HINT}", file=sys.stderr)


def _has_cjk(text):
    return any(ord(ch) >= 0x2E80 for ch in str(text))


def display_class_names(class_names):
    """Class names as they can be drawn here.

    Args:
        class_names: a sequence of names, e.g. ``["非病理性近视", "病理性近视"]``,
            or None for the PM defaults.

    Returns:
        list of str: the names unchanged when a CJK font exists or they are
        plain text; otherwise the English name of a known Chinese class name
        (``"病理性近视"`` -> ``"pathologic myopia"``) and ``"class i"`` for other
        Chinese names.
    """
    names = list(CLASS_NAMES_ZH if class_names is None else class_names)
    if cjk_font() is not None:
        return [str(n) for n in names]
    if any(_has_cjk(n) for n in names):
        _note_cjk_fallback()
    shown = []
    for i, name in enumerate(names):
        name = str(name)
        if _has_cjk(name):
            # "病理性近视 (pathologic myopia)" -> keep the part that can be drawn.
            stripped = "".join(ch for ch in name if ord(ch) < 0x2E80).strip(" ()/")
            name = _ZH_TO_EN.get(name.split(" (")[0].strip(), stripped or f"class {i}")
        shown.append(name)
    return shown


def _rc():
    """rcParams for every figure: a CJK font first when there is one."""
    rc = {"axes.unicode_minus": False, "figure.dpi": 100}
    font = cjk_font()
    if font is not None:
        rc["font.sans-serif"] = [font, "DejaVu Sans"]
        rc["font.family"] = "sans-serif"
    return rc


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path):
    """Write ``fig`` to ``path`` as PNG atomically; create the parent folder; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def _draw(path, draw, **figure_kwargs):
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(**figure_kwargs)
        draw(fig)
        return save_figure(fig, path)


def _integer_locator():
    """A tick locator that puts ticks on whole numbers only (epochs, iterations)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _floats(values):
    out = []
    for v in values:
        try:
            out.append(float(v) if v not in (None, "") else float("nan"))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return np.asarray(out, dtype=np.float64)


# ----------------------------------------------------------------------------- training curves


def plot_loss_curve(iters, losses, path, title="train loss"):
    """The course's training-loss curve (seed 001 ``plot_change_loss``).

    Args:
        iters: iteration numbers (the loss is recorded every 10 batches, SPEC 2.4).
        losses: training loss at those iterations.
        path: output PNG file.
        title: figure title.

    Returns:
        Path: ``path``.  Without any point (a run shorter than the logging
        interval) the figure says so instead of showing empty axes.
    """
    x, y = _floats(iters), _floats(losses)
    if x.shape != y.shape:
        raise DataError(f"iters has {x.size} values but losses has {y.size}")

    def draw(fig):
        ax = fig.subplots()
        ax.set_title(title, fontsize=20)
        ax.set_xlabel("iter", fontsize=14)
        ax.set_ylabel("loss", fontsize=14)
        # A line through one point draws nothing: few points get markers.
        ax.plot(x, y, color="red", label="train loss", marker="o" if x.size < 20 else None)
        if x.size == 0:
            ax.text(0.5, 0.5, "no training loss recorded yet:\nit is recorded every log_interval iterations\n"
                    "(10 by default), and this run has had fewer", ha="center", va="center",
                    transform=ax.transAxes, fontsize=12)
        ax.xaxis.set_major_locator(_integer_locator())
        ax.grid(True)

    return _draw(path, draw, figsize=(8, 5))


def plot_history(rows, path):
    """Per-epoch curves of a run: loss (train and validation) and validation accuracy / AUC.

    Args:
        rows: dicts with ``epoch``, ``train_loss``, ``val_loss``, ``val_acc``,
            ``val_auc`` (the rows of ``history.csv``; strings, None or missing
            keys are drawn as gaps).
        path: output PNG file.

    Returns:
        Path: ``path``.
    """
    rows = list(rows)
    epochs = _floats([r.get("epoch") for r in rows])

    def col(key):
        return _floats([r.get(key) for r in rows])

    def draw(fig):
        ax_loss, ax_acc = fig.subplots(1, 2)
        ax_loss.plot(epochs, col("train_loss"), marker="o", label="train loss")
        ax_loss.plot(epochs, col("val_loss"), marker="o", label="validation loss")
        ax_loss.set_title("Training and validation loss")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_loss.grid(True, alpha=0.3)
        ax_loss.legend(loc="upper right")
        ax_acc.plot(epochs, col("val_acc"), marker="o", label="validation accuracy")
        ax_acc.plot(epochs, col("val_auc"), marker="o", label="validation AUC")
        ax_acc.set_title("Validation accuracy and AUC")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.grid(True, alpha=0.3)
        ax_acc.legend(loc="lower right")
        for ax in (ax_loss, ax_acc):  # epochs are whole numbers: no tick at 1.25
            ax.xaxis.set_major_locator(_integer_locator())

    return _draw(path, draw, figsize=(12, 4))


# ----------------------------------------------------------------------------- evaluation


def plot_confusion_matrix(cm, class_names, path, title="Confusion matrix"):
    """A confusion matrix as a coloured table with counts and row percentages.

    Args:
        cm: ``[C, C]`` counts, rows = true class, columns = predicted class.
        class_names: C names (Chinese names fall back to English without a CJK font).
        path: output PNG file.
        title: figure title.

    Returns:
        Path: ``path``.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise DataError(f"a confusion matrix must be square, got shape {cm.shape}")
    names = display_class_names(class_names)
    if len(names) != cm.shape[0]:
        raise DataError(f"{len(names)} class names for a {cm.shape[0]}x{cm.shape[0]} confusion matrix")
    totals = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, np.maximum(totals, 1), dtype=np.float64)

    def draw(fig):
        ax = fig.subplots()
        im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
        ax.set_xticks(range(len(names)), labels=names, rotation=30 if len(names) > 2 else 0, ha="right" if len(names) > 2 else "center")
        ax.set_yticks(range(len(names)), labels=names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} (n = {int(cm.sum())})")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.1f}%", ha="center", va="center", color=colour)

    side = max(4.5, 0.9 * len(names) + 2.5)
    return _draw(path, draw, figsize=(side + 1.5, side))


def plot_roc(labels, probs, path, threshold=0.5, title="ROC curve"):
    """The ROC curve of PM probabilities with its AUC and the operating point.

    Args:
        labels: true binary labels (1 = PM).
        probs: PM probabilities.
        path: output PNG file.
        threshold: the decision threshold to mark on the curve (None: no mark).
        title: figure title.

    Returns:
        Path: ``path``.  With one class only the curve is undefined: the figure
        says so instead of failing.
    """
    from paddle_palm import metrics

    y = metrics.check_binary_labels(labels)
    p = metrics.check_probabilities(probs, y.size)
    fpr, tpr, _ = metrics.roc_curve(y, p)
    auc = metrics.roc_auc(y, p)

    def draw(fig):
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance (AUC 0.5)")
        if math.isnan(auc):
            ax.text(0.5, 0.5, "ROC undefined: only one class present", ha="center", va="center")
        else:
            ax.plot(fpr, tpr, color="darkorange", lw=2, label=f"model (AUC {auc:.4f})")
            if threshold is not None:
                pred = (p >= threshold).astype(np.int64)
                sens, spec = metrics.sensitivity(y, pred), metrics.specificity(y, pred)
                ax.plot([1 - spec], [sens], "o", color="navy",
                        label=f"threshold {threshold:g}: sens {sens:.3f}, spec {spec:.3f}")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel("1 - specificity (false positive rate)")
        ax.set_ylabel("sensitivity (true positive rate)")
        ax.set_title(f"{title} (n = {y.size}, {int(y.sum())} PM)")
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)

    return _draw(path, draw, figsize=(6, 6))


def plot_reliability(labels, probs, path, bins=10, title="Reliability diagram"):
    """The reliability diagram of PM probabilities: per bin, the share of PM eyes against the mean
    probability (a calibrated model lies on the diagonal), with the bins' image counts below.

    Args:
        labels: true binary labels (1 = PM).
        probs: PM probabilities.
        path: output PNG file.
        bins: equal-width probability bins.
        title: figure title.

    Returns:
        Path: ``path``.
    """
    from paddle_palm import calibration

    rows = calibration.reliability(labels, probs, bins)
    ece = calibration.calibration_error_of(rows)
    brier = calibration.brier_score(labels, probs)
    filled = [r for r in rows if r["count"]]

    def draw(fig):
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
        top.plot([r["mean_probability"] for r in filled], [r["pm_share"] for r in filled], "o-",
                 color="darkorange", label=f"model (ECE {ece:.3f}, Brier {brier:.3f})")
        top.set_ylim(-0.01, 1.01)
        top.set_ylabel("share of PM eyes in the bin")
        top.set_title(f"{title} (n = {sum(r['count'] for r in rows)})")
        top.grid(True, alpha=0.3)
        top.legend(loc="upper left", fontsize=8)
        width = 1.0 / len(rows)
        bottom.bar([r["low"] + width / 2 for r in rows], [r["count"] for r in rows], width=width * 0.9,
                   color="steelblue")
        bottom.set_xlim(-0.01, 1.01)
        bottom.set_xlabel("PM probability (bin mean)")
        bottom.set_ylabel("images")
        bottom.yaxis.get_major_locator().set_params(integer=True)

    return _draw(path, draw, figsize=(6, 7))


def plot_coverage(rows, path, title="Refer band: accuracy against coverage"):
    """Accuracy on the decided images against the share decided, one point per refer band.

    Args:
        rows: :func:`paddle_palm.operating_point.coverage_table` rows.
        path: output PNG file.
        title: figure title.

    Returns:
        Path: ``path``.
    """
    shown = [r for r in rows if r["decided"]]
    if not shown:
        raise DataError("plot_coverage: every band referred every image; nothing to plot")

    def draw(fig):
        ax = fig.subplots()
        ax.plot([r["coverage"] for r in shown], [r["accuracy"] for r in shown], "o-", color="darkorange")
        labels = {}  # bands that decide the same images share one point and one label
        for r in shown:
            labels.setdefault((r["coverage"], r["accuracy"]), []).append(f"{r['band']:g}")
        for k, ((coverage, accuracy), bands) in enumerate(labels.items()):
            ax.annotate("\u00b1" + ", ".join(bands), (coverage, accuracy), textcoords="offset points",
                        xytext=(4, -10 if k % 2 == 0 else 6), fontsize=7)
        ax.set_xlim(min(r["coverage"] for r in shown) - 0.02, 1.01)
        ax.set_xlabel("coverage (share of images decided, the rest referred)")
        ax.set_ylabel("accuracy on the decided images")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)

    return _draw(path, draw, figsize=(6, 4.5))


def _displayable_image(img, bgr=True):
    """An image as HWC float in [0, 1] (RGB) for ``imshow``."""
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise DataError(f"expected an image HxW, HxWx3 or 3xHxW, got shape {arr.shape}")
    if arr.dtype.kind in "ui":
        arr = arr.astype(np.float64) / 255.0
    else:
        arr = arr.astype(np.float64)
        if arr.min() < 0:  # preprocessing A/B put pixels in [-1, 1] (SPEC 1.3, 1.4)
            arr = (arr + 1.0) / 2.0
        arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 3 and bgr:
        arr = arr[..., ::-1]
    return arr


def grid_titles(true, pred, probs, class_names=None, titles=None):
    """Title text and colour of each image of a prediction grid (seed 003's rule).

    Args:
        true: true class per image (None or a negative number where unknown).
        pred: predicted class per image.
        probs: confidence of each prediction (None entries, or None for all, to leave it out).
        class_names: class names (drawable forms are chosen by :func:`display_class_names`).
        titles: optional first line per image.

    Returns:
        list of (str, str): the text and ``"green"`` (right), ``"red"`` (wrong) or
        ``"black"`` (true class unknown).
    """
    n = len(pred)
    pred = [int(v) for v in pred]
    true = [None if t is None or int(t) < 0 else int(t) for t in (true if true is not None else [None] * n)]
    probs = [None] * n if probs is None else [None if v is None else float(v) for v in probs]
    if not (len(true) == len(probs) == n) or (titles is not None and len(titles) != n):
        raise DataError(f"{n} predictions but {len(true)} true labels and {len(probs)} confidences")
    names = display_class_names(class_names)

    def name_of(k):
        return names[k] if 0 <= k < len(names) else f"class {k}"

    out = []
    for i in range(n):
        text = name_of(pred[i]) + (f" {probs[i]:.2f}" if probs[i] is not None else "")
        if true[i] is not None:
            text += f"\n(true: {name_of(true[i])})"
            colour = "green" if true[i] == pred[i] else "red"
        else:
            colour = "black"
        if titles is not None:
            text = f"{titles[i]}\n{text}"
        out.append((text, colour))
    return out


def plot_prediction_grid(images, true, pred, probs, path, class_names=None, ncols=None, bgr=True, titles=None):
    """A grid of images titled with the predicted class and the true one (seed 003).

    Each title reads ``<predicted> <confidence>`` and, on a second line,
    ``(true: <class>)``; it is green when the prediction is right, red when it
    is wrong and black when the true class is unknown.

    Args:
        images: images as HxWx3 uint8 (BGR, as :func:`paddle_palm.data.images.read_image`
            gives) or CHW float arrays (values in [-1, 1] or [0, 1]).
        true: true class per image, or None / -1 entries where unknown.
        pred: predicted class per image.
        probs: confidence per image (the probability of the predicted class), or None.
        path: output PNG file.
        class_names: names of the classes (default 非病理性近视 / 病理性近视).
        ncols: images per row (default: up to 5).
        bgr: the 3-channel images are in BGR order (the project's default, SPEC 1.3).
        titles: optional extra first line per image (e.g. the file name).

    Returns:
        Path: ``path``.
    """
    images = list(images)
    n = len(images)
    if n == 0:
        raise DataError("plot_prediction_grid needs at least one image")
    if len(pred) != n:
        raise DataError(f"{n} images but {len(pred)} predictions")
    labelled = grid_titles(true, pred, probs, class_names, titles)
    ncols = ncols or min(5, n)
    nrows = math.ceil(n / ncols)

    def draw(fig):
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
        for i, ax in enumerate(axes):
            ax.axis("off")
            if i >= n:
                continue
            shown = _displayable_image(images[i], bgr=bgr)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            text, colour = labelled[i]
            ax.set_title(text, color=colour, fontsize=9)

    return _draw(path, draw, figsize=(3.0 * ncols, 3.3 * nrows))
