"""The operating point as part of a trained model: chosen at the end of training, recorded in the run,
used by evaluation, prediction and export; flip TTA and the refer band (tiny synthetic data)."""

import json
import os

import numpy as np
import pytest
import yaml

from paddle_palm.calibration import apply_temperature
from paddle_palm.data.synthetic import make_synthetic_palm
from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.engine import config as cfg
from paddle_palm.engine.evaluate import evaluate_checkpoint
from paddle_palm.engine.export import export_checkpoint
from paddle_palm.engine.model_settings import resolve_model_settings
from paddle_palm.engine.predict import predict_images
from paddle_palm.engine.predictors import CheckpointPredictor, ExportedPredictor
from paddle_palm.engine.trainer import train
from paddle_palm.errors import CheckpointError, ConfigError
from paddle_palm.operating_point import choose_threshold


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_palm(tmp_path_factory.mktemp("palm") / "data", n_train=12, n_valid=10, image_size=48, seed=3)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A two-epoch run whose threshold is chosen by Youden's rule, with temperature scaling."""
    out = tmp_path_factory.mktemp("run") / "run"
    config = cfg.resolve({"arch": "squeezenet1_1", "data_dir": str(data), "image_size": 32, "batch_size": 4,
                          "epochs": 2, "output_dir": str(out), "progress": False, "visualdl": False, "seed": 5,
                          "threshold_rule": "youden", "calibrate": True})
    summary = train(config, echo=False)
    return out, summary


def test_training_records_the_rule_and_its_threshold(run):
    out, summary = run
    op = summary["operating_point"]
    assert op["rule"] == "youden" and 0.0 < op["threshold"] < 1.0 and op["n"] == 10
    assert op["sensitivity_ci"][0] <= op["sensitivity"] <= op["sensitivity_ci"][1]
    states = ckpt.read_states(str(out), "best_model")
    assert states["operating_point"] == op  # in best_model.pdstates, under its digest
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["operating_point"] == {"threshold": op["threshold"], "temperature": op["temperature"],
                                        "rule": "youden"}
    assert "operating point (youden on 10 validation images)" in (out / "train.log").read_text()


def test_the_recorded_threshold_is_youdens_on_the_validation_probabilities(run, data):
    out, summary = run
    op = summary["operating_point"]
    plain = evaluate_checkpoint(out, data, threshold=0.5, write_files=False)  # the same images, fixed threshold
    assert plain["threshold"] == 0.5
    settings = resolve_model_settings(out)
    assert (settings.threshold, settings.temperature) == (op["threshold"], op["temperature"])
    # Re-derive the rule's threshold from the calibrated validation probabilities.
    probs = np.array([r["pm_probability"] for r in predict_images(CheckpointPredictor(out),
                                                                    [data / "PALM-Validation400"])])
    labels = np.array([int(v) for v in _labels(data)])
    assert choose_threshold("youden", labels, probs) == pytest.approx(op["threshold"], abs=1e-6)


def _labels(data):
    import pandas as pd

    sheet = pd.read_excel(next((data / "PALM-Validation-GT").glob("*.xlsx")))
    return sheet.sort_values("imgName")["Label"].tolist()


def test_an_edited_operating_point_is_refused(run, tmp_path):
    out, _ = run
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("best_model.pdparams", "best_model.pdstates"):
        (copy / name).write_bytes((out / name).read_bytes())
    states = json.loads((copy / "best_model.pdstates").read_text())
    states["operating_point"]["threshold"] = 0.01
    (copy / "best_model.pdstates").write_text(json.dumps(states))
    with pytest.raises(CheckpointError, match="digest"):
        ckpt.operating_point_beside(copy / "best_model.pdparams")


