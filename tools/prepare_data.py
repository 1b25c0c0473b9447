#!/usr/bin/env python
"""``python tools/prepare_data.py``: unpack the PALM archives into a dataset folder, from a checkout of the repository.

The same command as ``palm-prepare-data`` once the package is installed: it lives in
:mod:`paddle_palm.commands.prepare_data` (``--help`` says what it does); this file only
makes the repository importable and runs it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_palm.commands.prepare_data import build_parser, entry, format_summary, main  # noqa: E402

__all__ = ["build_parser", "format_summary", "main"]

if __name__ == "__main__":
    entry()
