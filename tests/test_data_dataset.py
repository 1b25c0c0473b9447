"""PalmDataset: splits, preprocessing A and B, augmentation, the cache, DataLoader workers, bad folders."""

import pickle
import shutil

import cv2
import numpy as np
import paddle
import paddle.vision.transforms as T
import pytest
from PIL import Image

from paddle_palm import compat
from paddle_palm.data import PalmDataset, read_image
from paddle_palm.data.dataset import EpochSampler, iterate_batches
from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.data.transforms import Augmentation, padding_black, preprocess_a, preprocess_image
from paddle_palm.errors import ConfigError, DataError, LabelError, MissingFileError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_palm(tmp_path_factory.mktemp("synthetic") / "palm", n_train=12, n_valid=8, image_size=96)


def collect(dataset, num_workers=2, batch_size=5):
    """Every item through ``paddle.io.DataLoader`` worker processes.

    The timeout turns a stuck worker into a failure instead of a hung run.  Paddle's forked
    workers can deadlock when a thread that used Paddle or OpenCV (such as the thread of a
    ``num_workers=0`` DataLoader) is exiting at the moment of the fork, so these tests build
    their references in the main thread (:func:`items`) and never run a single-process
    DataLoader right before a multi-process one.
    """
    loader = paddle.io.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                  timeout=120)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def items(dataset):
    """Every item, read in this thread: ``(images [N,3,S,S], labels [N])``."""
    batches = list(iterate_batches(dataset, 5))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_training_split(synthetic):
    ds = PalmDataset(synthetic, "train", image_size=64)
    names = [p.rsplit("/", 1)[-1] for p, _ in ds.samples]
    assert names == sorted(names) and len(ds) == 12
    assert [label for _, label in ds.samples] == [int(n[0] == "P") for n in names]
    assert ds.augment and ds.class_counts() == {0: 6, 1: 6}
    image, label = ds[0]
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    assert isinstance(label, np.int64) and label.shape == ()


def test_validation_split_follows_the_sheet(synthetic):
    ds = PalmDataset(synthetic, "valid", image_size=64)
    assert not ds.augment
    assert [p.rsplit("/", 1)[-1] for p, _ in ds.samples] == [f"V{i:04d}.jpg" for i in range(1, 9)]
    sheet = (synthetic / "labels.csv").read_text().splitlines()[1:]
    assert list(ds.labels) == [int(row.split(",")[2]) for row in sheet]
    image, _ = ds[3]
    path = ds.samples[3][0]
    assert np.array_equal(image, preprocess_a(cv2.imread(path), 64))


def test_labels_file_picks_the_rows(synthetic, tmp_path):
    sheet = tmp_path / "subset.csv"
    sheet.write_text("imgName,Label\nV0005.jpg,1\nV0002.jpg,0\n")
    ds = PalmDataset(synthetic, "valid", labels_file=sheet)
    assert [(p.rsplit("/", 1)[-1], label) for p, label in ds.samples] == [("V0005.jpg", 1), ("V0002.jpg", 0)]


def test_real_data_splits(shared_palm):
    train = PalmDataset(shared_palm, "train", augment=False)
    assert len(train) == 400 and train.class_counts() == {0: 187, 1: 213}
    image, label = train[0]
    assert np.array_equal(image, preprocess_a(cv2.imread(train.samples[0][0]), 224))
    valid = PalmDataset(shared_palm, "valid")
    assert len(valid) == 100 and valid.samples[0][0].endswith("V0001.jpg")


def test_preprocessing_b_matches_paddle_transforms(synthetic):
    ds = PalmDataset(synthetic, "valid", image_size=80, preprocess="b")
    image, _ = ds[2]
    with Image.open(ds.samples[2][0]) as img:
        padded = padding_black(img.convert("RGB"), 80)
    reference = np.asarray(T.Compose([T.ToTensor(), T.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])(padded))
    if compat.version_tuple(compat.installed_paddle_version()) >= (3, 3):
        assert np.array_equal(image, reference)
    else:
        # Paddle 2.6.2's and 3.0.0's ToTensor rounds the division by 255 differently: one unit in the
        # last place (1.2e-7) on some pixels.
        np.testing.assert_allclose(image, reference, rtol=0, atol=1.2e-7)
    assert np.array_equal(preprocess_image(read_image(ds.samples[2][0]), 80, "B"), image)


