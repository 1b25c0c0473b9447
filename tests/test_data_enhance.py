"""Contrast enhancements of the resized image (``"B+clahe"``, ``"A+graham"``): names, pixels, and every path.

A model trained with an enhancement must see it in training, evaluation, prediction and
in its exported folder; an unknown name is one ConfigError naming it.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest

from paddle_palm.data import PalmDataset, read_image
from paddle_palm.data.dataset import iterate_batches
from paddle_palm.data.images import read_image_rgb_pil
from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.data.transforms import (
    base_method,
    check_method,
    enhance_clahe,
    enhance_for,
    enhance_graham,
    enhancement_of,
    normalize_b,
    preprocess_image,
    resize_b,
)
from paddle_palm.engine import config as cfg
from paddle_palm.engine import export, export_record, predict, predictors
from paddle_palm.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_palm(tmp_path_factory.mktemp("enhance") / "palm", n_train=8, n_valid=6, image_size=96, seed=3)


def fundus(size=96, patch=0):
    """A dull disc on black with, when ``patch`` > 0, a slightly paler square of that side (RGB)."""
    image = np.zeros((size, size, 3), np.uint8)
    cv2.circle(image, (size // 2, size // 2), size * 9 // 20, (150, 80, 40), -1)
    if patch:
        c = size // 2 + size // 8
        image[c:c + patch, c:c + patch] = (165, 95, 55)
    return image


@pytest.mark.parametrize("text, canonical", [
    ("B", "B"), ("a", "A"), (" b+CLAHE ", "B+clahe"), ("A + graham", "A+graham"), ("B+clahe", "B+clahe"),
])
def test_names_are_normalised(text, canonical):
    assert check_method(text) == canonical
    assert base_method(text) == canonical[0]
    assert enhancement_of(text) == (canonical[2:] or None)


@pytest.mark.parametrize("bad", ["C", "B+", "+clahe", "B+sharpen", "B+clahe+graham", "AB", ""])
def test_unknown_names_are_one_config_error(bad):
    with pytest.raises(ConfigError, match=r"unknown preprocessing .*expected A or B, optionally with \+clahe"):
        check_method(bad)


def test_clahe_raises_local_contrast_and_keeps_the_channel_order():
    rng = np.random.default_rng(0)
    image = fundus()
    disc = image.max(axis=2) > 0
    texture = rng.integers(-6, 7, image.shape[:2])[..., None] * disc[..., None]  # faint mottling on the disc
    image = (image.astype(int) + texture).clip(0, 255).astype(np.uint8)
    out = enhance_clahe(image, "RGB")
    assert out.dtype == np.uint8 and out.shape == image.shape

    def lightness_spread(rgb):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0][disc].std()

    assert lightness_spread(out) > 1.5 * lightness_spread(image)
    assert np.array_equal(enhance_clahe(image[..., ::-1], "BGR"), out[..., ::-1])
    assert np.array_equal(enhance_clahe(image, "RGB"), out)  # deterministic


def test_graham_subtracts_the_local_mean_and_greys_the_border():
    image = fundus(patch=4)  # 15 levels paler than the disc
    out = enhance_graham(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (out[0, 0] == 128).all() and (out[:, :3] == 128).all()  # outside the disc: the middle grey
    flat = out[30:40, 30:40].astype(int)  # inside, far from the patch and the rim: close to 128
    assert np.abs(flat - 128).max() <= 6
    c = 96 // 2 + 96 // 8
    assert (out[c:c + 4, c:c + 4].astype(int) - 128).min() > 2 * 15  # the small pale patch stands out more


def test_no_enhancement_leaves_the_image_alone():
    image = fundus()
    assert enhance_for("B", image) is image and enhance_for("A", image) is image


def test_dataset_and_prediction_paths_agree(synthetic):
    ds = PalmDataset(synthetic, "valid", image_size=64, preprocess="b+clahe", augment=False)
    assert ds.preprocess == "B+clahe"
    plain = PalmDataset(synthetic, "valid", image_size=64, preprocess="B", augment=False)
    for i in range(len(ds)):
        x, _ = ds[i]
        assert np.array_equal(x, normalize_b(enhance_clahe(plain.load_resized(i), "RGB")))
        assert np.array_equal(x, preprocess_image(read_image(ds.samples[i][0]), 64, "B+clahe"))
        assert not np.array_equal(x, plain[i][0])
    graham = PalmDataset(synthetic, "valid", image_size=64, preprocess="A+graham", augment=False)
    path = graham.samples[0][0]
    assert np.array_equal(graham[0][0], preprocess_image(read_image(path), 64, "A+graham"))


def test_cache_holds_the_enhanced_image_and_augmentation_acts_on_it(synthetic):
    cached = PalmDataset(synthetic, "train", image_size=48, preprocess="B+graham", augment={"hflip": 1.0, "vflip": 0.0},
                         cache=True, seed=0)
    cached.warm_cache()
    uncached = PalmDataset(synthetic, "train", image_size=48, preprocess="B+graham", augment={"hflip": 1.0, "vflip": 0.0}, seed=0)
    a = np.concatenate([b[0] for b in iterate_batches(cached, 4)])
    b = np.concatenate([b[0] for b in iterate_batches(uncached, 4)])
    assert np.array_equal(a, b)
    rgb = enhance_graham(resize_b(read_image_rgb_pil(cached.samples[0][0]), 48))  # as the dataset decodes
    assert np.array_equal(cached.load_resized(0), rgb)
    assert np.array_equal(a[0], normalize_b(np.ascontiguousarray(rgb[:, ::-1])))  # flipped after the enhancement


def test_config_and_command_line_accept_and_check_the_name(tmp_path):
    assert cfg.validate({"preprocess": "b+graham"})["preprocess"] == "B+graham"
    with pytest.raises(ConfigError, match=r"preprocess = 'B\+blur'.*expected A or B"):
        cfg.validate({"preprocess": "B+blur"})
    proc = subprocess.run([sys.executable, "tools/eval.py", "--weights", str(tmp_path / "w.pdparams"), "--data-dir",
                           str(tmp_path), "--preprocess", "B+blur"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2
    assert "argument --preprocess: unknown preprocessing 'B+blur'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr


def test_export_records_the_enhancement_and_predicts_like_the_checkpoint(synthetic, tmp_path):
    from paddle_palm.models import build_model

    paddle.seed(5)
    weights = tmp_path / "sq.pdparams"
    paddle.save(build_model("squeezenet1_1", num_classes=1).state_dict(), str(weights))
    settings = dict(arch="squeezenet1_1", num_classes=1, image_size=64, preprocess="B+clahe")
    record = export.export_checkpoint(weights, tmp_path / "out", **settings)
    pre = record["preprocess"]
    assert pre["method"] == "B+clahe" and "CLAHE" in pre["enhance"]
    assert "clahe" in (tmp_path / "out" / "inference.yml").read_text(encoding="utf-8")
    exported = predictors.ExportedPredictor(tmp_path / "out")
    assert exported.preprocess == "B+clahe"
    ckpt = predictors.CheckpointPredictor(weights, **settings)
    paths = [synthetic / "PALM-Validation400"]
    a = [r["pm_probability"] for r in predict.predict_images(ckpt, paths)]
    b = [r["pm_probability"] for r in predict.predict_images(exported, paths)]
    np.testing.assert_allclose(b, a, atol=1e-4)
    plain = predictors.CheckpointPredictor(weights, **{**settings, "preprocess": "B"})
    assert np.abs(np.subtract(a, [r["pm_probability"] for r in predict.predict_images(plain, paths)])).max() > 1e-4

    # A record naming an enhancement this version does not know, or a name export does not write, is refused.
    path = tmp_path / "out" / "preprocess.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for method in ("B+sharpen", "b+clahe", ["B"]):
        data["preprocess"]["method"] = method
        path.write_text(json.dumps(data), encoding="utf-8")
        for check in (export_record.read_export_record, export_record.check_export_folder):
            with pytest.raises(DataError, match=r"preprocess.json is not a valid export record"):
                check(tmp_path / "out")
