"""``python -m paddle_palm.ops`` and ``python -m legacy_fluid`` print what they are for, not Paddle's ccache note.

Paddle warns on import when ccache (a C++ compiler cache) is missing; the commands hide it
(``paddle_palm.cli.start``), and so do these two module entry points.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_palm import ops

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_legacy_fluid_plain_hides_the_ccache_note(tmp_path):
    program = tmp_path / "hello.py"
    program.write_text("import paddle.fluid as fluid\nprint('fluid', fluid.__name__)\n")
    for flags in ([], ["--plain"]):
        done = _run(["-m", "legacy_fluid", *flags, str(program)], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "fluid" in done.stdout and "ccache" not in done.stderr, (flags, done.stderr)


def test_python_m_paddle_palm_ops_hides_the_ccache_note(tmp_path):
    if ops.load() is None:
        pytest.skip(f"the oneDNN operator is not built here: {ops.unavailable_reason()}")
    done = _run(["-m", "paddle_palm.ops", "--no-download"], cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ccache" not in done.stderr, done.stderr
