"""Archives cannot fill the disk: the extraction budget across nested archives, watched while it runs."""

import io
import os
import subprocess
import sys
import threading
import zipfile

import pytest

from paddle_palm.data import archives
from paddle_palm.data.archives import prepare_palm
from paddle_palm.errors import ArchiveError

MEMBER_BYTES = 15 * 1024 ** 2  # each under the 16 MB threshold of the per-member ratio check


def _bomb_members(count, prefix):
    header = b"\xff\xd8\xff\xe0"  # a JPEG signature, then zeros: compresses about 1000 times
    data = header + bytes(MEMBER_BYTES - len(header))
    return [(f"{prefix}{i:04d}.jpg", data) for i in range(count)]


def _zip(members, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def nested_bomb(tmp_path_factory):
    """A ``training.zip`` of about 200 KB whose nested zip holds 12 members of 15 MB (180 MB)."""
    folder = tmp_path_factory.mktemp("bomb")
    inner = _zip(_bomb_members(12, "PALM-Training400/P"))
    outer = _zip([("PALM-Training400/PALM-Training400.zip", inner)], zipfile.ZIP_STORED)
    (folder / "training.zip").write_bytes(outer)
    return folder


class DiskWatcher:
    """Polls the bytes under a folder while something runs; remembers the largest total seen."""

    def __init__(self, folder):
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self):
        total = 0
        for root, _, files in os.walk(self.folder):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            self._stop.wait(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


def test_a_nested_bomb_is_refused_before_it_writes_much(nested_bomb, tmp_path):
    size = (nested_bomb / "training.zip").stat().st_size
    out = tmp_path / "out"
    out.mkdir()
    with DiskWatcher(out) as watcher, pytest.raises(ArchiveError) as info:
        prepare_palm(nested_bomb, out)
    message = str(info.value)
    assert "budget" in message and "training.zip" in message and "\n" not in message
    assert watcher.peak <= 100 * size, (watcher.peak, size)
    assert watcher.peak <= archives.MAX_EXPANSION * size
    assert os.listdir(out) == []  # nothing left behind


def test_many_flat_members_are_refused_by_the_budget(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "training.zip").write_bytes(_zip(_bomb_members(4, "PALM-Training400/P")))
    with pytest.raises(ArchiveError, match="budget"):
        prepare_palm(tmp_path / "a", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_free_disk_space_is_checked_first(tmp_path):
    """More than the disk holds is refused before writing (the real free space of the test folder)."""
    budget = archives.ExtractionBudget(__file__, tmp_path)
    free = archives.shutil.disk_usage(tmp_path).free
    with pytest.raises(ArchiveError, match="bytes free"):
        budget.limit = free * 2
        budget.reserve(free, "training.zip")


def test_the_real_archives_fit_the_budget_with_room(shared_zips):
    """The mini PALM archives keep the real layout; they write about 2x their size, far under the budget."""
    for name in ("training.zip", "validation.zip", "valid_gt.zip"):
        with zipfile.ZipFile(shared_zips / name) as zf:
            declared = sum(i.file_size for i in zf.infolist())
            for info in zf.infolist():
                if info.filename.endswith(".zip"):
                    with zf.open(info) as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as inner:
                        declared += sum(i.file_size for i in inner.infolist())
        assert declared < 3 * (shared_zips / name).stat().st_size < archives.MAX_EXPANSION * (shared_zips / name).stat().st_size


def test_prepare_data_tool_refuses_the_bomb_in_one_line(repo_root, nested_bomb, tmp_path):
    result = subprocess.run([sys.executable, str(repo_root / "tools" / "prepare_data.py"), "--archives",
                             str(nested_bomb), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "budget" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
