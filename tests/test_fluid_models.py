"""The old-style reference code: name mapping, the course readers and the course train/validate loops.

Small inputs only (32x32 images, a 32-pixel ResNet-50); the heavy model comparisons are in
``test_fluid_parity.py``.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import legacy_fluid
from legacy_fluid.models import mapping, readers

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "fluid"


@pytest.fixture
def fluid():
    with legacy_fluid.installed() as module:
        yield module


def write_images(folder, names, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(0)
    for name in names:
        cv2.imwrite(str(folder / name), rs.randint(0, 256, (size, size + 6, 3)).astype(np.uint8))


@pytest.mark.parametrize("arch", ["resnet50", "senet18"])
def test_name_mapping_covers_the_modern_models_both_ways(arch):
    from paddle_palm.models import build_model

    with open(GOLDEN / f"{arch}.json") as fh:
        legacy_keys = json.load(fh)["state_keys"]
    modern = build_model(arch).state_dict()
    mapped = [mapping.legacy_to_modern_key(arch, key) for key in legacy_keys]
    assert sorted(mapped) == sorted(modern)
    assert [mapping.modern_to_legacy_key(arch, key) for key in mapped] == legacy_keys
    if arch == "resnet50":
        assert mapping.legacy_to_modern_key(arch, "bb_3_0.short._batch_norm._variance") == \
            "layer4.0.short.bn._variance"
        assert mapping.legacy_to_modern_key(arch, "out.weight") == "fc.weight"
    with pytest.raises(ValueError, match="no name mapping"):
        mapping.legacy_to_modern_key("vgg16", "x")


def test_course_readers_batches_labels_and_range(tmp_path):
    train_dir = tmp_path / "train"
    write_images(train_dir, ["P0001.jpg", "N0002.jpg", "H0003.jpg"])
    batches = list(readers.data_loader(str(train_dir), batch_size=2, image_size=32)())
    assert [b[0].shape for b in batches] == [(2, 3, 32, 32), (1, 3, 32, 32)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.float32 and b[1].shape[1] == 1 for b in batches)
    assert all(-1.0 <= b[0].min() and b[0].max() <= 1.0 for b in batches)
    labels = sorted(float(v) for b in batches for v in b[1].ravel())
    assert labels == [0.0, 0.0, 1.0]

    valid_dir = tmp_path / "valid"
    write_images(valid_dir, ["V0001.jpg", "V0002.jpg"])
    csv = tmp_path / "labels.csv"
    csv.write_text("ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,1,1.0,2.0\n2,V0002.jpg,0,3.0,4.0\n")
    (images, labels), = list(readers.valid_data_loader(str(valid_dir), str(csv), image_size=32)())
    assert images.shape == (2, 3, 32, 32) and labels.ravel().tolist() == [1.0, 0.0]


def test_course_reader_keeps_the_seed_bugs(tmp_path):
    """SPEC 1.2/1.3: the legacy reference keeps the seeds' bugs (paddle_palm.data fixes them)."""
    write_images(tmp_path / "odd", ["X0001.jpg"])
    with pytest.raises(TypeError, match="exceptions must derive from BaseException"):
        list(readers.data_loader(str(tmp_path / "odd"), image_size=32)())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "P0001.jpg").write_bytes(b"not an image")
    with pytest.raises(cv2.error):
        list(readers.data_loader(str(tmp_path / "bad"), image_size=32)())


def test_course_train_loop_builds_in_one_guard_trains_in_another(fluid, tmp_path, capsys):
    from legacy_fluid.models import resnet_fluid, training

    train_dir, valid_dir = tmp_path / "train", tmp_path / "valid"
    write_images(train_dir, ["P0001.jpg", "N0002.jpg", "H0003.jpg", "P0004.jpg"])
    write_images(valid_dir, ["V0001.jpg", "V0002.jpg"])
    csv = tmp_path / "labels.csv"
    csv.write_text("ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,1,1,1\n2,V0002.jpg,0,1,1\n")
    with fluid.dygraph.guard():
        model = resnet_fluid.ResNet(layers=50, class_dim=1)
    history = training.train(
        model,
        readers.data_loader(str(train_dir), batch_size=2, image_size=32),
        readers.valid_data_loader(str(valid_dir), str(csv), batch_size=2, image_size=32),
        epoch_num=1, learning_rate=0.005, decay_steps=102.5, end_learning_rate=0.001, log_every=1,
        save_prefix=str(tmp_path / "ckpt" / "palm"),
    )
    out = capsys.readouterr().out
    assert out.startswith("start training ... \n")
    assert out.count("loss is: [") == 2 and out.count("[validation] accuracy/loss: ") == 1
    assert len(history["losses"]) == 2 and all(np.isfinite(history["losses"]))
    assert history["lrs"] == pytest.approx([0.005 - 0.004 * n / 102.5 for n in range(2)], rel=1e-6)
    assert all(acc in (0.0, 0.5, 1.0) for acc, _ in history["valid"])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["palm.pdopt", "palm.pdparams"]
    with fluid.dygraph.guard():
        params, opt_state = fluid.load_dygraph(str(tmp_path / "ckpt" / "palm"))
        assert opt_state["LR_Scheduler"] == {"step_num": 2}
        fresh = resnet_fluid.ResNet(layers=50, class_dim=1)
        fresh.set_dict(params)
        x = fluid.dygraph.to_variable(np.zeros([1, 3, 32, 32], "float32"))
        fresh.eval()
        model.eval()
        np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_resnet_rejects_unknown_depth(fluid):
    from legacy_fluid.models import resnet_fluid

    with pytest.raises(ValueError, match="supported layers are \\[50, 101, 152\\]"):
        resnet_fluid.ResNet(layers=34)