def test_eval_reports_the_operating_point_calibration_and_refer_band(run, data, tmp_path):
    out, summary = run
    result = evaluate_checkpoint(out, data, output_dir=tmp_path / "ev", refer_band=0.05)
    op = result["operating_point"]
    assert result["threshold"] == summary["operating_point"]["threshold"] and op["rule"] == "youden"
    assert op["n_pm"] + op["n_non_pm"] == result["n"] == 10
    assert result["temperature"] == summary["operating_point"]["temperature"]
    assert 0.0 <= result["calibration"]["ece"] <= 1.0 and 0.0 <= result["calibration"]["brier"] <= 1.0
    at_band = result["refer"]["at_band"]
    assert at_band["band"] == 0.05 and at_band["decided"] + at_band["referred"] == 10
    for name in ("reliability", "coverage"):
        assert (tmp_path / "ev" / f"{name}.png").stat().st_size > 1000
    # A flag overrides the recorded threshold, and the report says it is a fixed rule then.
    fixed = evaluate_checkpoint(out, data, threshold=0.3, write_files=False)
    assert fixed["threshold"] == 0.3 and fixed["operating_point"]["rule"] == "fixed:0.3"


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror(run, data):
    out, _ = run
    plain, tta = CheckpointPredictor(out), CheckpointPredictor(out, tta=True)
    image, _ = plain.load_image(next((data / "PALM-Validation400").iterdir()))
    batch = image[None]
    expected = (plain.pm_probability(batch) + plain.pm_probability(batch[..., ::-1].copy())) / 2
    assert tta.pm_probability(batch) == pytest.approx(expected, abs=1e-6)
    ev = evaluate_checkpoint(out, data, tta=True, write_files=False)
    assert ev["tta"] is True


def test_the_checkpoint_predictor_applies_the_temperature(run, data):
    out, summary = run
    temperature = summary["operating_point"]["temperature"]
    predictor = CheckpointPredictor(out)
    image, _ = predictor.load_image(next((data / "PALM-Validation400").iterdir()))
    calibrated = predictor.pm_probability(image[None])
    predictor.settings.temperature = 1.0
    raw = predictor.pm_probability(image[None])
    assert calibrated == pytest.approx(apply_temperature(raw, temperature), abs=1e-6)


def test_export_carries_threshold_and_temperature(run, data, tmp_path):
    out, summary = run
    record = export_checkpoint(out, tmp_path / "exported")
    op = summary["operating_point"]
    assert record["threshold"] == op["threshold"] and record["temperature"] == op["temperature"]
    assert record["operating_point"]["rule"] == "youden"
    exported, checkpoint = ExportedPredictor(tmp_path / "exported"), CheckpointPredictor(out)
    images = [data / "PALM-Validation400" / name for name in sorted(os.listdir(data / "PALM-Validation400"))[:4]]
    a = [r["pm_probability"] for r in predict_images(exported, images)]
    b = [r["pm_probability"] for r in predict_images(checkpoint, images)]
    assert a == pytest.approx(b, abs=1e-5)  # the temperature is inside the exported program
    assert exported.threshold == op["threshold"]


def test_predict_refer_band_decides_or_refers(run, data):
    out, _ = run
    predictor = CheckpointPredictor(out)
    records = predict_images(predictor, [data / "PALM-Validation400"], refer_band=0.49)
    assert {r["decision"] for r in records} <= {"refer", "PM", "not PM"}
    for r in records:
        inside = abs(r["pm_probability"] - predictor.threshold) < 0.49 or \
            r["pm_probability"] == predictor.threshold - 0.49
        assert (r["decision"] == "refer") == inside
    assert all("decision" not in r for r in predict_images(predictor, [data / "PALM-Validation400"]))


def test_threshold_rule_is_checked_in_the_configuration(data, tmp_path):
    with pytest.raises(ConfigError, match="threshold rule 'median' is not valid"):
        cfg.resolve({"arch": "squeezenet1_1", "threshold_rule": "median"})
    fixed = cfg.resolve({"arch": "squeezenet1_1"})
    assert fixed["threshold_rule"] is None and fixed["calibrate"] is False


def test_a_finished_run_gets_its_operating_point_without_training_again(data, tmp_path):
    out = tmp_path / "plain"
    config = cfg.resolve({"arch": "squeezenet1_1", "data_dir": str(data), "image_size": 32, "batch_size": 4,
                          "epochs": 1, "output_dir": str(out), "progress": False, "visualdl": False, "seed": 2})
    first = train(config, echo=False)
    assert first["operating_point"]["rule"] == "fixed:0.5"  # the fixed threshold, with its figures
    weights = (out / "best_model.pdparams").read_bytes()
    with pytest.raises(ConfigError, match="has already trained 1 epochs"):
        train(cfg.resolve_resume(str(out), {"epochs": 1}), resume_dir=str(out), echo=False)
    again = train(cfg.resolve_resume(str(out), {"epochs": 1, "threshold_rule": "sensitivity:1"}),
                  resume_dir=str(out), echo=False)
    assert again["operating_point"]["rule"] == "sensitivity:1" and again["operating_point"]["sensitivity"] == 1.0
    assert (out / "best_model.pdparams").read_bytes() == weights  # nothing was trained
    assert yaml.safe_load((out / "config.yaml").read_text())["operating_point"]["rule"] == "sensitivity:1"
