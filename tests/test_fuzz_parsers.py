"""Fuzzing the parsers that read what users type and download (issue 7, point 3).

Every parser that sees user input must either return a well-formed value or
raise one of our own error types (:class:`paddle_palm.errors.PalmError`): never a
``KeyError`` from pandas, a ``BadZipFile``, a ``UnicodeDecodeError`` or an
``IndexError``.  Each test below states what a well-formed value is, so a parser
that silently accepts garbage fails too.

Parsers covered:

* :func:`paddle_palm.data.read_labels` - the label sheet, as csv and as xlsx;
* :mod:`paddle_palm.data.listfile` - seed 004's ``path label`` list files;
* the archive member-name check of :mod:`paddle_palm.data` (zip-slip);
* :func:`paddle_palm.data.read_image` - image files, including damaged ones;
* the command-line number types of :mod:`paddle_palm.cli`.

The number of examples is kept small (``deadline=None``, tens of examples per
property) so that the whole module runs in a few seconds; hypothesis keeps the
failing examples it finds in ``.hypothesis/`` and replays them first.
"""

import argparse
import contextlib
import io
import math
import string

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from paddle_palm import cli  # noqa: E402
from paddle_palm.errors import PalmError  # noqa: E402

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# --------------------------------------------------------------------------- CLI numbers

NUMBER_TYPES = {
    # name: (parser, python type, lower bound, lower bound inclusive, upper bound)
    "positive_int": (cli.positive_int, int, 1, True, None),
    "non_negative_int": (cli.non_negative_int, int, 0, True, None),
    "positive_float": (cli.positive_float, float, 0.0, False, None),
    "non_negative_float": (cli.non_negative_float, float, 0.0, True, None),
    "probability": (cli.probability, float, 0.0, True, 1.0),
}

number_like = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789+-.eE_ xinfatINFA", max_size=10),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e-400", "0", "-0", "0.0",
                     "1_000", " 3 ", "0x10", "1e3", "True", "\x00", "٣", "9" * 5000]),
)


@pytest.mark.parametrize("name", sorted(NUMBER_TYPES))
@FUZZ
@given(text=number_like)
def test_cli_number_types_accept_only_finite_values_in_range(name, text):
    """A number type returns a finite value of its kind within its bounds, or refuses with argparse's error."""
    parse, kind, low, low_inclusive, high = NUMBER_TYPES[name]
    try:
        value = parse(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc).startswith("expected"), f"{name}({text!r}) refused without saying what was expected: {exc}"
        return
    assert type(value) is kind, f"{name}({text!r}) returned {type(value).__name__}"
    assert math.isfinite(value), f"{name}({text!r}) accepted the non-finite value {value!r}"
    assert value > low or (low_inclusive and value == low), f"{name}({text!r}) accepted {value!r} below {low}"
    if high is not None:
        assert value <= high, f"{name}({text!r}) accepted {value!r} above {high}"


@FUZZ
@given(text=number_like, name=st.sampled_from(sorted(NUMBER_TYPES)))
def test_cli_parser_reports_a_bad_number_in_one_line(text, name):
    """Through :class:`paddle_palm.cli.ArgumentParser`: a bad value exits 2 with one line naming the option."""
    parser = cli.ArgumentParser(prog="tool.py")
    parser.add_argument("--value", type=NUMBER_TYPES[name][0], default=None)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args([f"--value={text}"])
        except SystemExit as stop:
            message = err.getvalue()
            assert stop.code == 2
            assert message.endswith("\n") and message.count("\n") == 1, f"not one line: {message!r}"
            assert message.startswith("tool.py: error: argument --value:"), message
            assert "Traceback" not in message
            return
    assert args.value is not None


# --------------------------------------------------------------------------- label sheets

# Cells that users' sheets really contain: good labels, labels written as floats or text,
# out-of-range values, empty cells, text, very large numbers, names with folders or spaces.
label_cells = st.one_of(
    st.sampled_from(["0", "1", "0.0", "1.0", " 1 ", "2", "-1", "nan", "NaN", "", "yes", "1e0", "inf",
                     "0.5", "True", "1,0", "١"]),
    st.integers(min_value=-3, max_value=3).map(str),
    st.text(max_size=4),
)
name_cells = st.one_of(
    st.sampled_from(["V0001.jpg", "V0002.jpg", "V0001.jpg", " V0003.jpg ", "", "../x.jpg", "/etc/passwd",
                     "a\\b.jpg", "..", ".", "V 4.jpg", "nan", "0", "V0005.JPG"]),
    st.text(alphabet=string.ascii_letters + string.digits + "._-/ \\\"',", max_size=10),
)
header_sets = st.one_of(
    st.just(["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"]),
    st.just(["imgName", "Label"]),
    st.permutations(["imgName", "Label", "ID"]).map(list),
    st.lists(st.sampled_from(["imgName", "Label", "label", "ImgName", " imgName ", "Label ", "ID", "", "x"]),
             min_size=0, max_size=5),
)