def test_padding_black_keeps_the_aspect_ratio():
    wide = Image.new("RGB", (400, 100), (255, 255, 255))
    out = np.asarray(padding_black(wide, 224))
    assert out.shape == (224, 224, 3)
    rows = np.flatnonzero(out[:, 112, 0] > 0)
    assert (rows[0], rows[-1]) == (84, 139)  # 56 rows of content, centred
    assert out[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("preprocess", ["A", "B"])
def test_workers_and_cache_give_identical_arrays(synthetic, preprocess):
    plain = PalmDataset(synthetic, "train", image_size=48, preprocess=preprocess, augment=False)
    cached = PalmDataset(synthetic, "train", image_size=48, preprocess=preprocess, augment=False, cache=True)
    cached.warm_cache()
    direct = items(plain)
    assert np.array_equal(direct[1], plain.labels)
    for images, labels in (collect(plain), collect(cached), items(cached)):
        assert np.array_equal(images, direct[0]) and np.array_equal(labels, direct[1])


def test_lazy_cache_fills_on_first_use(synthetic, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic, copy)
    ds = PalmDataset(copy, "valid", image_size=32, cache=True)
    first = ds[1][0]
    assert ds._cached.sum() == 1
    (copy / "PALM-Validation400" / "V0002.jpg").unlink()  # later calls are served from memory
    assert np.array_equal(ds[1][0], first)


def test_seeded_augmentation_is_reproducible_across_workers_and_cache(synthetic):
    def run(workers, cache, epoch):
        ds = PalmDataset(synthetic, "train", image_size=40, seed=5, cache=cache)
        ds.set_epoch(epoch)
        return collect(ds, workers)[0] if workers else items(ds)[0]

    reference = run(0, False, 0)
    assert np.array_equal(run(2, False, 0), reference)
    assert np.array_equal(run(2, True, 0), reference)
    assert np.array_equal(run(0, True, 0), reference)
    assert not np.array_equal(run(0, False, 1), reference)
    plain = PalmDataset(synthetic, "train", image_size=40, augment=False)
    flipped = [not np.array_equal(reference[i], plain[i][0]) for i in range(len(plain))]
    assert 0 < sum(flipped) < len(plain)


def test_augmentation_flips_and_options():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    both = Augmentation(hflip=1.0, vflip=1.0)(image, np.random.default_rng(0))
    assert np.array_equal(both, image[::-1, ::-1])
    assert np.array_equal(Augmentation(hflip=0.0, vflip=0.0)(image, np.random.default_rng(0)), image)
    busy = Augmentation(max_rotation=15, brightness=0.2, contrast=0.2)
    a = busy(image, np.random.default_rng(3))
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, busy(image, np.random.default_rng(3)))
    busy(image, np.random.RandomState(1))  # a legacy RandomState works too
    with pytest.raises(ConfigError):
        Augmentation(hflip=2.0)


def test_scale_zooms_about_the_centre():
    image = np.zeros((41, 41, 3), np.uint8)
    image[10:31, 10:31] = 200  # a bright square of side 21 in the middle
    zoom_in = Augmentation(hflip=0.0, vflip=0.0, scale=0.5)
    rng = np.random.default_rng(0)
    draws = np.random.default_rng(0)
    draws.uniform(0.0, 1.0, 2)  # the two flips' draws come first
    factor = draws.uniform(0.5, 1.5)  # then the one draw scale makes
    out = zoom_in(image, rng)
    side = int((out[20, :, 0] > 100).sum())
    assert abs(side - 21 * factor) <= 2, (side, factor)
    assert out[20, 20, 0] == 200  # the centre stays put
    # Off, it draws nothing: a rotation-only setting keeps the random stream it had.
    rotate = Augmentation(hflip=0.0, vflip=0.0, max_rotation=10)
    assert np.array_equal(rotate(image, np.random.default_rng(5)),
                          Augmentation(hflip=0.0, vflip=0.0, max_rotation=10, scale=0.0)(image, np.random.default_rng(5)))
    with pytest.raises(ConfigError, match="scale"):
        Augmentation(scale=1.0)
    with pytest.raises(ConfigError, match="scale"):
        Augmentation(scale=-0.1)


