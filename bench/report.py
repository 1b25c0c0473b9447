"""Where the benchmark scripts put their results: a stamped pair of files and a ``latest`` pair.

Every script writes ``<prefix><stamp>.json`` and ``.md`` under its ``--out-dir`` (``bench/results``)
and the same two files as ``<prefix>latest.*``, each written to a temporary file and renamed, so an
interrupted script never leaves half a report.
"""

import json
import os
import time
from pathlib import Path

from paddle_palm.fileio import write_text_atomic

__all__ = ["write_results"]


def write_results(out_dir, prefix, report, text, stamp=None, indent=1):
    """Write ``report`` (JSON) and ``text`` (Markdown) as ``<prefix><stamp>.*`` and ``<prefix>latest.*``.

    Args:
        out_dir: the results folder (created when missing).
        prefix: the start of the file names, e.g. ``"seed_study-"`` (``""`` for ``bench/run.py``).
        report: a JSON-serialisable mapping (values it cannot serialise are written as text).
        text: the Markdown report.
        stamp: the time stamp in the name.  Given, the pair of that name is written (again, as
            ``bench/run.py`` does after every round).  By default it is now (``YYYYmmdd-HHMMSS``),
            with ``-2``, ``-3``, ... added when another report of that second already has the name
            (two studies run side by side), so no report replaces another.
        indent: the JSON indentation.

    Returns:
        Path: the stamped Markdown file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = stamp or _claim(out_dir, prefix, time.strftime("%Y%m%d-%H%M%S"))
    data = json.dumps(report, indent=indent, default=str) + "\n"
    text = text if text.endswith("\n") else text + "\n"
    for name in (f"{prefix}{stamp}", f"{prefix}latest"):
        write_text_atomic(out_dir / f"{name}.json", data)
        write_text_atomic(out_dir / f"{name}.md", text)
    return out_dir / f"{prefix}{stamp}.md"


def _claim(out_dir, prefix, stamp):
    """The first of ``stamp``, ``stamp-2``, ... whose Markdown file this process could create anew."""
    for number in range(1, 1000):
        name = stamp if number == 1 else f"{stamp}-{number}"
        try:
            os.close(os.open(out_dir / f"{prefix}{name}.md", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"{out_dir}: 999 reports named {prefix}{stamp}*")
