"""Where the benchmark scripts put their results: a stamped pair of files and a ``latest`` pair.

Every script writes ``<prefix><stamp>.json`` and ``.md`` under its ``--out-dir`` (``bench/results``)
and the same two files as ``<prefix>latest.*``, each written to a temporary file and renamed, so an
interrupted script never leaves half a report.
"""

import json
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
        stamp: the time stamp in the name (default: now, ``YYYYmmdd-HHMMSS``).
        indent: the JSON indentation.

    Returns:
        Path: the stamped Markdown file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    data = json.dumps(report, indent=indent, default=str) + "\n"
    text = text if text.endswith("\n") else text + "\n"
    for name in (f"{prefix}{stamp}", f"{prefix}latest"):
        write_text_atomic(out_dir / f"{name}.json", data)
        write_text_atomic(out_dir / f"{name}.md", text)
    return out_dir / f"{prefix}{stamp}.md"
