"""prepare_palm and tools/prepare_data.py: the three archives to a dataset folder, and every way they go wrong."""

import functools
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile

import cv2
import numpy as np
import pandas as pd
import pytest

from paddle_palm.data import archives as archives_module
from paddle_palm.data import prepare_palm, read_labels
from paddle_palm.data.archives import check_member_name, is_prepared
from paddle_palm.errors import ArchiveError, DataError, MissingFileError


@functools.lru_cache(maxsize=None)
def tiny_jpeg(seed=0):
    rng = np.random.default_rng(seed)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


def zip_bytes(members):
    """A zip holding ``{name: bytes}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def _sheet_bytes(rows):
    buffer = io.BytesIO()
    frame = pd.DataFrame(rows, columns=["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"])
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


def sheet_bytes(rows):
    """An xlsx label sheet holding ``rows`` (cached: writing a workbook is the slow part of these tests)."""
    return _sheet_bytes(tuple(tuple(r) for r in rows))


def make_archives(folder, train=("H0001.jpg", "N0001.jpg", "P0001.jpg", "P0002.jpg"),
                  valid=(("V0001.jpg", 1), ("V0002.jpg", 0)), nested=True):
    """Write training.zip / validation.zip / valid_gt.zip in the original layout (SPEC 1.1)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {f"PALM-Training400/{n}": tiny_jpeg(i) for i, n in enumerate(train)}
    if nested:
        inner = zip_bytes(images)
        outer = {"PALM-Training400/PALM-Training400.zip": inner,
                 "PALM-Training400/PALM-Training400-Annotation-D&F.zip": zip_bytes({"README.txt": b"x"}),
                 "PALM-Training400/PALM-Training400-Annotation-Lession.zip": zip_bytes({"README.txt": b"x"})}
    else:
        outer = images
    (folder / "training.zip").write_bytes(zip_bytes(outer))
    (folder / "validation.zip").write_bytes(
        zip_bytes({f"PALM-Validation400/{n}": tiny_jpeg(100 + i) for i, (n, _) in enumerate(valid)}))
    rows = [(i + 1, n, label, 100.0 + i, 200.5) for i, (n, label) in enumerate(valid)]
    (folder / "valid_gt.zip").write_bytes(
        zip_bytes({"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx": sheet_bytes(rows)}))
    return folder


