"""Seed 004's list files and their dataset, with the seed's two bugs fixed (SPEC 1.2, 1.4)."""

import numpy as np
import pytest
from PIL import Image

from paddle_palm.data.listfile import (
    ListFileDataset,
    parse_list_line,
    read_list_file,
    write_list_file,
    write_palm_list_files,
)
from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.data.transforms import normalize_b, padding_black
from paddle_palm.errors import DataError, LabelError, MissingFileError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_palm(tmp_path_factory.mktemp("synthetic") / "palm", n_train=6, n_valid=4, image_size=64)


def test_round_trip_with_spaces_in_paths(tmp_path):
    samples = [("/data/my photos/P0001.jpg", 1), ("relative dir/ H0002.jpg", 0), ("plain.jpg", 7),
               (" leading space", 0), ("odd\x85line\u2028breaks\x0c.jpg", 1), ("tab\tin.jpg", 2)]
    path = write_list_file(samples, tmp_path / "train.txt")
    assert path.read_text(encoding="utf-8").splitlines()[0] == "/data/my photos/P0001.jpg 1"
    assert read_list_file(path) == samples


def test_blank_lines_tabs_and_crlf(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a b.jpg 1\r\n\r\nc.jpg\t0\r\n   \nd.jpg 1   \n")
    assert read_list_file(path) == [("a b.jpg", 1), ("c.jpg", 0), ("d.jpg", 1)]


@pytest.mark.parametrize("line, match", [
    ("just_a_path.jpg", "expected '<image path> <label>'"),
    ("x.jpg one", "not a non-negative integer"),
    ("x.jpg -1", "not a non-negative integer"),
    ("x.jpg 1.0", "not a non-negative integer"),
    (" 1", "empty image path"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, line, match):
    path = tmp_path / "list.txt"
    path.write_text(f"good.jpg 1\n{line}\n", encoding="utf-8")
    with pytest.raises(LabelError, match=match) as info:
        read_list_file(path)
    assert f"{path}, line 2" in str(info.value)


def test_parse_line_and_writer_checks():
    assert parse_list_line("") is None
    assert parse_list_line("a  b.jpg 0  ") == ("a  b.jpg", 0)
    assert parse_list_line("two spaces.jpg \t 0") == ("two spaces.jpg", 0)
    assert parse_list_line("a\u2028b\x85.jpg 1") == ("a\u2028b\x85.jpg", 1)
    with pytest.raises(LabelError):
        write_list_file([("bad\npath.jpg", 1)], "/nonexistent/never-written.txt")
    with pytest.raises(LabelError):
        write_list_file([("x.jpg", -1)], "/nonexistent/never-written.txt")
    for bad in ("\ufeffbom.jpg", "surrogate\udc80.jpg", "cr\r.jpg", "trailing.jpg ", "tab.jpg\t"):
        with pytest.raises(LabelError):
            write_list_file([(bad, 0)], "/nonexistent/never-written.txt")


def test_non_utf8_and_missing_list_files(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xff\xfe\xfa 1\n")
    with pytest.raises(LabelError, match="not a UTF-8"):
        read_list_file(path)
    with pytest.raises(MissingFileError):
        read_list_file(tmp_path / "none.txt")


def test_palm_list_files_and_dataset(synthetic, tmp_path):
    written = write_palm_list_files(synthetic, tmp_path)
    train = read_list_file(written["train"])
    valid = read_list_file(written["valid"])
    assert len(train) == 6 and len(valid) == 4
    assert [label for _, label in train] == [int(p.rsplit("/", 1)[-1][0] == "P") for p, _ in train]

    dataset = ListFileDataset(written["valid"], train=False, image_size=56)
    image, label = dataset[1]
    with Image.open(valid[1][0]) as img:
        expected = normalize_b(np.asarray(padding_black(img.convert("RGB"), 56)))
    assert np.array_equal(image, expected) and label == valid[1][1] and isinstance(label, np.int64)
    # Validation is never augmented (seed 004 flips it): the same item twice is identical.
    assert np.array_equal(dataset[1][0], image)


def test_training_list_dataset_flips_reproducibly(synthetic, tmp_path):
    written = write_palm_list_files(synthetic, tmp_path)
    a = ListFileDataset(written["train"], train=True, image_size=32, seed=3)
    b = ListFileDataset(written["train"], train=True, image_size=32, seed=3)
    plain = ListFileDataset(written["train"], train=False, image_size=32)
    assert all(np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))
    changed = [not np.array_equal(a[i][0], plain[i][0]) for i in range(len(a))]
    assert any(changed)
    for i in range(len(a)):  # a flip never changes the content, only its orientation
        variants = [plain[i][0], plain[i][0][:, :, ::-1], plain[i][0][:, ::-1], plain[i][0][:, ::-1, ::-1]]
        assert any(np.array_equal(a[i][0], v) for v in variants)


def test_relative_paths_with_spaces_resolve_against_the_list_file(synthetic, tmp_path):
    folder = tmp_path / "my images"
    folder.mkdir()
    source = synthetic / "PALM-Training400" / "P0001.jpg"
    (folder / "P 0001.jpg").write_bytes(source.read_bytes())
    path = write_list_file([("my images/P 0001.jpg", 1)], tmp_path / "train.txt")
    dataset = ListFileDataset(path)
    assert len(dataset) == 1 and dataset[0][1] == 1


def test_missing_image_and_empty_list(tmp_path):
    path = write_list_file([("absent.jpg", 0)], tmp_path / "list.txt")
    with pytest.raises(MissingFileError, match="absent.jpg"):
        ListFileDataset(path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="names no images"):
        ListFileDataset(tmp_path / "empty.txt")