def test_saturation_scales_each_pixels_distance_from_its_grey():
    rng_image = np.random.default_rng(7)
    image = rng_image.integers(60, 190, size=(8, 8, 3)).astype(np.uint8)
    image[0, 0] = (90, 90, 90)  # a grey pixel stays grey
    draws = np.random.default_rng(4)
    draws.uniform(0.0, 1.0, 2)  # the two flips' draws come first
    factor = draws.uniform(0.5, 1.5)
    out = Augmentation(hflip=0.0, vflip=0.0, saturation=0.5)(image, np.random.default_rng(4))
    img = image.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    expected = np.clip(np.rint((img - grey) * factor + grey), 0, 255).astype(np.uint8)
    assert np.array_equal(out, expected)
    assert tuple(out[0, 0]) == (90, 90, 90)
    assert not np.array_equal(out, image)


def test_hue_turns_colours_about_the_grey_axis():
    from paddle_palm.data.transforms import _grey_axis_rotation

    # A third of a turn moves each channel's value on to the next: (r, g, b) -> (b, r, g).
    third = _grey_axis_rotation(2.0 * np.pi / 3.0)
    assert np.allclose(third, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-6)
    # Turning RGB by an angle is turning BGR by minus that angle, so the channel order does not matter.
    angle = 0.7
    reverse = np.eye(3)[::-1]
    assert np.allclose(reverse @ _grey_axis_rotation(angle) @ reverse, _grey_axis_rotation(-angle), atol=1e-6)

    image = np.random.default_rng(1).integers(70, 180, size=(6, 6, 3)).astype(np.uint8)
    image[2, 3] = (120, 120, 120)
    out = Augmentation(hflip=0.0, vflip=0.0, hue=0.5)(image, np.random.default_rng(2))
    assert tuple(out[2, 3]) == (120, 120, 120)
    # A turn keeps each pixel's grey level and its distance from grey (to the rounding).
    img, res = image.astype(np.float64), out.astype(np.float64)
    assert np.abs(res.mean(axis=2) - img.mean(axis=2)).max() <= 1.0
    spread = np.linalg.norm(img - img.mean(axis=2, keepdims=True), axis=2)
    assert np.abs(np.linalg.norm(res - res.mean(axis=2, keepdims=True), axis=2) - spread).max() <= 1.5
    assert not np.array_equal(out, image)
    # Off, neither draws: a brightness-only setting keeps the random stream it had.
    plain = Augmentation(brightness=0.2)
    assert np.array_equal(plain(image, np.random.default_rng(5)),
                          Augmentation(brightness=0.2, saturation=0.0, hue=0.0)(image, np.random.default_rng(5)))
    with pytest.raises(ConfigError, match="hue"):
        Augmentation(hue=0.6)
    with pytest.raises(ConfigError, match="saturation"):
        Augmentation(saturation=-0.1)


def test_dataset_pickles(synthetic):
    ds = PalmDataset(synthetic, "train", image_size=32, cache=True, seed=1).warm_cache()
    copy = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(copy[3][0], ds[3][0])


def test_course_nested_layout_is_accepted(synthetic, tmp_path):
    nested = tmp_path / "palm" / "PALM-Training400" / "PALM-Training400"
    shutil.copytree(synthetic / "PALM-Training400", nested)
    (tmp_path / "palm" / "PALM-Training400" / "PALM-Training400-Annotation-D&F.zip").write_bytes(b"")
    assert len(PalmDataset(tmp_path / "palm", "train")) == 12