def _csv_field(value):
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def label_tables(draw):
    """A header and rows in the shape of the validation sheet: a valid sheet, then 0-2 mutations."""
    header = ["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"]
    good_labels = st.sampled_from(["0", "1", "1.0", "0.0", " 1 ", "1e0"])
    rows = [[str(i + 1), f"V{i + 1:04d}.jpg", draw(good_labels), "1157.74", "1019.87"]
            for i in range(draw(st.integers(min_value=0, max_value=5)))]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        kind = draw(st.sampled_from(["header", "name", "label", "duplicate", "ragged", "extra-column"]))
        if kind == "header":
            header = draw(header_sets)
        elif kind == "name" and rows:
            row = draw(st.sampled_from(rows))
            row[1:2] = [draw(name_cells)]
        elif kind == "label" and rows:
            row = draw(st.sampled_from(rows))
            row[2:3] = [draw(label_cells)]
        elif kind == "duplicate" and rows:
            rows.append(list(draw(st.sampled_from(rows))))
        elif kind == "ragged" and rows:
            row = draw(st.sampled_from(rows))
            del row[draw(st.integers(min_value=0, max_value=len(row))):]
        elif kind == "extra-column":
            header = header + [draw(st.text(max_size=4))]
    return header, rows


def _assert_valid_table(table, path):
    """What :func:`read_labels` promises about what it returns (SPEC 1.2)."""
    assert "imgName" in table.columns and "Label" in table.columns
    assert len(table) > 0, f"{path}: an empty sheet was accepted"
    labels = list(table["Label"])
    assert all(int(v) == v and v in (0, 1) for v in labels), f"labels outside {{0, 1}} accepted: {labels}"
    names = list(table["imgName"])
    assert all(isinstance(n, str) and n.strip() == n and n for n in names), names
    assert all("/" not in n and "\\" not in n and n not in (".", "..") for n in names), names
    assert len(set(names)) == len(names), f"duplicate image names accepted: {names}"


def _read_labels_or_our_error(path):
    from paddle_palm.data import read_labels

    try:
        table = read_labels(path)
    except PalmError as exc:
        assert str(path) in str(exc) or path.name in str(exc), f"the message does not name the file: {exc}"
        hypothesis.event(f"refused: {type(exc).__name__}")
        return None
    hypothesis.event("accepted")
    _assert_valid_table(table, path)
    return table


@FUZZ
@given(table=label_tables(), newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
# Found by this test: two columns that are both Label once their spaces are stripped.
@example(table=(["imgName", "Label", "Label "], [["V0001.jpg", "0", "1"]]), newline="\n", bom=False)
def test_read_labels_csv_structured(tmp_path_factory, table, newline, bom):
    header, rows = table
    lines = [",".join(_csv_field(c) for c in header)] + [",".join(_csv_field(c) for c in row) for row in rows]
    text = newline.join(lines) + newline
    path = tmp_path_factory.mktemp("csv") / "labels.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    _read_labels_or_our_error(path)


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".xlsx", ".txt", ""]))
@example(data=b"", suffix=".csv")
@example(data=b"PK\x03\x04garbage", suffix=".xlsx")
@example(data=b"imgName,Label\n", suffix=".csv")
@example(data=b"imgName,Label\nV0001.jpg,1\n\xff\xfe\n", suffix=".csv")
@example(data=b"imgName\tLabel\nV0001.jpg\t1\n", suffix=".csv")
@example(data=b'imgName,Label\n"V0001.jpg,1\n', suffix=".csv")
def test_read_labels_arbitrary_bytes(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("raw") / ("labels" + suffix)
    path.write_bytes(data)
    _read_labels_or_our_error(path)


XLSX_FUZZ = settings(FUZZ, max_examples=25)


@XLSX_FUZZ
@given(table=label_tables(), numeric=st.booleans())
def test_read_labels_xlsx_structured(tmp_path_factory, table, numeric):
    """The same sheets written as real xlsx workbooks (cells as numbers where they parse)."""
    openpyxl = pytest.importorskip("openpyxl")
    header, rows = table
    book = openpyxl.Workbook()
    sheet = book.active
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    sheet.append([ILLEGAL_CHARACTERS_RE.sub("", h) for h in header])

    def cell(value):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)  # a workbook cannot hold control characters
        if numeric:
            with contextlib.suppress(ValueError):
                return float(value) if "." in value or "e" in value.lower() else int(value)
        return value

    for row in rows:
        sheet.append([cell(v) for v in row])
    path = tmp_path_factory.mktemp("xlsx") / "PM_Label_and_Fovea_Location.xlsx"
    book.save(path)
    _read_labels_or_our_error(path)


