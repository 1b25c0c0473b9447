"""The course's generator readers (SPEC 1.3), compared bit for bit with an independent implementation."""

import os
import random
import shutil

import cv2
import numpy as np
import pytest

from paddle_palm.data.readers import data_loader, valid_data_loader
from paddle_palm.data.transforms import preprocess_a
from paddle_palm.errors import ConfigError, DataError, ImageError, LabelError, MissingFileError

# --------------------------------------------------------------------------- the course, re-implemented here


def course_image(path, size=224):
    """Preprocessing A as SPEC 1.3 describes it, step by step."""
    img = cv2.imread(str(path))
    img = cv2.resize(img, (size, size))
    chw = np.transpose(img, (2, 0, 1)).astype("float32")
    scaled = chw / 255.0
    return scaled * 2.0 - 1.0


def course_batches(paths_and_labels, batch_size):
    """The course's batching: full batches, then the partial rest; float32 [N,1] labels."""
    out = []
    for start in range(0, len(paths_and_labels), batch_size):
        chunk = paths_and_labels[start:start + batch_size]
        imgs = np.array([course_image(p) for p, _ in chunk]).astype("float32")
        labels = np.array([lab for _, lab in chunk]).astype("float32").reshape(-1, 1)
        out.append((imgs, labels))
    return out


def prefix_label(name):
    return {"H": 0, "N": 0, "P": 1}[name[0]]


def assert_same_batches(ours, reference):
    assert len(ours) == len(reference)
    for (x, y), (rx, ry) in zip(ours, reference):
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert x.shape == rx.shape and y.shape == ry.shape
        assert np.array_equal(x, rx), "images differ"
        assert np.array_equal(y, ry), "labels differ"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def palm_subset(shared_palm, tmp_path):
    """13 real training images (a mix of H, N, P) in a folder of their own."""
    folder = tmp_path / "train"
    folder.mkdir()
    names = sorted(os.listdir(shared_palm / "PALM-Training400"))
    for name in names[:4] + names[100:104] + names[-5:]:
        shutil.copy(shared_palm / "PALM-Training400" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def large_images(tmp_path_factory):
    """JPEGs of the originals' sizes (and smaller than 224) with H/N/P names."""
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(3)
    sizes = {"P0001.jpg": (2056, 2124), "N0001.jpg": (1444, 1444), "H0001.jpg": (451, 600), "P0002.jpg": (131, 97)}
    for name, (h, w) in sizes.items():
        small = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


# --------------------------------------------------------------------------- bit-exact comparisons


def test_train_reader_is_bit_exact_over_two_epochs(palm_subset):
    random.seed(11)
    reader = data_loader(str(palm_subset), batch_size=5, mode="train")
    epochs = [list(reader()), list(reader())]

    names = os.listdir(palm_subset)
    random.seed(11)
    for ours in epochs:
        random.shuffle(names)  # in place, once per epoch, as the course does
        expected = course_batches([(palm_subset / n, prefix_label(n)) for n in names], 5)
        assert_same_batches(ours, expected)
    assert [len(b[0]) for b in epochs[0]] == [5, 5, 3]
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1]) or not np.array_equal(epochs[0][0][0], epochs[1][0][0])


def test_eval_mode_keeps_the_listdir_order(palm_subset):
    ours = list(data_loader(str(palm_subset), batch_size=10, mode="eval")())
    names = os.listdir(palm_subset)
    assert_same_batches(ours, course_batches([(palm_subset / n, prefix_label(n)) for n in names], 10))


@pytest.fixture
def valid_subset(shared_palm, tmp_path):
    """The first 23 rows of the real label sheet, as csv and xlsx."""
    import pandas as pd

    table = pd.read_csv(shared_palm / "labels.csv").head(23)
    table.to_csv(tmp_path / "labels.csv", index=False)
    table.to_excel(tmp_path / "labels.xlsx", index=False)
    return tmp_path / "labels.csv", tmp_path / "labels.xlsx"


def test_valid_reader_is_bit_exact_on_real_validation_images(shared_palm, valid_subset):
    csvfile = valid_subset[0]
    ours = list(valid_data_loader(str(shared_palm / "PALM-Validation400"), str(csvfile), batch_size=10)())
    rows = [line.strip().split(",") for line in csvfile.read_text().splitlines()[1:]]
    expected = course_batches([(shared_palm / "PALM-Validation400" / r[1], int(r[2])) for r in rows], 10)
    assert_same_batches(ours, expected)
    assert [len(b[0]) for b in ours] == [10, 10, 3]


def test_valid_reader_reads_the_xlsx_too(shared_palm, valid_subset):
    folder = str(shared_palm / "PALM-Validation400")
    from_csv = list(valid_data_loader(folder, str(valid_subset[0]), batch_size=64)())
    from_xlsx = list(valid_data_loader(folder, str(valid_subset[1]), batch_size=64)())
    assert_same_batches(from_xlsx, from_csv)


def test_large_and_small_images_are_resized_bit_exactly(large_images):
    ours = list(data_loader(str(large_images), batch_size=3, mode="valid")())
    names = os.listdir(large_images)
    assert_same_batches(ours, course_batches([(large_images / n, prefix_label(n)) for n in names], 3))
    assert ours[0][0].shape == (3, 3, 224, 224) and ours[1][0].shape == (1, 3, 224, 224)
    assert ours[0][0].min() >= -1.0 and ours[0][0].max() <= 1.0


def test_preprocess_a_other_sizes(large_images):
    path = large_images / "H0001.jpg"
    for size in (64, 128, 300):
        assert np.array_equal(preprocess_a(cv2.imread(str(path)), size), course_image(path, size))


# --------------------------------------------------------------------------- bad input


def test_bad_prefix_is_refused_when_the_reader_is_made(palm_subset):
    shutil.copy(palm_subset / sorted(os.listdir(palm_subset))[0], palm_subset / "X0001.jpg")
    with pytest.raises(LabelError, match="X0001.jpg"):
        data_loader(str(palm_subset))


def test_unreadable_image_names_the_file(palm_subset):
    (palm_subset / "P9999.jpg").write_bytes(b"")
    reader = data_loader(str(palm_subset), batch_size=100, mode="eval")
    with pytest.raises(ImageError, match="P9999.jpg.*empty file"):
        list(reader())


def test_hidden_files_and_subfolders_are_skipped(palm_subset):
    (palm_subset / ".DS_Store").write_bytes(b"junk")
    (palm_subset / "PALM-notes").mkdir()
    batches = list(data_loader(str(palm_subset), batch_size=100, mode="eval")())
    assert len(batches) == 1 and len(batches[0][0]) == 13


def test_empty_or_missing_training_folder(tmp_path):
    with pytest.raises(DataError, match="no training images"):
        data_loader(str(tmp_path))
    with pytest.raises(MissingFileError):
        data_loader(str(tmp_path / "nowhere"))


def test_image_named_in_the_sheet_but_absent(shared_palm, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("ID,imgName,Label\n1,V0001.jpg,0\n2,V9999.jpg,1\n")
    with pytest.raises(MissingFileError, match="V9999.jpg"):
        valid_data_loader(str(shared_palm / "PALM-Validation400"), str(csv))


def test_bad_sheet_and_batch_size(shared_palm, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("ID,imgName,Label\n1,V0001.jpg,2\n")
    with pytest.raises(LabelError, match="expected 0 or 1"):
        valid_data_loader(str(shared_palm / "PALM-Validation400"), str(csv))
    with pytest.raises(ConfigError, match="batch_size"):
        data_loader(str(shared_palm / "PALM-Training400"), batch_size=0)
