"""Tests of paddle_palm.engine.export and tools/export.py, and prediction with the exported model.

The exported model (``paddle.jit.save`` with the sigmoid/softmax inside, run by
Paddle Inference with oneDNN) must give the checkpoint's PM probabilities.
Tolerance: 1e-4 absolute.  oneDNN fp32 kernels sum in another order than
Paddle's dynamic-mode kernels, which moves probabilities by about 1e-7-1e-6
here; 1e-4 leaves room for deeper networks while still catching any change of
preprocessing, output layer or weights (those move them by 1e-2 or more).
"""

import csv
import importlib.util
import json
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_palm import cli
from paddle_palm.engine import export, predict, predictors

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic data; squeezenet1_1 weights with 2 classes (softmax) and with 1 logit (sigmoid)."""
    from paddle_palm.data.synthetic import make_synthetic_palm
    from paddle_palm.models import build_model

    root = tmp_path_factory.mktemp("export")
    data = make_synthetic_palm(root / "data", n_train=6, n_valid=4, image_size=64, seed=9)
    paddle.seed(21)
    sq = root / "sq.pdparams"
    paddle.save(build_model("squeezenet1_1").state_dict(), str(sq))
    one_logit = root / "one_logit.pdparams"
    paddle.save(build_model("squeezenet1_1", num_classes=1).state_dict(), str(one_logit))
    exported = root / "sq-export"
    proc = subprocess.run(
        [sys.executable, "tools/export.py", "--arch", "squeezenet1_1", "--weights", str(sq), "--image-size", "64",
         "--output", str(exported)], capture_output=True, text=True, timeout=180, cwd=_repo(),
    )
    assert proc.returncode == 0, proc.stderr
    return {"data": data, "sq": sq, "one_logit": one_logit, "exported": exported, "export_stdout": proc.stdout, "root": root}


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", _repo() / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name, args, capsys):
    with pytest.raises(SystemExit) as info:
        cli.run(_load_tool(name).main, [str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_export_writes_model_and_preprocessing_record(setup):
    folder = setup["exported"]
    names = sorted(p.name for p in folder.iterdir())
    assert "preprocess.json" in names and "inference.pdiparams" in names
    assert "inference.json" in names or "inference.pdmodel" in names
    assert not [n for n in names if n.startswith(".")], "staging folder left behind"
    record = json.loads((folder / "preprocess.json").read_text(encoding="utf-8"))
    assert record["arch"] == "squeezenet1_1" and record["num_classes"] == 2
    assert record["input"]["shape"] == [None, 3, 64, 64]
    pre = record["preprocess"]
    assert (pre["method"], pre["image_size"], pre["channel_order"], pre["mean"], pre["std"]) == (
        "B", 64, "RGB", [0.5] * 3, [0.5] * 3)
    assert record["classes_zh"] == ["非病理性近视", "病理性近视"]
    assert record["weights_sha256"] and record["paddle_version"] == paddle.__version__
    assert record["verification"]["max_abs_diff"] <= TOLERANCE
    assert "ok" in setup["export_stdout"]


def test_exported_model_outputs_the_pm_probability(setup):
    """The program itself (no predictor code of ours): input image -> [N, 1] probability."""
    from paddle import inference as pi

    folder = setup["exported"]
    record = json.loads((folder / "preprocess.json").read_text(encoding="utf-8"))
    config = pi.Config(str(folder / record["files"]["model"]), str(folder / record["files"]["params"]))
    config.disable_gpu()
    predictor = pi.create_predictor(config)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 64, 64)).astype("float32")
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    assert out.shape == (3, 1)
    reference = predictors.CheckpointPredictor(setup["sq"], arch="squeezenet1_1", image_size=64).pm_probability(x)
    np.testing.assert_allclose(out[:, 0], reference, atol=TOLERANCE)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain-cpu"])
def test_exported_equals_checkpoint_on_images(setup, onednn):
    paths = [setup["data"] / "PALM-Training400", setup["data"] / "PALM-Validation400"]
    ckpt = predictors.CheckpointPredictor(setup["sq"], arch="squeezenet1_1", image_size=64)
    exp = predictors.ExportedPredictor(setup["exported"], onednn=onednn, threads=1)
    a = predict.predict_images(ckpt, paths, batch_size=3)
    b = predict.predict_images(exp, paths, batch_size=5)
    assert [r["file"] for r in a] == [r["file"] for r in b] and len(a) == 10
    np.testing.assert_allclose([r["pm_probability"] for r in b], [r["pm_probability"] for r in a], atol=TOLERANCE)
    assert [r["class_name"] for r in a] == [r["class_name"] for r in b]


def test_one_logit_model_exports_with_sigmoid(setup, tmp_path):
    record = export.export_checkpoint(setup["one_logit"], tmp_path / "one", arch="squeezenet1_1", num_classes=1,
                                      image_size=64, preprocess="A")
    assert record["loss"] == "bce" and record["preprocess"]["method"] == "A"
    assert record["preprocess"]["channel_order"] == "BGR"
    assert record["verification"]["max_abs_diff"] <= TOLERANCE
    ckpt = predictors.CheckpointPredictor(setup["one_logit"], arch="squeezenet1_1", num_classes=1, image_size=64,
                                         preprocess="A")
    exp = predictors.ExportedPredictor(tmp_path / "one")
    assert (exp.preprocess, exp.image_size) == ("A", 64)
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 64, 64)).astype("float32")
    np.testing.assert_allclose(exp.pm_probability(x), ckpt.pm_probability(x), atol=TOLERANCE)
    paths = [setup["data"] / "PALM-Validation400"]
    np.testing.assert_allclose([r["pm_probability"] for r in predict.predict_images(exp, paths)],
                               [r["pm_probability"] for r in predict.predict_images(ckpt, paths)], atol=TOLERANCE)
    # Export again into the same folder: replaced, nothing left over.
    export.export_checkpoint(setup["one_logit"], tmp_path / "one", arch="squeezenet1_1", num_classes=1,
                             image_size=64, threshold=0.3, verify=False)
    assert predictors.ExportedPredictor(tmp_path / "one").threshold == 0.3
    assert not [p for p in (tmp_path / "one").iterdir() if p.name.startswith(".")]


def test_predict_cli_with_exported_model_equals_checkpoint(setup, tmp_path, capsys):
    folder = setup["data"] / "PALM-Validation400"
    code, out, err = _run("predict", ["--inference-model", setup["exported"], folder, "--csv", tmp_path / "e.csv"],
                          capsys)
    assert code == 0, err
    assert "Paddle Inference" in out
    code, _, err = _run("predict", ["--arch", "squeezenet1_1", "--weights", setup["sq"], "--image-size", "64",
                                    folder, "--csv", tmp_path / "c.csv"], capsys)
    assert code == 0, err

    def rows(name):
        with open(tmp_path / name, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))

    e, c = rows("e.csv"), rows("c.csv")
    assert [r["file"] for r in e] == [r["file"] for r in c] and len(e) == 4
    np.testing.assert_allclose([float(r["pm_probability"]) for r in e], [float(r["pm_probability"]) for r in c],
                               atol=TOLERANCE)


def test_bad_exports_and_exported_models(setup, tmp_path, capsys):
    sq = setup["sq"]
    cases = [
        ("export", ["--arch", "squeezenet1_1", "--weights", tmp_path / "none.pdparams", "--output", tmp_path / "o"],
         "none.pdparams"),
        ("export", ["--arch", "resnet50", "--weights", sq, "--output", tmp_path / "o"], "resnet50"),
        ("export", ["--arch", "squeezenet1_1", "--weights", sq, "--output", sq], "is a file"),
        ("export", ["--arch", "squeezenet1_1", "--weights", sq, "--output", tmp_path / "o", "--image-size", "8"],
         "too small"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "preprocess.json").write_text("{not json", encoding="utf-8")
    cases.append(("predict", ["--inference-model", broken, setup["data"]], "preprocess.json"))
    half = tmp_path / "half"
    half.mkdir()
    (half / "preprocess.json").write_bytes((setup["exported"] / "preprocess.json").read_bytes())
    cases.append(("predict", ["--inference-model", half, setup["data"] / "PALM-Validation400"], "inference"))
    for tool, args, message in cases:
        code, out, err = _run(tool, args, capsys)
        assert code != 0, (tool, args)
        assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
