"""Tests of paddle_palm.viz.plots: every plot writes a complete PNG atomically, titles follow seed 003."""

import warnings

import cv2
import numpy as np
import pytest

from paddle_palm.errors import DataError
from paddle_palm.viz import plots


def _png_size(path):
    """(width, height) of a PNG written by the plots, decoded for real."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image.shape[1], image.shape[0]


def _no_leftovers(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_loss_curve_and_history(tmp_path):
    out = plots.plot_loss_curve(range(0, 100, 10), np.linspace(1, 0.1, 10), tmp_path / "sub" / "loss.png")
    assert out == tmp_path / "sub" / "loss.png" and _png_size(out)[0] > 100  # parent folder created
    rows = [
        {"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_acc": 0.55, "val_auc": 0.6},
        {"epoch": "2", "train_loss": "0.5", "val_loss": "", "val_acc": None, "val_auc": "nan"},  # as read from csv
        {"epoch": 3, "train_loss": 0.3},
    ]
    assert _png_size(plots.plot_history(rows, tmp_path / "history.png"))[0] > 100
    assert _no_leftovers(tmp_path)
    with pytest.raises(DataError):
        plots.plot_loss_curve([1, 2], [0.5], tmp_path / "bad.png")


def test_confusion_matrix_and_roc(tmp_path):
    assert _png_size(plots.plot_confusion_matrix([[40, 5], [2, 53]], None, tmp_path / "cm.png"))[0] > 100
    names = ["plane", "car", "bird"]
    assert _png_size(plots.plot_confusion_matrix(np.eye(3, dtype=int) * 4, names, tmp_path / "cm3.png"))[0] > 100
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    probs = np.clip(labels * 0.4 + rng.random(50) * 0.6, 0, 1)
    assert _png_size(plots.plot_roc(labels, probs, tmp_path / "roc.png"))[0] > 100
    # One class only: the curve is undefined, the figure says so instead of failing.
    assert _png_size(plots.plot_roc([1, 1, 1], [0.2, 0.5, 0.9], tmp_path / "roc1.png"))[0] > 100
    with pytest.raises(DataError, match="square"):
        plots.plot_confusion_matrix([[1, 2, 3]], ["a"], tmp_path / "x.png")
    with pytest.raises(DataError, match="class names"):
        plots.plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "x.png")
    assert _no_leftovers(tmp_path)


def test_grid_titles_green_right_red_wrong():
    titles = plots.grid_titles(true=[1, 0, None, -1], pred=[1, 1, 0, 1], probs=[0.9, 0.6, 0.8, None],
                               class_names=["normal", "PM"], titles=["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert [c for _, c in titles] == ["green", "red", "black", "black"]
    assert titles[0][0] == "a.jpg\nPM 0.90\n(true: PM)"
    assert titles[1][0] == "b.jpg\nPM 0.60\n(true: normal)"
    assert titles[3][0] == "d.jpg\nPM"


def test_prediction_grid_accepts_bgr_and_chw_images(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),  # BGR uint8 as read_image gives
              rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32),  # a preprocessed CHW tensor
              rng.random((28, 28)).astype(np.float32)]  # a gray image
    path = plots.plot_prediction_grid(images, [0, 1, None], [0, 0, 1], [0.8, 0.7, 0.9], tmp_path / "grid.png",
                                      ncols=2)
    w, h = _png_size(path)
    assert w > 100 and h > 100
    with pytest.raises(DataError):
        plots.plot_prediction_grid(images, [0], [0, 1, 1], None, tmp_path / "bad.png")
    with pytest.raises(DataError):
        plots.plot_prediction_grid([], [], [], None, tmp_path / "bad.png")


def test_chinese_names_fall_back_without_a_cjk_font(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    assert plots.display_class_names(None) == ["non-pathologic myopia", "pathologic myopia"]
    assert plots.display_class_names(["病理性近视 (pathologic myopia)", "猫", "cat"]) == [
        "pathologic myopia", "class 1", "cat"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would be a warning: none may appear
        plots.plot_confusion_matrix([[1, 0], [0, 1]], ["非病理性近视", "病理性近视"], tmp_path / "cm.png")
        plots.plot_prediction_grid([np.zeros((8, 8, 3), np.uint8)], [1], [1], [0.9], tmp_path / "g.png",
                                   class_names=["非病理性近视", "病理性近视"])


def test_chinese_names_kept_with_a_cjk_font(monkeypatch):
    monkeypatch.setattr(plots, "cjk_font", lambda: "Noto Sans CJK SC")
    assert plots.display_class_names(None) == ["非病理性近视", "病理性近视"]


def test_a_failed_plot_leaves_the_old_file(tmp_path):
    target = tmp_path / "roc.png"
    target.write_bytes(b"old")
    with pytest.raises(DataError):
        plots.plot_roc([0, 1], [0.2, 1.7], target)  # rejected before drawing
    with pytest.raises(Exception):
        plots.plot_prediction_grid([np.zeros((2, 2, 2, 2))], [1], [1], None, target)  # fails while drawing
    assert target.read_bytes() == b"old" and _no_leftovers(tmp_path)


def test_reliability_diagram_and_coverage_curve(tmp_path):
    from paddle_palm.operating_point import coverage_table

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    probs = np.clip(labels * 0.5 + rng.random(80) * 0.5, 0, 1)
    assert _png_size(plots.plot_reliability(labels, probs, tmp_path / "reliability.png"))[1] > 100
    rows = coverage_table(labels, probs, 0.5)
    assert _png_size(plots.plot_coverage(rows, tmp_path / "coverage.png"))[0] > 100
    with pytest.raises(DataError, match="referred every image"):
        plots.plot_coverage([dict(r, decided=0) for r in rows], tmp_path / "none.png")
    assert _no_leftovers(tmp_path)


def _drawn_figure(monkeypatch, draw):
    """The matplotlib figure a plot function saves (its PNG is still written)."""
    figures = []
    save = plots.save_figure

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    draw()
    assert len(figures) == 1
    return figures[0]


def test_loss_curve_of_a_run_shorter_than_the_logging_interval_says_so(tmp_path, monkeypatch):
    # Fewer than 10 iterations: no loss recorded, the figure says why instead of showing empty axes.
    fig = _drawn_figure(monkeypatch, lambda: plots.plot_loss_curve([], [], tmp_path / "loss.png"))
    (ax,) = fig.axes
    assert any("no training loss recorded yet" in t.get_text() for t in ax.texts)
    # One recorded point is drawn as a marker (a line through one point shows nothing).
    fig = _drawn_figure(monkeypatch, lambda: plots.plot_loss_curve([10], [0.7], tmp_path / "loss1.png"))
    (ax,) = fig.axes
    assert ax.lines[0].get_marker() == "o" and not ax.texts
    assert _png_size(tmp_path / "loss1.png")[0] > 100


def test_epoch_axes_have_whole_number_ticks(tmp_path, monkeypatch):
    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_acc": 0.5, "val_auc": 0.5} for e in (1, 2, 3)]
    fig = _drawn_figure(monkeypatch, lambda: plots.plot_history(rows, tmp_path / "history.png"))
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # not 1.25, 1.5...


def test_fallback_to_english_names_says_once_how_to_get_chinese(monkeypatch, capsys):
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    plots._note_cjk_fallback.cache_clear()
    plots.display_class_names(["非病理性近视", "病理性近视"])
    plots.display_class_names(None)
    plots.display_class_names(["cat", "dog"])  # nothing Chinese: nothing to say
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "fonts-wqy-microhei" in notes[0], notes
    plots._note_cjk_fallback.cache_clear()


def _missing_glyph_warnings(draw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


@pytest.mark.skipif(plots.cjk_font() is None,
                    reason="no CJK font installed (apt-get install fonts-wqy-microhei; CI installs it)")
def test_chinese_class_names_are_drawn_with_every_glyph(tmp_path):
    assert plots.display_class_names(None) == ["非病理性近视", "病理性近视"]
    missing = _missing_glyph_warnings(lambda: plots.plot_confusion_matrix(
        [[40, 5], [2, 53]], ["非病理性近视", "病理性近视"], tmp_path / "cm.png"))
    missing += _missing_glyph_warnings(lambda: plots.plot_prediction_grid(
        [np.zeros((8, 8, 3), np.uint8)], [1], [1], [0.9], tmp_path / "g.png", class_names=["非病理性近视", "病理性近视"]))
    assert not missing, missing
    assert _png_size(tmp_path / "cm.png")[0] > 100

    # The check sees a missing glyph: the same names in a font without Chinese do warn.
    def latin_only():
        import matplotlib

        with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}):
            fig = plots._figure()
            fig.subplots().set_title("病理性近视")
            plots.save_figure(fig, tmp_path / "latin.png")

    assert _missing_glyph_warnings(latin_only)
