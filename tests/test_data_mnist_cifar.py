"""MNIST and CIFAR-10 from local files in their standard formats (SPEC 1.5), on tiny files written here."""

import gzip
import io
import pickle
import tarfile

import cv2
import numpy as np
import paddle
import pytest

from paddle_palm.compat import installed_numpy_core_module
from paddle_palm.data.cifar import CIFAR10_CLASSES, Cifar10, cifar10_transform, load_cifar10, write_cifar10_archive
from paddle_palm.data.mnist import MNIST, load_mnist, mnist_paths, read_idx_images, write_mnist_files
from paddle_palm.errors import DataError, MissingFileError

RNG = np.random.default_rng(0)
DIGITS = RNG.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
DIGIT_LABELS = RNG.integers(0, 10, size=7)
TRAIN = RNG.integers(0, 256, size=(11, 32, 32, 3), dtype=np.uint8)
TRAIN_LABELS = RNG.integers(0, 10, size=11)
TEST = RNG.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
TEST_LABELS = np.array([0, 9, 4])


# --------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_round_trip(tmp_path, compress):
    image_path, label_path = write_mnist_files(tmp_path, DIGITS, DIGIT_LABELS, mode="test", compress=compress)
    assert image_path.name == "t10k-images-idx3-ubyte" + (".gz" if compress else "")
    assert mnist_paths(tmp_path, "test") == (image_path, label_path)
    images, labels = load_mnist(tmp_path, "test")
    assert np.array_equal(images, DIGITS) and np.array_equal(labels, DIGIT_LABELS)


def test_mnist_files_are_the_standard_format(tmp_path):
    image_path, label_path = write_mnist_files(tmp_path, DIGITS, DIGIT_LABELS)
    raw = gzip.decompress(image_path.read_bytes())
    assert raw[:16] == bytes.fromhex("00000803") + (7).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert raw[16:16 + 784] == DIGITS[0].tobytes()
    assert gzip.decompress(label_path.read_bytes())[:8] == bytes.fromhex("00000801") + (7).to_bytes(4, "big")


def test_mnist_dataset_applies_the_seed_transform(tmp_path):
    write_mnist_files(tmp_path, DIGITS, DIGIT_LABELS)
    dataset = MNIST(tmp_path, "train", image_size=224)
    image, label = dataset[2]
    assert image.shape == (1, 224, 224) and image.dtype == np.float32 and label == DIGIT_LABELS[2]
    normalised = (DIGITS[2].astype(np.float32) / 255 - np.float32(0.1307)) / np.float32(0.3081)
    assert np.allclose(image[0], cv2.resize(normalised, (224, 224)), atol=1e-6)
    assert np.allclose(MNIST(tmp_path, "train", image_size=None)[2][0][0], normalised, atol=1e-6)
    batch = next(iter(paddle.io.DataLoader(MNIST(tmp_path, image_size=32), batch_size=4)))
    assert batch[0].shape == [4, 1, 32, 32]


