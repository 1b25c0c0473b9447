"""The synthetic fundus dataset: layout, determinism, idempotence, and that its classes are learnable."""

import time

import cv2
import numpy as np
import pandas as pd
import pytest

from paddle_palm.data import describe_dataset, read_labels
from paddle_palm.data.synthetic import STAMP_NAME, class_mix, make_synthetic_palm, render_fundus
from paddle_palm.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    start = time.perf_counter()
    path = make_synthetic_palm(tmp_path_factory.mktemp("synthetic") / "palm")
    return path, time.perf_counter() - start


def files_of(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pale_fraction(path):
    """Share of the fundus covered by pale (atrophy-coloured) pixels."""
    image = cv2.imread(str(path)).astype(int)
    b, g, r = image[:, :, 0], image[:, :, 1], image[:, :, 2]
    fundus = r > 40
    pale = fundus & (b > 110) & (g > 160)
    return pale.sum() / max(fundus.sum(), 1)


def test_layout_and_class_mix(default_set):
    folder, seconds = default_set
    summary = describe_dataset(folder)
    assert summary["train"] == 48 and summary["train_by_prefix"] == {"H": 6, "N": 18, "P": 24}
    assert summary["valid"] == 24 and summary["label_rows"] == 24 and summary["label_positive"] == 12
    xlsx = pd.read_excel(folder / "PALM-Validation-GT" / "PM_Label_and_Fovea_Location.xlsx")
    assert list(xlsx.columns) == ["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"]
    assert list(xlsx["imgName"]) == [f"V{i:04d}.jpg" for i in range(1, 25)]
    for csv in (folder / "labels.csv", folder / "PALM-Validation-GT" / "labels.csv"):
        pd.testing.assert_frame_equal(read_labels(csv), read_labels(folder / "PALM-Validation-GT"
                                                                    / "PM_Label_and_Fovea_Location.xlsx"))
    image = cv2.imread(str(folder / "PALM-Training400" / "P0001.jpg"))
    assert image.shape == (256, 256, 3)
    assert seconds < 6.0, f"generation took {seconds:.1f} s"


def test_class_mix_small_counts():
    assert class_mix(2) == (0, 1, 1) and class_mix(8) == (1, 3, 4) and class_mix(400) == (50, 150, 200)


def test_same_arguments_give_identical_bytes(default_set, tmp_path):
    folder, _ = default_set
    again = make_synthetic_palm(tmp_path / "again")
    assert files_of(again) == files_of(folder)
    other = make_synthetic_palm(tmp_path / "other", n_train=4, n_valid=2, image_size=64, seed=1)
    same_args = make_synthetic_palm(tmp_path / "other2", n_train=4, n_valid=2, image_size=64, seed=1)
    assert files_of(other) == files_of(same_args)
    seed2 = make_synthetic_palm(tmp_path / "seed2", n_train=4, n_valid=2, image_size=64, seed=2)
    assert files_of(seed2)["PALM-Training400/H0001.jpg"] != files_of(other)["PALM-Training400/H0001.jpg"]


def test_second_call_returns_without_writing(tmp_path):
    folder = make_synthetic_palm(tmp_path / "s", n_train=6, n_valid=3, image_size=48)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    start = time.perf_counter()
    make_synthetic_palm(folder, n_train=6, n_valid=3, image_size=48)
    assert time.perf_counter() - start < 0.2
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


def test_other_arguments_replace_the_set(tmp_path):
    folder = make_synthetic_palm(tmp_path / "s", n_train=8, n_valid=4, image_size=48)
    make_synthetic_palm(folder, n_train=4, n_valid=2, image_size=48)
    assert describe_dataset(folder)["train"] == 4 and describe_dataset(folder)["valid"] == 2
    assert not any(p.name.startswith(".synthetic-") for p in folder.iterdir())
    (folder / "PALM-Training400" / "H0001.jpg").unlink()  # an incomplete set is rebuilt
    make_synthetic_palm(folder, n_train=4, n_valid=2, image_size=48)
    assert (folder / "PALM-Training400" / "H0001.jpg").is_file()


def test_a_foreign_dataset_is_not_overwritten(tmp_path):
    (tmp_path / "real" / "PALM-Training400").mkdir(parents=True)
    (tmp_path / "real" / "PALM-Training400" / "P0001.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="did not write"):
        make_synthetic_palm(tmp_path / "real")
    assert (tmp_path / "real" / "PALM-Training400" / "P0001.jpg").read_bytes() == b"precious"
    assert not (tmp_path / "real" / STAMP_NAME).exists()


@pytest.mark.parametrize("kwargs", [{"n_train": 1}, {"n_valid": 0}, {"image_size": 16}, {"seed": -1},
                                    {"n_train": 2.5}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        make_synthetic_palm(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_images_look_like_fundus_photographs(default_set):
    folder, _ = default_set
    image = cv2.imread(str(folder / "PALM-Training400" / "N0001.jpg")).astype(int)
    assert image[:8, :8].max() < 20  # dark corners outside the round field of view
    centre = image[96:160, 96:160].reshape(-1, 3).mean(axis=0)
    assert centre[2] > centre[1] > centre[0]  # red > green > blue: orange-red retina
    assert image.reshape(-1, 3).max(axis=0)[2] > 200  # a bright optic disc


def test_atrophy_separates_the_classes(default_set):
    folder, _ = default_set
    train = sorted((folder / "PALM-Training400").glob("*.jpg"))
    pale = {p.name: pale_fraction(p) for p in train}
    positive = [v for n, v in pale.items() if n[0] == "P"]
    negative = [v for n, v in pale.items() if n[0] != "P"]
    assert min(positive) > 2 * max(negative)
    sheet = read_labels(folder / "labels.csv")
    threshold = (min(positive) + max(negative)) / 2
    predicted = [int(pale_fraction(folder / "PALM-Validation400" / n) > threshold) for n in sheet["imgName"]]
    assert predicted == list(sheet["Label"])


def test_render_fundus_is_deterministic_and_checks_its_prefix():
    a, fovea = render_fundus(np.random.default_rng(4), 96, "P")
    b, _ = render_fundus(np.random.default_rng(4), 96, "P")
    assert np.array_equal(a, b) and a.dtype == np.uint8 and 0 < fovea[0] < 96
    with pytest.raises(ConfigError):
        render_fundus(np.random.default_rng(0), 96, "X")


def test_a_small_cnn_learns_the_task(default_set):
    paddle = pytest.importorskip("paddle")
    from paddle_palm.data import PalmDataset

    paddle.seed(0)
    np.random.seed(0)
    folder, _ = default_set
    train = PalmDataset(folder, "train", image_size=64, seed=0, cache=True).warm_cache()
    valid = PalmDataset(folder, "valid", image_size=64, cache=True).warm_cache()
    nn = paddle.nn
    net = nn.Sequential(nn.Conv2D(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),
                        nn.Conv2D(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),
                        nn.Conv2D(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2D(1), nn.Flatten(),
                        nn.Linear(32, 1))
    optimizer = paddle.optimizer.Adam(3e-3, parameters=net.parameters())
    for epoch in range(5):
        train.set_epoch(epoch)
        for x, y in paddle.io.DataLoader(train, batch_size=8, shuffle=True):
            loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y.astype("float32"))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    net.eval()
    x = paddle.to_tensor(np.stack([valid[i][0] for i in range(len(valid))]))
    accuracy = ((paddle.nn.functional.sigmoid(net(x)).numpy().ravel() > 0.5) == valid.labels).mean()
    assert accuracy >= 0.9
