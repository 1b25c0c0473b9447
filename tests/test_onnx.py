"""ONNX export (paddle2onnx) and prediction (onnxruntime), and the deploy file ``inference.yml``.

One squeezenet1_1 at 48 px is exported once (``--format both``, checked on real PALM
images when they are present) and shared by the tests.  The exported ONNX model must
give the checkpoint's PM probabilities within the export tolerance (1e-4).  Without the
optional extra ``onnx`` the tools say in one line what to install.
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from paddle_palm import cli
from paddle_palm.engine import export_record, onnx_export, predict, predictors
from paddle_palm.errors import ConfigError

TOLERANCE = 1e-4
HAVE_ONNX = all(importlib.util.find_spec(name) for name in ("paddle2onnx", "onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason='needs the onnx extra (pip install "paddle_palm[onnx]")')


@pytest.fixture(scope="module")
def exported(tmp_path_factory, repo_root):
    """Synthetic data, squeezenet1_1 weights (2 classes) and their export with model.onnx."""
    if not HAVE_ONNX:
        pytest.skip('needs the onnx extra (pip install "paddle_palm[onnx]")')
    from paddle_palm.data.synthetic import make_synthetic_palm
    from paddle_palm.models import build_model

    root = tmp_path_factory.mktemp("onnx")
    data = make_synthetic_palm(root / "data", n_train=4, n_valid=4, image_size=48, seed=5)
    paddle.seed(3)
    weights = root / "sq.pdparams"
    paddle.save(build_model("squeezenet1_1").state_dict(), str(weights))
    real = os.path.join(os.environ.get("PALM_SHARED_DIR", ""), "palm", "PALM-Validation400")
    verify_on = real if os.path.isdir(real) else data / "PALM-Validation400"
    folder = root / "exported"
    proc = subprocess.run(
        [sys.executable, "tools/export.py", "--arch", "squeezenet1_1", "--weights", str(weights), "--image-size", "48",
         "--output", str(folder), "--format", "both", "--verify-images", str(verify_on)],
        capture_output=True, text=True, timeout=600, cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "data": data, "weights": weights, "folder": folder, "stdout": proc.stdout,
            "verified_on": verify_on}


def _run(repo_root, name, args, capsys):
    spec = importlib.util.spec_from_file_location(f"tool_onnx_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as info:
        cli.run(module.main, [str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@needs_onnx
def test_export_writes_a_checked_onnx_model(exported):
    import onnx

    folder = exported["folder"]
    names = sorted(p.name for p in folder.iterdir())
    assert {"model.onnx", "inference.yml", "preprocess.json", "inference.pdiparams"} <= set(names)
    assert not [n for n in names if n.startswith(".")], "staging folder left behind"
    record = json.loads((folder / "preprocess.json").read_text(encoding="utf-8"))
    assert record["files"]["onnx"] == "model.onnx"
    assert len(record["files"]["sha256"]["model.onnx"]) == 64
    assert record["onnx"]["input"] == "image" and record["onnx"]["output"] == "pm_probability"
    check = record["onnx"]["verification"]
    assert check["max_abs_diff"] <= TOLERANCE and "onnxruntime" in check["backend"]
    expected = min(8, len(os.listdir(exported["verified_on"])))  # at most 8 photographs join the check
    assert f"{expected} image files" in check["input"]
    assert record["verification"]["max_abs_diff"] <= TOLERANCE
    assert "onnxruntime" in exported["stdout"] and "ok" in exported["stdout"]
    model = onnx.load(str(folder / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["pm_probability"]
    # The Paddle program's output is named for what it is too (Paddle 2 keeps its own name, recorded).
    assert record["output_tensor"] == ("pm_probability" if record["files"]["model"].endswith(".json")
                                       else "save_infer_model/scale_0.tmp_0")
    exp = predictors.ExportedPredictor(folder)
    assert exp._output_name == record["output_tensor"]


@needs_onnx
def test_onnx_predictor_equals_checkpoint_and_paddle_inference(exported):
    paths = [exported["data"] / "PALM-Training400", exported["data"] / "PALM-Validation400"]
    ckpt = predictors.CheckpointPredictor(exported["weights"], arch="squeezenet1_1", image_size=48)
    onnx_folder = predictors.OnnxPredictor(exported["folder"], threads=1)
    onnx_file = predictors.load_predictor(inference_model=exported["folder"] / "model.onnx", tta=True)
    assert isinstance(onnx_file, predictors.OnnxPredictor) and onnx_file.tta
    assert (onnx_folder.image_size, onnx_folder.preprocess, onnx_folder.threshold) == (48, "B", 0.5)
    a = predict.predict_images(ckpt, paths, batch_size=3)
    b = predict.predict_images(onnx_folder, paths, batch_size=5)
    assert [r["file"] for r in a] == [r["file"] for r in b] and len(a) == 8
    np.testing.assert_allclose([r["pm_probability"] for r in b], [r["pm_probability"] for r in a], atol=TOLERANCE)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 48)).astype("float32")
    ckpt.tta = True
    np.testing.assert_allclose(onnx_file.pm_probability(x), ckpt.pm_probability(x), atol=TOLERANCE)


@needs_onnx
def test_predict_cli_backend_onnx(exported, repo_root, tmp_path, capsys):
    folder = exported["data"] / "PALM-Validation400"
    code, out, err = _run(repo_root, "predict", ["--inference-model", exported["folder"], "--backend", "onnx", folder,
                                                 "--csv", tmp_path / "o.csv", "--quiet"], capsys)
    assert code == 0, err
    assert "onnxruntime" in out
    code, out, err = _run(repo_root, "predict", ["--inference-model", exported["folder"] / "model.onnx", folder,
                                                 "--csv", tmp_path / "f.csv", "--quiet"], capsys)
    assert code == 0 and "onnxruntime" in out, err
    code, _, err = _run(repo_root, "predict", ["--inference-model", exported["folder"], folder,
                                               "--csv", tmp_path / "p.csv", "--quiet"], capsys)
    assert code == 0, err

    def probs(name):
        with open(tmp_path / name, encoding="utf-8", newline="") as fh:
            return [float(r["pm_probability"]) for r in csv.DictReader(fh)]

    np.testing.assert_allclose(probs("o.csv"), probs("p.csv"), atol=TOLERANCE)
    assert probs("o.csv") == probs("f.csv")
    code, _, err = _run(repo_root, "predict", ["--inference-model", exported["folder"], "--backend", "onnx",
                                               "--precision", "bf16", folder], capsys)
    assert code == 2 and "onnxruntime" in err


@needs_onnx
def test_a_damaged_or_missing_onnx_model_is_one_line(exported, repo_root, tmp_path, capsys):
    images = exported["data"] / "PALM-Validation400"
    damaged = shutil.copytree(exported["folder"], tmp_path / "damaged")
    with open(damaged / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    without = shutil.copytree(exported["folder"], tmp_path / "without")
    record = json.loads((without / "preprocess.json").read_text(encoding="utf-8"))
    del record["files"]["onnx"]
    (without / "preprocess.json").write_text(json.dumps(record), encoding="utf-8")
    linked = shutil.copytree(exported["folder"], tmp_path / "linked")
    os.unlink(linked / "model.onnx")
    os.symlink(exported["folder"] / "model.onnx", linked / "model.onnx")
    for folder, message in ((damaged, "damaged or was replaced"), (without, "--format onnx"),
                            (linked, "outside the export folder"), (tmp_path / "none", "not found")):
        code, _, err = _run(repo_root, "predict", ["--inference-model", folder, "--backend", "onnx", images], capsys)
        assert code != 0
        assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err


def test_without_the_extra_the_tools_say_what_to_install(monkeypatch, repo_root, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("paddle2onnx", "onnxruntime") else real(name, *a))
    with pytest.raises(ConfigError, match=r'pip install "paddle_palm\[onnx\]"'):
        onnx_export.require_onnx()
    with pytest.raises(ConfigError, match="onnxruntime, which is not installed"):
        predictors.OnnxPredictor(tmp_path)
    weights = tmp_path / "sq.pdparams"
    from paddle_palm.models import build_model

    paddle.save(build_model("squeezenet1_1").state_dict(), str(weights))
    code, _, err = _run(repo_root, "export", ["--arch", "squeezenet1_1", "--weights", weights, "--image-size", "32",
                                              "--output", tmp_path / "out", "--format", "onnx"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert 'pip install "paddle_palm[onnx]"' in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("method, to_rgb, backend", [("A", False, "cv2"), ("B", True, "pil")])
def test_inference_yml_describes_preprocessing_and_threshold(method, to_rgb, backend):
    record = {"arch": "resnet50", "preprocess": export_record.preprocess_record(method, 96), "threshold": 0.37,
              "classes": ["normal", "pathologic myopia"], "input": {"name": "image"}, "output_tensor": "pm_probability"}
    text = export_record.deploy_yaml(record)
    assert text.startswith("#") and "column 0" in text
    deploy = yaml.safe_load(text)
    assert deploy["Global"] == {"model_name": "resnet50", "inference_model_dir": ".", "input_name": "image",
                                "output_name": "pm_probability"}
    ops = deploy["PreProcess"]["transform_ops"]
    assert [next(iter(op)) for op in ops] == ["DecodeImage", "ResizeImage", "NormalizeImage", "ToCHWImage"]
    assert ops[0]["DecodeImage"]["to_rgb"] is to_rgb
    assert ops[1]["ResizeImage"]["size"] == [96, 96] and ops[1]["ResizeImage"]["backend"] == backend
    norm = ops[2]["NormalizeImage"]
    assert (norm["mean"], norm["std"], norm["order"], norm["channel_num"]) == ([0.5] * 3, [0.5] * 3, "hwc", 3)
    assert norm["scale"] == pytest.approx(1 / 255)
    assert deploy["PostProcess"]["ThreshOutput"] == {"threshold": 0.37, "label_0": "normal",
                                                     "label_1": "pathologic myopia"}
    assert ("padding_black" in text) is (method == "B")
