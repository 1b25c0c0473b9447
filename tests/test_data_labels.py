"""Labels (SPEC 1.2): training labels from file names, validation labels from the csv/xlsx sheet."""

from pathlib import Path

import pandas as pd
import pytest

from paddle_palm.data import label_from_filename, read_labels
from paddle_palm.data.labels import labels_to_csv
from paddle_palm.errors import LabelError, MissingFileError


@pytest.mark.parametrize("name, label", [
    ("P0001.jpg", 1), ("H0026.jpg", 0), ("N0161.jpg", 0),
    ("/data/PALM-Training400/P0213.jpg", 1), (Path("some dir/H0001.jpg"), 0),
])
def test_label_from_filename(name, label):
    assert label_from_filename(name) == label


@pytest.mark.parametrize("name", ["V0001.jpg", "p0001.jpg", "X.jpg", "", "/data/P-folder/V0001.jpg", ".DS_Store"])
def test_unknown_prefix_is_a_label_error_naming_the_file(name):
    with pytest.raises(LabelError) as info:
        label_from_filename(name)
    assert "H" in str(info.value) and "P" in str(info.value)
    if name:
        assert name in str(info.value)


def test_labels_of_the_real_training_folder(shared_palm):
    names = sorted(p.name for p in (shared_palm / "PALM-Training400").iterdir())
    labels = [label_from_filename(n) for n in names]
    assert len(names) == 400 and sum(labels) == 213  # SPEC 1.2: H 26, N 161, P 213


def _csv(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_and_xlsx_give_the_same_table(tmp_path):
    text = "ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,0,1157.74,1019.87\n2,V0002.jpg,1,1285.82,1080.47\n"
    from_csv = read_labels(_csv(tmp_path, text))
    xlsx = tmp_path / "sheet.xlsx"
    pd.read_csv(tmp_path / "labels.csv").to_excel(xlsx, index=False)
    from_xlsx = read_labels(xlsx)
    pd.testing.assert_frame_equal(from_csv, from_xlsx)
    assert list(from_csv["imgName"]) == ["V0001.jpg", "V0002.jpg"]
    assert list(from_csv["Label"]) == [0, 1] and from_csv["Label"].dtype == "int64"
    assert list(from_csv.columns) == ["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"]


def test_real_sheet_and_its_csv_copy(shared_palm):
    xlsx = read_labels(shared_palm / "PALM-Validation-GT" / "PM_Label_and_Fovea_Location.xlsx")
    csv = read_labels(shared_palm / "labels.csv")
    pd.testing.assert_frame_equal(xlsx, csv)
    assert len(xlsx) == 100 and xlsx["imgName"].iloc[0] == "V0001.jpg"


def test_labels_to_csv_reproduces_the_course_csv(shared_palm, tmp_path):
    table = read_labels(shared_palm / "PALM-Validation-GT" / "PM_Label_and_Fovea_Location.xlsx")
    out = tmp_path / "labels.csv"
    labels_to_csv(table, out)
    assert out.read_bytes() == (shared_palm / "labels.csv").read_bytes()


def test_float_labels_and_spaces_are_tolerated(tmp_path):
    table = read_labels(_csv(tmp_path, "imgName,Label\n V0001.jpg ,1.0\nV0002.jpg,0\n"))
    assert list(table["imgName"]) == ["V0001.jpg", "V0002.jpg"] and list(table["Label"]) == [1, 0]


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffimgName,Label\nV0001.jpg,1\n".encode("utf-8"))
    assert list(read_labels(path)["Label"]) == [1]


@pytest.mark.parametrize("text, match", [
    ("ID,name,Label\n1,V0001.jpg,0\n", "missing column.*imgName"),
    ("ID,imgName,Fovea_X\n1,V0001.jpg,0\n", "missing column.*Label"),
    ("imgName,Label\nV0001.jpg,2\n", r"row 2 \(V0001.jpg\): label '2'; expected 0 or 1"),
    ("imgName,Label\nV0001.jpg,0\nV0002.jpg,\n", r"row 3 \(V0002.jpg\): label empty \(NaN\)"),
    ("imgName,Label\nV0001.jpg,NaN\n", "label empty"),
    ("imgName,Label\nV0001.jpg,yes\n", "label 'yes'"),
    ("imgName,Label\nV0001.jpg,0.5\n", "label '0.5'"),
    ("imgName,Label\nV0001.jpg,-1\n", "label '-1'"),
    ("imgName,Label\nV0001.jpg,0\nV0001.jpg,1\n", "listed twice"),
    ("imgName,Label\n,0\n", "empty imgName"),
    ("imgName,Label\n../../etc/passwd,0\n", "not a plain file name"),
    ("imgName,Label\n", "no rows"),
    ("ID,imgName,Label,Label \n1,V0001.jpg,0,1\n", "2 columns named Label; expected one"),
    (" imgName,imgName,Label\nV0001.jpg,V0002.jpg,0\n", "2 columns named imgName"),
    ("", "cannot read"),
])
def test_malformed_sheets_are_label_errors(tmp_path, text, match):
    path = _csv(tmp_path, text)
    with pytest.raises(LabelError, match=match) as info:
        read_labels(path)
    assert str(path) in str(info.value)


def test_unreadable_xlsx_is_a_label_error(tmp_path):
    path = tmp_path / "PM_Label_and_Fovea_Location.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(LabelError, match="cannot read the label sheet as a xlsx"):
        read_labels(path)
    binary = tmp_path / "labels.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x82 garbage")
    with pytest.raises(LabelError, match="cannot read"):
        read_labels(binary)


def test_xlsx_with_a_bad_label(tmp_path):
    path = tmp_path / "sheet.xlsx"
    pd.DataFrame({"ID": [1, 2], "imgName": ["V0001.jpg", "V0002.jpg"], "Label": [1, 3]}).to_excel(path, index=False)
    with pytest.raises(LabelError, match=r"row 3 \(V0002.jpg\): label 3"):
        read_labels(path)


def test_missing_sheet(tmp_path):
    with pytest.raises(MissingFileError, match="label sheet not found"):
        read_labels(tmp_path / "labels.csv")


def test_workbook_bomb_is_refused(tmp_path, monkeypatch):
    from paddle_palm.data import labels as labels_module

    path = tmp_path / "sheet.xlsx"
    pd.DataFrame({"imgName": ["V0001.jpg"], "Label": [1]}).to_excel(path, index=False)
    monkeypatch.setattr(labels_module, "MAX_WORKBOOK_BYTES", 1000)
    with pytest.raises(LabelError, match="over the 1,000-byte limit"):
        read_labels(path)