def test_mnist_bad_files(tmp_path):
    with pytest.raises(MissingFileError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    image_path, label_path = write_mnist_files(tmp_path, DIGITS, DIGIT_LABELS, compress=False)
    image_path.write_bytes(image_path.read_bytes()[:500])
    with pytest.raises(DataError, match="truncated"):
        read_idx_images(image_path)
    image_path.write_bytes(b"\x00\x00\x08\x01" + bytes(20))
    with pytest.raises(DataError, match="magic number 2049; expected 2051"):
        read_idx_images(image_path)
    image_path.write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx_images(image_path)
    other = tmp_path / "other"
    write_mnist_files(other, DIGITS, DIGIT_LABELS, compress=False)
    write_mnist_files(other / "fewer", DIGITS[:5], DIGIT_LABELS[:5], compress=False)
    with pytest.raises(DataError, match="7 images but .* 5 labels"):
        load_mnist(image_path=other / "train-images-idx3-ubyte", label_path=other / "fewer" / "train-labels-idx1-ubyte")


# --------------------------------------------------------------------------- CIFAR-10


@pytest.fixture
def cifar_archive(tmp_path):
    return write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", TRAIN, TRAIN_LABELS, TEST, TEST_LABELS)


def test_cifar_round_trip_from_the_archive_and_the_folder(cifar_archive, tmp_path):
    for source in (cifar_archive, None):
        if source is None:
            with tarfile.open(cifar_archive) as tar:
                tar.extractall(tmp_path / "unpacked", filter="data")
            source = tmp_path / "unpacked"
        images, labels = load_cifar10(source, "train")
        assert np.array_equal(images, TRAIN) and np.array_equal(labels, TRAIN_LABELS)
        images, labels = load_cifar10(source, "test")
        assert np.array_equal(images, TEST) and np.array_equal(labels, TEST_LABELS)


def test_cifar_archive_is_the_python_version_layout(cifar_archive):
    with tarfile.open(cifar_archive) as tar:
        names = sorted(tar.getnames())
        batch = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="bytes")
        meta = pickle.loads(tar.extractfile("cifar-10-batches-py/batches.meta").read(), encoding="bytes")
    assert names == sorted([f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
                           + ["cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"])
    assert batch[b"data"].shape == (3, 3072) and batch[b"data"].dtype == np.uint8
    # Rows hold the red plane, then green, then blue.
    assert np.array_equal(batch[b"data"][0, :1024], TRAIN[0, :, :, 0].ravel())
    assert meta[b"label_names"][0] == b"airplane"


def test_cifar_dataset_transform_and_classes(cifar_archive):
    dataset = Cifar10(cifar_archive, "test")
    image, label = dataset[1]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    assert np.array_equal(image, (TEST[1].transpose(2, 0, 1).astype(np.float32) / 255 - 0.5) / 0.5)
    assert CIFAR10_CLASSES[label] == "truck" and len(CIFAR10_CLASSES) == 10 and CIFAR10_CLASSES[0] == "plane"
    assert cifar10_transform(TEST[0], 64).shape == (3, 64, 64)


def _archive_with(tmp_path, members):
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar_refuses_code_in_pickles(tmp_path):
    path = _archive_with(tmp_path, {"test_batch": pickle.dumps({b"data": _Evil()}, protocol=2)})
    with pytest.raises(DataError, match=r"print is not allowed"):
        load_cifar10(path, "test")


@pytest.mark.parametrize("core", [b"numpy.core", b"numpy._core"])
def test_cifar_reads_pickles_of_numpy_1_and_2(cifar_archive, tmp_path, core):
    # numpy 1.x names numpy.core in its pickles, numpy 2.x numpy._core: either loads under both.
    with tarfile.open(cifar_archive) as tar:
        data = tar.extractfile("cifar-10-batches-py/test_batch").read()
    written = b"numpy._core." if b"numpy._core." in data else b"numpy.core."
    assert data.count(written) > 0
    batch = data.replace(written, core + b".")
    assert batch.count(core + b".") == data.count(written)
    images, labels = load_cifar10(_archive_with(tmp_path, {"test_batch": batch}), "test")
    assert np.array_equal(images, TEST) and np.array_equal(labels, TEST_LABELS)


@pytest.mark.parametrize("module, numpy_1, numpy_2", [
    ("numpy.core.multiarray", "numpy.core.multiarray", "numpy._core.multiarray"),
    ("numpy._core.numeric", "numpy.core.numeric", "numpy._core.numeric"),
    ("numpy", "numpy", "numpy"),
    ("numpy.corex.thing", "numpy.corex.thing", "numpy.corex.thing"),
])
def test_numpy_core_names_follow_the_installed_numpy(module, numpy_1, numpy_2):
    expected = numpy_2 if int(np.__version__.split(".")[0]) >= 2 else numpy_1
    assert installed_numpy_core_module(module) == expected


def test_cifar_bad_inputs(tmp_path, cifar_archive):
    with pytest.raises(MissingFileError):
        load_cifar10(tmp_path / "none.tar.gz")
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(cifar_archive.read_bytes()[:100])
    with pytest.raises(DataError, match="damaged or not a tar.gz"):
        load_cifar10(broken)
    with pytest.raises(DataError, match="no data_batch_1 inside"):
        load_cifar10(_archive_with(tmp_path, {"test_batch": b""}), "train")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        load_cifar10(_archive_with(tmp_path, {"test_batch": b"garbage"}), "test")
    bad_labels = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}, protocol=2)
    with pytest.raises(DataError, match="label out of range"):
        load_cifar10(_archive_with(tmp_path, {"test_batch": bad_labels}), "test")
    (tmp_path / "folder").mkdir()
    with pytest.raises(MissingFileError, match="test_batch"):
        load_cifar10(tmp_path / "folder", "test")
