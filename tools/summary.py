#!/usr/bin/env python
"""``python tools/summary.py``: print the paddle.summary table of an architecture, from a checkout of the repository.

The same command as ``palm-summary`` once the package is installed: it lives in
:mod:`paddle_palm.commands.summary` (``--help`` says what it does); this file only
makes the repository importable and runs it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_palm.commands.summary import build_parser, cli, entry, input_shape, main  # noqa: E402

__all__ = ["build_parser", "cli", "input_shape", "main"]

if __name__ == "__main__":
    entry()
