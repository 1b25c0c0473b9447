#!/usr/bin/env python
"""``python tools/export.py``: export trained weights for Paddle Inference, from a checkout of the repository.

The same command as ``palm-export`` once the package is installed: it lives in
:mod:`paddle_palm.commands.export` (``--help`` says what it does); this file only
makes the repository importable and runs it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_palm.commands.export import build_parser, entry, main  # noqa: E402

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    entry()