# --------------------------------------------------------------------------- images


def _tiny_images():
    """A few small valid image files as bytes: JPEG, PNG (gray, RGBA, 16-bit), BMP."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = {}
    for ext, img in ((".jpg", colour), (".png", colour), (".bmp", colour),
                     (".png", colour[:, :, 0]), (".png", np.dstack([colour, colour[:, :, :1]])),
                     (".png", (colour.astype(np.uint16) * 257))):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        out[f"{ext}-{img.ndim}-{img.dtype}-{img.shape[-1]}"] = (ext, buf.tobytes())
    return out


TINY_IMAGES = None


@st.composite
def damaged_images(draw):
    """A valid tiny image, then truncated, with bytes flipped, or with bytes appended."""
    global TINY_IMAGES
    if TINY_IMAGES is None:
        TINY_IMAGES = _tiny_images()
    key = draw(st.sampled_from(sorted(TINY_IMAGES)))
    ext, data = TINY_IMAGES[key]
    data = bytearray(data)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        kind = draw(st.sampled_from(["truncate", "flip", "append", "insert"]))
        if kind == "truncate" and data:
            data = data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
        elif kind == "flip" and data:
            i = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[i] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "append":
            data += draw(st.binary(max_size=20))
        elif kind == "insert" and data:
            i = draw(st.integers(min_value=0, max_value=len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return ext, bytes(data)


@FUZZ
@given(image=damaged_images())
def test_read_image_returns_bgr_or_refuses(tmp_path_factory, image):
    import numpy as np

    from paddle_palm.data import read_image

    ext, data = image
    path = tmp_path_factory.mktemp("img") / ("fuzz" + ext)
    path.write_bytes(data)
    try:
        array = read_image(path)
    except PalmError as exc:
        assert path.name in str(exc)
        return
    assert isinstance(array, np.ndarray) and array.dtype == np.uint8
    assert array.ndim == 3 and array.shape[2] == 3 and min(array.shape[:2]) > 0


# --------------------------------------------------------------------------- list files (seed 004)

list_paths = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + " ./\\_-\t", min_size=1, max_size=20),
    st.text(min_size=1, max_size=12),
    st.sampled_from(["a b/P0001.jpg", "PALM-Training400/H 1.jpg", "/abs/path.jpg", "x\u2028y.jpg", "x\x0cy.jpg",
                     "x\x85y.jpg", "trailing .jpg ", "\ttab.jpg"]),
)


@FUZZ
@given(line=st.one_of(st.text(max_size=40), st.builds(lambda p, label: f"{p} {label}", list_paths, label_cells)))
def test_parse_list_line_returns_a_sample_or_refuses(line):
    from paddle_palm.data.listfile import parse_list_line

    try:
        parsed = parse_list_line(line)
    except PalmError:
        return
    if parsed is None:
        assert not line.strip(), f"a non-blank line was ignored: {line!r}"
        return
    path, label = parsed
    assert isinstance(path, str) and path and path == path.rstrip(" \t"), parsed
    assert type(label) is int and label >= 0, parsed


@FUZZ
@given(samples=st.lists(st.tuples(list_paths, st.integers(min_value=0, max_value=3)), min_size=1, max_size=5))
def test_list_file_round_trip(tmp_path_factory, samples):
    """What :func:`write_list_file` accepts, :func:`read_list_file` reads back unchanged."""
    from paddle_palm.data.listfile import read_list_file, write_list_file

    path = tmp_path_factory.mktemp("list") / "train.txt"
    try:
        write_list_file(samples, path)
    except PalmError:
        assert not path.exists(), "a refused list file was written anyway"
        return
    try:
        back = read_list_file(path)
    except PalmError as exc:
        raise AssertionError(f"write_list_file wrote {samples!r}, read_list_file refused it: {exc}") from None
    assert back == [(p, int(label)) for p, label in samples]


@FUZZ
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe\x00a")
@example(data=b"a 1\nb\n")
@example(data=b"\xef\xbb\xbfP0001.jpg 1\r\n\r\n")
def test_read_list_file_arbitrary_bytes(tmp_path_factory, data):
    from paddle_palm.data.listfile import read_list_file

    path = tmp_path_factory.mktemp("list") / "valid.txt"
    path.write_bytes(data)
    try:
        samples = read_list_file(path)
    except PalmError as exc:
        assert path.name in str(exc)
        return
    for p, label in samples:
        assert isinstance(p, str) and p and type(label) is int and label >= 0


# --------------------------------------------------------------------------- archive member names (zip-slip)

name_parts = st.sampled_from(["..", ".", "", "a", "V0001.jpg", "PALM-Validation400", "C:", "c:", "~", "%2e%2e",
                              "..\\", "\\", "\x00", " ..", ".. ", "...", "\u2025", "con", "x:y"])
member_names = st.one_of(
    st.lists(name_parts, min_size=1, max_size=5).flatmap(
        lambda parts: st.sampled_from(["/", "\\"]).map(lambda sep: sep.join(parts))),
    st.lists(name_parts, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=30),
)


def _inside(base, parts):
    import os

    target = os.path.realpath(os.path.join(base, *parts))
    return target == base or target.startswith(base + os.sep)


@settings(FUZZ, max_examples=200)
@given(name=member_names)
@example(name="../evil.jpg")
@example(name="/etc/evil.jpg")
@example(name="C:\\evil.jpg")
@example(name="a/../../evil.jpg")
@example(name="a\\..\\..\\evil.jpg")
def test_check_member_name_keeps_members_inside(tmp_path_factory, name):
    import os

    from paddle_palm.data.archives import check_member_name

    try:
        parts = check_member_name(name, "fuzz.zip")
    except PalmError as exc:
        assert "fuzz.zip" in str(exc)
        return
    base = os.path.realpath(str(tmp_path_factory.getbasetemp()))
    assert all(p not in ("..", ".", "") and "/" not in p and "\\" not in p and "\x00" not in p for p in parts), parts
    assert not os.path.isabs(name.replace("\\", "/")), f"absolute member name {name!r} accepted"
    assert _inside(base, parts), f"member {name!r} would be written outside the target folder"


@settings(FUZZ, max_examples=25)
@given(names=st.lists(member_names, min_size=1, max_size=3))
def test_prepare_palm_never_writes_outside_out_dir(tmp_path_factory, names):
    """A validation.zip whose members have fuzzed names: prepared or refused, nothing outside ``out``."""
    import os
    import zipfile

    from paddle_palm.data import prepare_palm

    root = tmp_path_factory.mktemp("slip")
    archives, out = root / "archives" / "deep", root / "out" / "deep"
    archives.mkdir(parents=True)
    jpeg = _tiny_jpeg()
    with zipfile.ZipFile(archives / "training.zip", "w") as zf:
        zf.writestr("PALM-Training400/P0001.jpg", jpeg)
        zf.writestr("PALM-Training400/N0001.jpg", jpeg)
    with zipfile.ZipFile(archives / "validation.zip", "w") as zf:
        zf.writestr("PALM-Validation400/V0001.jpg", jpeg)
        for name in names:
            zf.writestr(zipfile.ZipInfo(name.replace("\x00", "_")), jpeg)
    with zipfile.ZipFile(archives / "valid_gt.zip", "w") as zf:
        zf.writestr("PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx", _tiny_sheet())
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    try:
        prepare_palm(archives, out)
        hypothesis.event("prepared")
    except PalmError as exc:
        assert "validation.zip" in str(exc), str(exc)
        hypothesis.event("refused")
    after = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    outside = [p for p in after if p not in before and p != "out" and not p.startswith(os.path.join("out", "deep"))]
    assert not outside, f"files written outside the output folder: {outside}"


_JPEG = None
_SHEET = None


def _tiny_sheet():
    global _SHEET
    if _SHEET is None:
        import openpyxl

        book = openpyxl.Workbook()
        book.active.append(["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"])
        book.active.append([1, "V0001.jpg", 1, 1157.74, 1019.87])
        buf = io.BytesIO()
        book.save(buf)
        _SHEET = buf.getvalue()
    return _SHEET


def _tiny_jpeg():
    global _JPEG
    if _JPEG is None:
        import cv2
        import numpy as np

        ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
        assert ok
        _JPEG = buf.tobytes()
    return _JPEG