def snapshot(folder):
    """Every file under ``folder`` with its content, for 'nothing changed' checks."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the real archives


def test_prepare_the_mini_archives(shared_zips, tmp_path):
    out = prepare_palm(shared_zips, tmp_path / "palm")
    assert out == tmp_path / "palm"
    train = sorted(p.name for p in (out / "PALM-Training400").iterdir())
    assert len(train) == 24
    assert [sum(n.startswith(c) for n in train) for c in "HNP"] == [8, 8, 8]
    valid = sorted(p.name for p in (out / "PALM-Validation400").iterdir())
    assert valid == [f"V{i:04d}.jpg" for i in range(1, 13)]
    xlsx = out / "PALM-Validation-GT" / "PM_Label_and_Fovea_Location.xlsx"
    from_xlsx = pd.read_excel(xlsx)
    for csv in (out / "PALM-Validation-GT" / "labels.csv", out / "labels.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(csv), from_xlsx, check_dtype=False)
    assert len(read_labels(out / "labels.csv")) == 12
    # Extracted images are the archive's bytes.
    with zipfile.ZipFile(shared_zips / "validation.zip") as zf:
        assert (out / "PALM-Validation400" / "V0003.jpg").read_bytes() == zf.read("PALM-Validation400/V0003.jpg")
    # Annotation zips and temporaries are not left behind.
    names = {p.name for p in out.rglob("*")}
    assert not any("Annotation" in n or n.endswith(".zip") or n.startswith(".prepare") for n in names)


def test_second_run_is_quick_and_writes_nothing(shared_zips, tmp_path):
    out = prepare_palm(shared_zips, tmp_path / "palm")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    start = time.perf_counter()
    assert prepare_palm(shared_zips, out) == out
    assert time.perf_counter() - start < 0.5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert is_prepared(shared_zips, out)


def test_a_deleted_image_is_restored_by_the_next_run(shared_zips, tmp_path):
    out = prepare_palm(shared_zips, tmp_path / "palm")
    (out / "PALM-Training400" / "P0003.jpg").unlink()
    assert not is_prepared(shared_zips, out)
    prepare_palm(shared_zips, out)
    assert (out / "PALM-Training400" / "P0003.jpg").is_file()
    assert len(list((out / "PALM-Training400").iterdir())) == 24


def test_training_archive_alone_is_enough(shared_zips, tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    shutil.copy(shared_zips / "training.zip", archives)
    out = prepare_palm(archives, tmp_path / "palm")
    assert len(list((out / "PALM-Training400").iterdir())) == 24
    assert not (out / "PALM-Validation400").exists()


def load_tool(repo_root):
    """tools/prepare_data.py as a module, to call its main() in this process."""
    spec = importlib.util.spec_from_file_location("prepare_data_tool", repo_root / "tools" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_prints_a_summary(shared_zips, tmp_path, repo_root, capsys):
    tool = load_tool(repo_root)
    argv = ["--archives", str(shared_zips), "--out", str(tmp_path / "palm"), "--quiet"]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "training images: 24 (H 8, N 8, P 8" in out
    assert "validation images: 12" in out and "label rows: 12" in out
    assert tool.main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out


# --------------------------------------------------------------------------- small archives made here


def test_small_archives_both_layouts(tmp_path):
    for nested in (True, False):
        archives = make_archives(tmp_path / f"a{nested}", nested=nested)
        out = prepare_palm(archives, tmp_path / f"out{nested}")
        assert sorted(p.name for p in (out / "PALM-Training400").iterdir()) == [
            "H0001.jpg", "N0001.jpg", "P0001.jpg", "P0002.jpg"]
        assert list(read_labels(out / "labels.csv")["Label"]) == [1, 0]


def _expect_refusal(archives, tmp_path, match, existing=False):
    out = tmp_path / "palm"
    if existing:
        good = make_archives(tmp_path / "good")
        prepare_palm(good, out)
    before = snapshot(out)
    with pytest.raises(ArchiveError, match=match) as info:
        prepare_palm(archives, out)
    assert snapshot(out) == before, "the output folder changed"
    if not existing:
        assert not out.exists()
    return str(info.value)


@pytest.mark.parametrize("existing", [False, True])
def test_missing_training_archive(tmp_path, existing):
    archives = make_archives(tmp_path / "a")
    (archives / "training.zip").unlink()
    message = _expect_refusal(archives, tmp_path, "training.zip: archive not found", existing)
    assert "validation.zip" in message


def test_validation_archives_go_together(tmp_path):
    archives = make_archives(tmp_path / "a")
    (archives / "valid_gt.zip").unlink()
    _expect_refusal(archives, tmp_path, "valid_gt.zip: archive not found")


def test_missing_archive_folder(tmp_path):
    with pytest.raises(MissingFileError, match="archive folder not found"):
        prepare_palm(tmp_path / "nowhere", tmp_path / "palm")


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"this is not a zip archive at all", "damaged or not a zip"),
    (zip_bytes({}), "archive is empty"),
])
@pytest.mark.parametrize("which", ["training.zip", "validation.zip", "valid_gt.zip"])
def test_empty_or_corrupt_archives(tmp_path, which, content, match):
    archives = make_archives(tmp_path / "a")
    (archives / which).write_bytes(content)
    message = _expect_refusal(archives, tmp_path, match)
    assert which in message


def test_truncated_archive(tmp_path):
    archives = make_archives(tmp_path / "a")
    data = (archives / "training.zip").read_bytes()
    (archives / "training.zip").write_bytes(data[: len(data) // 2])
    _expect_refusal(archives, tmp_path, "training.zip: damaged", existing=True)


def test_damaged_member_data(tmp_path):
    archives = make_archives(tmp_path / "a")
    path = archives / "validation.zip"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + info.compress_size):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    _expect_refusal(archives, tmp_path, "validation.zip: member .* is damaged", existing=True)


@pytest.mark.parametrize("which, members, match", [
    ("training.zip", {"readme.txt": b"hello"}, "no training images"),
    ("training.zip", {"PALM-Validation400/V0001.jpg": tiny_jpeg()}, "not a PALM training image"),
    ("training.zip", {"PALM-Training400/P0001.jpg": b"not an image"}, "not a JPEG/PNG/BMP image"),
    ("training.zip", {"PALM-Training400/PALM-Training400.zip": b"garbage"}, "damaged or not a zip"),
    ("training.zip", {"a/P0001.jpg": tiny_jpeg(), "b/P0001.jpg": tiny_jpeg(1)}, "two members are named P0001.jpg"),
    ("validation.zip", {"PALM-Validation-GT/notes.txt": b"x"}, "no validation images"),
    ("valid_gt.zip", {"PALM-Validation-GT/labels.txt": b"x"}, "expected one label sheet"),
    ("valid_gt.zip", {"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx":
                      sheet_bytes([(1, "V0001.jpg", 2, 0.0, 0.0), (2, "V0002.jpg", 0, 0.0, 0.0)])},
     r"bad label sheet: .*label 2; expected 0 or 1"),
    ("valid_gt.zip", {"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx":
                      sheet_bytes([(1, "V0001.jpg", 1, 0.0, 0.0), (2, "V0999.jpg", 0, 0.0, 0.0)])},
     "names V0999.jpg, not found in validation.zip"),
    ("valid_gt.zip", {"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx": b"PK\x03\x04 broken"},
     "bad label sheet: .*cannot read"),
])
def test_wrong_content(tmp_path, which, members, match):
    archives = make_archives(tmp_path / "a")
    (archives / which).write_bytes(zip_bytes(members))
    message = _expect_refusal(archives, tmp_path, match)
    assert which in message


def test_swapped_archives_are_refused(tmp_path):
    archives = make_archives(tmp_path / "a")
    os.replace(archives / "training.zip", archives / "tmp.zip")
    os.replace(archives / "validation.zip", archives / "training.zip")
    os.replace(archives / "tmp.zip", archives / "validation.zip")
    _expect_refusal(archives, tmp_path, "not a PALM training image")


@pytest.mark.parametrize("name", ["../evil.jpg", "PALM-Training400/../../evil.jpg", "/tmp/P0001.jpg",
                                  "..\\evil.jpg", "C:\\evil\\P0001.jpg", "C:/evil/P0001.jpg",
                                  "PALM-Training400/..\\..\\P0009.jpg"])
@pytest.mark.parametrize("where", ["outer", "nested"])
def test_zip_slip_is_refused(tmp_path, name, where):
    archives = make_archives(tmp_path / "a" / "b")
    images = {"PALM-Training400/P0001.jpg": tiny_jpeg(), name: tiny_jpeg(1)}
    if where == "nested":
        (archives / "training.zip").write_bytes(zip_bytes({"PALM-Training400/PALM-Training400.zip": zip_bytes(images)}))
    else:
        (archives / "training.zip").write_bytes(zip_bytes(images))
    before = snapshot(tmp_path)
    message = _expect_refusal(archives, tmp_path / "a", "refusing to extract")
    assert name in message or repr(name)[1:-1] in message
    assert snapshot(tmp_path) == before  # nothing written anywhere


def test_symlink_member_is_refused(tmp_path):
    archives = make_archives(tmp_path / "a")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("PALM-Validation400/V0001.jpg")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    (archives / "validation.zip").write_bytes(buffer.getvalue())
    _expect_refusal(archives, tmp_path, "symbolic link")


@pytest.mark.parametrize("name", ["ok/../../x", "/abs", "\\abs", "D:x", "a\x00b"])
def test_member_name_check(name):
    with pytest.raises(ArchiveError):
        check_member_name(name, "t.zip")
    assert check_member_name("PALM-Training400/./P0001.jpg") == ["PALM-Training400", "P0001.jpg"]


def test_zip_bomb_by_ratio(tmp_path):
    archives = make_archives(tmp_path / "a")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("PALM-Validation400/V0001.jpg", tiny_jpeg())
        zf.writestr("PALM-Validation400/V0002.jpg", b"\xff\xd8\xff" + bytes(20 * 1024 ** 2))
    (archives / "validation.zip").write_bytes(buffer.getvalue())
    _expect_refusal(archives, tmp_path, "zip bomb")


def test_zip_bomb_by_declared_size(tmp_path, monkeypatch):
    archives = make_archives(tmp_path / "a")
    monkeypatch.setattr(archives_module, "MAX_MEMBER_BYTES", 100)
    _expect_refusal(archives, tmp_path, "over the 100-byte limit")
    monkeypatch.setattr(archives_module, "MAX_MEMBER_BYTES", 10 ** 9)
    monkeypatch.setattr(archives_module, "MAX_TOTAL_BYTES", 1000)
    _expect_refusal(archives, tmp_path, "in all, over the 1,000-byte limit")


def test_failed_rerun_keeps_the_previous_dataset(tmp_path):
    archives = make_archives(tmp_path / "a")
    out = prepare_palm(archives, tmp_path / "palm")
    before = snapshot(out)
    (archives / "valid_gt.zip").write_bytes(b"broken")
    with pytest.raises(ArchiveError):
        prepare_palm(archives, out)
    assert snapshot(out) == before
    assert not any(p.name.startswith(".prepare") for p in out.iterdir())


def test_changed_archives_are_prepared_again(tmp_path):
    archives = make_archives(tmp_path / "a")
    out = prepare_palm(archives, tmp_path / "palm")
    make_archives(archives, train=("H0001.jpg", "P0007.jpg"))
    prepare_palm(archives, out)
    assert sorted(p.name for p in (out / "PALM-Training400").iterdir()) == ["H0001.jpg", "P0007.jpg"]


def test_cli_error_is_one_line(tmp_path, repo_root):
    archives = make_archives(tmp_path / "a")
    (archives / "training.zip").write_bytes(b"")
    result = subprocess.run([sys.executable, str(repo_root / "tools" / "prepare_data.py"), "--archives",
                             str(archives), "--out", str(tmp_path / "palm")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "training.zip" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "palm").exists()


def test_a_folder_not_written_by_prepare_palm_is_never_replaced(tmp_path):
    archives = make_archives(tmp_path / "a")
    out = tmp_path / "palm"
    (out / "PALM-Training400").mkdir(parents=True)
    (out / "PALM-Training400" / "mine.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="was not written by prepare_palm"):
        prepare_palm(archives, out)
    assert (out / "PALM-Training400" / "mine.jpg").read_bytes() == b"precious"
    (out / "notes.txt").write_text("other files are fine")
    shutil.rmtree(out / "PALM-Training400")
    prepare_palm(archives, out)
    assert (out / "notes.txt").exists() and len(list((out / "PALM-Training400").iterdir())) == 4


def test_work_folders_of_killed_runs_are_removed(tmp_path):
    archives = make_archives(tmp_path / "a")
    out = tmp_path / "palm"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".prepare_palm-{dead.stdout.strip()}-abcd"
    (stale / "PALM-Training400").mkdir(parents=True)
    prepare_palm(archives, out)
    assert not stale.exists()


def test_importing_the_data_package_does_not_import_paddle():
    code = ("import sys, paddle_palm.data as d; d.label_from_filename('P1.jpg'); "
            "assert 'paddle' not in sys.modules, 'paddle imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
