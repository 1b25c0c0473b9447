"""Progress bars (paddle_palm.progress): tqdm's text bar outside notebooks, one helper for every bar."""

import io
import re
from pathlib import Path

import tqdm

from paddle_palm.progress import progress_bar

REPO = Path(__file__).resolve().parents[1]


def test_outside_a_notebook_the_bar_is_tqdms_text_bar():
    out = io.StringIO()
    bar = progress_bar(range(3), desc="epoch 1/1", file=out, mininterval=0)
    assert isinstance(bar, tqdm.std.tqdm) and type(bar).__module__ in ("tqdm.std", "tqdm.asyncio")
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert "epoch 1/1" in out.getvalue() and "3/3" in out.getvalue()


def test_disabled_bar_writes_nothing():
    out = io.StringIO()
    assert list(progress_bar(range(2), file=out, disable=True)) == [0, 1]
    assert out.getvalue() == ""


def test_every_progress_bar_of_the_package_goes_through_the_helper():
    # tqdm.auto picks the notebook widget in Jupyter: a bar made with plain tqdm would be a red block there.
    # (tqdm.write, which prints a line above the bars, may stay.)
    plain = [str(p.relative_to(REPO)) for p in (REPO / "paddle_palm").rglob("*.py")
             if p.name != "progress.py" and re.search(r"\btqdm\(", p.read_text(encoding="utf-8"))]
    assert not plain, plain
