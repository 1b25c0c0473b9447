"""Shared fixtures: where the real PALM data lives, and small synthetic data.

``../shared`` beside the project's root holds the real PALM data and the
archives in their original layout.  A user's fresh clone has no ``../shared``:
tests that need it skip with a reason instead of failing.
"""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("PALM_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def repo_root():
    """The project's root folder (where ``tools/`` and ``setup.cfg`` are)."""
    return ROOT


@pytest.fixture(scope="session")
def shared_palm():
    """``../shared/palm``: the real PALM data (224x224 copies), or skip."""
    path = SHARED / "palm"
    if not (path / "PALM-Training400").is_dir():
        pytest.skip(f"real PALM data not found at {path} (set PALM_SHARED_DIR to the folder holding palm/)")
    return path


@pytest.fixture(scope="session")
def shared_zips():
    """``../shared/palm-mini-zips``: the three archives in the original layout, or skip."""
    path = SHARED / "palm-mini-zips"
    if not (path / "training.zip").is_file():
        pytest.skip(f"PALM archives not found at {path} (set PALM_SHARED_DIR to the folder holding palm-mini-zips/)")
    return path


@pytest.fixture(autouse=True)
def _restore_denormal_mode():
    """Undo the fast runtime's flush-to-zero after each test.

    ``paddle_palm.runtime.setup_runtime(fast=True)`` turns on FTZ/DAZ for the
    process; tests that call it in-process must not change floating-point
    behaviour for the tests that run after them (hypothesis refuses to run
    when subnormal floats flush to zero).
    """
    yield
    import sys

    runtime = sys.modules.get("paddle_palm.runtime")
    if runtime is not None and runtime.flush_denormal_enabled():
        runtime.set_flush_denormal(False)


@pytest.fixture(scope="session")
def onednn():
    """The loaded oneDNN operators (:mod:`paddle_palm.ops`), or skip (with the reason) where they cannot be built."""
    from paddle_palm import ops

    module = ops.load()
    if module is None:
        pytest.skip(f"oneDNN operator unavailable here: {ops.unavailable_reason()}")
    return module
