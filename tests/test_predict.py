"""Tests of paddle_palm.engine.predictors, .predict, .reports and tools/predict.py (prediction from a checkpoint).

A squeezenet1_1 at 64 pixels with seeded random weights stands in for a trained
model: the tests check that predictions are computed, labelled, written and
drawn correctly, not that they are good.
"""

import csv
import importlib.util
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_palm import cli, metrics
from paddle_palm.engine import predict, predictors, reports
from paddle_palm.errors import DataError, ImageError, MissingFileError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic dataset folder, squeezenet1_1 weights (64 px, no config.yaml) and a folder of mixed files."""
    from paddle_palm.data.synthetic import make_synthetic_palm
    from paddle_palm.models import build_model

    root = tmp_path_factory.mktemp("predict")
    data = make_synthetic_palm(root / "data", n_train=6, n_valid=6, image_size=64, seed=5)
    paddle.seed(11)
    weights = root / "sq.pdparams"
    paddle.save(build_model("squeezenet1_1").state_dict(), str(weights))
    mixed = root / "mixed"
    mixed.mkdir()
    for p in sorted((data / "PALM-Validation400").iterdir())[:3]:
        (mixed / p.name).write_bytes(p.read_bytes())
    (mixed / "notes.txt").write_text("not an image\n")
    (mixed / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return data, weights, mixed


def _load_tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_in_process(repo_root, args, capsys):
    tool = _load_tool(repo_root, "predict")
    with pytest.raises(SystemExit) as info:
        cli.run(tool.main, [str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_predict_cli_end_to_end(repo_root, setup, tmp_path):
    data, weights, _ = setup
    out_csv, grid = tmp_path / "pred.csv", tmp_path / "grid.png"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "predict.py"), "--arch", "squeezenet1_1", "--weights", str(weights),
         "--image-size", "64", str(data / "PALM-Training400"), str(data / "PALM-Validation400" / "V0001.jpg"),
         "--csv", str(out_csv), "--grid", str(grid), "--labels", str(data / "labels.csv")],
        capture_output=True, text=True, timeout=120, cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr
    with open(out_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "pm_probability", "label", "class_name"]
    assert len(rows) == 1 + 6 + 1
    for file, prob, label, name in rows[1:]:
        p = float(prob)
        assert 0.0 <= p <= 1.0
        assert int(label) == int(p >= 0.5)
        assert name == ("病理性近视 (pathologic myopia)" if label == "1" else "非病理性近视 (non-pathologic myopia)")
    assert rows[-1][0].endswith("V0001.jpg")
    assert "pm_probability" in proc.stdout and "predicted PM" in proc.stdout
    assert grid.read_bytes()[:4] == b"\x89PNG"


def test_predict_records_and_true_labels(setup):
    data, weights, _ = setup
    predictor = predictors.CheckpointPredictor(weights, arch="squeezenet1_1", image_size=64, threshold=0.4)
    assert (predictor.preprocess, predictor.image_size) == ("B", 64)  # seed 004's recipe for SqueezeNet
    records = predict.predict_images(predictor, [data / "PALM-Training400", data / "PALM-Validation400"],
                                       batch_size=4, labels_file=data / "labels.csv", keep_images=2)
    assert len(records) == 12
    import pandas as pd

    sheet = pd.read_csv(data / "labels.csv").set_index("imgName")["Label"]
    for r in records:
        name = r["file"].rsplit("/", 1)[-1]
        expected = {"P": 1, "H": 0, "N": 0}.get(name[0], None)
        assert r["true_label"] == (int(sheet[name]) if name.startswith("V") else expected)
        assert r["label"] == int(r["pm_probability"] >= 0.4)
        assert r["confidence"] == pytest.approx(r["pm_probability"] if r["label"] else 1 - r["pm_probability"])
    assert ["image" in r for r in records] == [True, True] + [False] * 10

    # The same images through the same preprocessing by hand: the same numbers.
    from paddle_palm.data.images import read_image
    from paddle_palm.data.transforms import preprocess_image

    batch = np.stack([preprocess_image(read_image(r["file"]), 64, "B") for r in records[:3]])
    logits = predictor.model(paddle.to_tensor(batch)).numpy()
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    np.testing.assert_allclose([r["pm_probability"] for r in records[:3]], expected, rtol=1e-5)


def test_folder_policy_unreadable_image_stops_unless_skipped(setup):
    _, weights, mixed = setup
    predictor = predictors.CheckpointPredictor(weights, arch="squeezenet1_1", image_size=64)
    with pytest.raises(ImageError, match="broken.jpg"):
        predict.predict_images(predictor, [mixed])  # notes.txt is not an image name: ignored
    warnings = []
    records = predict.predict_images(predictor, [mixed], skip_bad=True, warn=warnings.append)
    assert [r["file"].rsplit("/", 1)[-1] for r in records] == ["V0001.jpg", "V0002.jpg", "V0003.jpg"]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
    with pytest.raises(MissingFileError, match="nothing.jpg"):
        predict.predict_images(predictor, [mixed / "nothing.jpg"])
    empty = mixed.parent / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(DataError, match="no image files"):
        predict.predict_images(predictor, [empty])


def test_skip_bad_images_flag(repo_root, setup, capsys, tmp_path):
    _, weights, mixed = setup
    code, out, err = _run_in_process(repo_root, ["--arch", "squeezenet1_1", "--weights", weights, "--image-size",
                                                 "64", mixed, "--skip-bad-images", "--csv", tmp_path / "p.csv"], capsys)
    assert code == 0, err
    assert err.strip().startswith("warning: skipped") and "broken.jpg" in err
    assert len((tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()) == 1 + 3


def test_single_image_prints_the_seed_sentence(repo_root, setup, capsys):
    data, weights, _ = setup
    code, out, err = _run_in_process(
        repo_root, ["--arch", "squeezenet1_1", "--weights", weights, "--image-size", "64",
                    data / "PALM-Validation400" / "V0002.jpg"], capsys)
    assert code == 0, err
    assert "预测结果为：" in out and "置信度为：" in out


def test_predict_reads_config_yaml_beside_the_weights(setup, tmp_path):
    from paddle_palm.engine.config import resolve, save_run_config

    data, weights, _ = setup
    (tmp_path / "best_model.pdparams").write_bytes(weights.read_bytes())
    save_run_config(resolve(cli={"arch": "squeezenet1_1", "image_size": 48, "threshold": 0.3}), tmp_path)
    predictor = predictors.CheckpointPredictor(tmp_path)  # a run folder: best_model.pdparams, no --arch
    assert (predictor.settings.arch, predictor.image_size, predictor.threshold) == ("squeezenet1_1", 48, 0.3)
    assert predictors.CheckpointPredictor(tmp_path, image_size=64).image_size == 64  # flags override


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "squeezenet1_1", "--weights", "{weights}", "{mixed}/notes.txt"], "notes.txt"),
        (["--arch", "squeezenet1_1", "--weights", "{weights}", "{mixed}/broken.jpg"], "broken.jpg"),
        (["--arch", "squeezenet1_1", "--weights", "{weights}", "{mixed}"], "broken.jpg"),
        (["--arch", "squeezenet1_1", "--weights", "{mixed}/missing.pdparams", "{mixed}"], "missing.pdparams"),
        (["--arch", "resnet50", "--weights", "{weights}", "{mixed}"], "resnet50"),
        (["--arch", "squeezenet1_1", "--weights", "{mixed}/notes.txt", "{mixed}"], "notes.txt"),
        (["--weights", "{weights}", "{mixed}"], "--arch"),
        (["--arch", "squeezenet1_1", "{mixed}"], "--weights"),
        (["--inference-model", "{mixed}", "{mixed}"], "preprocess.json"),
    ],
    ids=["text-file", "truncated-jpeg", "folder-with-truncated-jpeg", "missing-weights", "other-architecture", "not-a-checkpoint",
         "no-arch-no-config", "no-model", "not-an-export"],
)
def test_predict_bad_input_is_one_line(repo_root, setup, args, message, capsys):
    _, weights, mixed = setup
    code, out, err = _run_in_process(repo_root, [a.format(weights=weights, mixed=mixed) for a in args], capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    assert out == ""


def test_predict_non_image_in_a_real_process(repo_root, setup):
    _, weights, mixed = setup
    proc = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "predict.py"), "--arch", "squeezenet1_1", "--weights", str(weights),
         str(mixed / "notes.txt")], capture_output=True, text=True, timeout=120, cwd=repo_root)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "notes.txt" in proc.stderr
    assert proc.stderr.startswith("error: ")


def test_class_name_and_table_format():
    assert metrics.class_name(1) == "病理性近视 (pathologic myopia)"
    assert metrics.class_name(0) == "非病理性近视 (non-pathologic myopia)"
    assert metrics.class_name(1, ["normal", "PM"], []) == "PM"
    records = [{"file": "a.jpg", "pm_probability": 0.9, "label": 1, "class_name": metrics.class_name(1),
                "confidence": 0.9, "true_label": 0}]
    table = reports.format_predictions_table(records).splitlines()
    assert table[0].split() == ["file", "pm_probability", "label", "class_name", "confidence", "true"]
    assert "0 WRONG" in table[2]