def test_bad_arguments(synthetic):
    with pytest.raises(ConfigError, match="split"):
        PalmDataset(synthetic, "test")
    with pytest.raises(ConfigError, match="preprocessing"):
        PalmDataset(synthetic, "train", preprocess="C")
    with pytest.raises(ConfigError, match="image size"):
        PalmDataset(synthetic, "train", image_size=0)
    with pytest.raises(ConfigError, match="valid"):
        PalmDataset(synthetic, "train", labels_file=synthetic / "labels.csv")
    with pytest.raises(ConfigError, match="augment"):
        PalmDataset(synthetic, "train", augment="yes")


def test_bad_folders(tmp_path, synthetic):
    with pytest.raises(MissingFileError, match="dataset folder not found"):
        PalmDataset(tmp_path / "nowhere", "train")
    (tmp_path / "empty" / "PALM-Training400").mkdir(parents=True)
    with pytest.raises(DataError, match="no training images"):
        PalmDataset(tmp_path / "empty", "train")
    with pytest.raises(MissingFileError, match="validation folder not found"):
        PalmDataset(tmp_path / "empty", "valid")
    copy = tmp_path / "copy"
    shutil.copytree(synthetic, copy)
    (copy / "PALM-Validation400" / "V0004.jpg").unlink()
    with pytest.raises(MissingFileError, match="V0004.jpg"):
        PalmDataset(copy, "valid")
    shutil.copy(copy / "PALM-Training400" / "P0001.jpg", copy / "PALM-Training400" / "Q0001.jpg")
    with pytest.raises(LabelError, match="Q0001.jpg"):
        PalmDataset(copy, "train")
    for name in ("labels.csv", "PALM-Validation-GT"):
        path = copy / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(MissingFileError, match="validation labels not found"):
        PalmDataset(copy, "valid")


def test_bad_images_are_reported_when_the_dataset_is_made(synthetic, tmp_path):
    from paddle_palm.errors import ImageError

    copy = tmp_path / "copy"
    shutil.copytree(synthetic, copy)
    good = (copy / "PALM-Training400" / "N0001.jpg").read_bytes()
    for content, match in ((b"", "empty file"), (good[: len(good) // 2], "truncated"), (b"text", "not an image")):
        (copy / "PALM-Training400" / "N0001.jpg").write_bytes(content)
        with pytest.raises(ImageError, match=f"N0001.jpg.*{match}"):
            PalmDataset(copy, "train")
    # Without the up-front check the same file fails when it is read.
    ds = PalmDataset(copy, "train", augment=False, check_images=False)
    index = [p.endswith("N0001.jpg") for p, _ in ds.samples].index(True)
    with pytest.raises(ImageError, match="N0001.jpg"):
        ds[index]


def test_iterate_batches_order_and_sizes(synthetic):
    ds = PalmDataset(synthetic, "valid", image_size=24)
    batches = list(iterate_batches(ds, 3, order=[7, 0, 5, 1]))
    assert [len(b[1]) for b in batches] == [3, 1] and batches[0][1].dtype == np.int64
    assert np.array_equal(batches[0][0][1], ds[0][0]) and batches[1][1][0] == ds.labels[1]
    with pytest.raises(ConfigError):
        next(iterate_batches(ds, 0))


def test_epoch_sampler_with_persistent_workers(synthetic):
    ds = PalmDataset(synthetic, "train", image_size=32, seed=9)
    sampler = EpochSampler(ds, shuffle=True, seed=4)
    loader = paddle.io.DataLoader(ds, batch_sampler=paddle.io.BatchSampler(sampler=sampler, batch_size=5),
                                  num_workers=2, persistent_workers=True, timeout=120)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        images = np.concatenate([x.numpy() for x, _ in loader])
        replay = EpochSampler(len(ds), shuffle=True, seed=4)  # e.g. after a restart at this epoch
        replay.set_epoch(epoch)
        pairs = list(replay)
        assert all(e == epoch for e, _ in pairs)
        # The workers never saw set_epoch: the epoch came with each index.
        assert np.array_equal(images, np.stack([ds[pair][0] for pair in pairs]))
        orders.append([i for _, i in pairs])
    assert sorted(orders[0]) == list(range(len(ds))) and orders[0] != orders[1]
