"""Tests of paddle_palm.engine.evaluate and tools/eval.py.

``evaluate`` is checked on tiny networks whose outputs are known in advance
(so every figure can be recomputed by hand); ``tools/eval.py`` runs end to end
on a small synthetic dataset folder with a squeezenet1_1 at 64 pixels.
"""

import json
import math
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_palm import metrics
from paddle_palm.engine.evaluate import evaluate
from paddle_palm.errors import ConfigError, DataError
from paddle_palm.metrics import pm_probability_from_logits


class MeanLogit(paddle.nn.Layer):
    """Outputs ``scale * (mean pixel) + bias`` per image: ``[N, 1]``, or ``[N, 2]`` as ``[0, logit]``."""

    def __init__(self, two=False, scale=4.0, bias=-0.5):
        super().__init__()
        self.two, self.scale, self.bias = two, scale, bias
        self.dropout = paddle.nn.Dropout(0.9)  # would randomise the outputs if left in train mode

    def forward(self, x):
        logit = self.dropout(x).mean(axis=[1, 2, 3]).unsqueeze(1) * self.scale + self.bias
        return paddle.concat([paddle.zeros_like(logit), logit], axis=1) if self.two else logit


def _batches(images, labels, batch_size, column=False):
    for i in range(0, len(images), batch_size):
        y = labels[i:i + batch_size]
        yield images[i:i + batch_size], (y.astype("float32")[:, None] if column else y)


@pytest.fixture(scope="module")
def toy_data():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (13, 3, 8, 8)).astype("float32")
    images[:6] += 0.3  # brighter images are more likely PM
    labels = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    return images, labels


@pytest.mark.parametrize("two", [False, True], ids=["bce-one-logit", "ce-two-logits"])
def test_evaluate_matches_hand_computation(toy_data, two):
    images, labels = toy_data
    model = MeanLogit(two=two)
    model.train()
    result = evaluate(model, _batches(images, labels, 5), loss="ce" if two else "bce")

    logit = images.mean(axis=(1, 2, 3)).astype(np.float64) * 4.0 - 0.5
    p = 1 / (1 + np.exp(-logit))  # softmax([0, z])[1] == sigmoid(z)
    np.testing.assert_allclose(result["probabilities"], p, rtol=1e-5)
    # Mean over images (not over batches) of the binary cross-entropy.
    expected_loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    pred = (p >= 0.5).astype(int)
    assert result["n"] == 13
    assert result["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert result["auc"] == pytest.approx(metrics.roc_auc(labels, p))
    assert result["confusion_matrix"] == metrics.confusion_matrix(labels, pred).tolist()
    assert result["sensitivity"] == pytest.approx(metrics.sensitivity(labels, pred))
    assert result["specificity"] == pytest.approx(metrics.specificity(labels, pred))
    assert result["baseline"]["accuracy"] == pytest.approx(7 / 13)
    assert result["labels"].tolist() == labels.tolist()
    assert model.training, "the model must be back in train mode"


def test_evaluate_accepts_course_reader_batches_and_threshold(toy_data):
    images, labels = toy_data
    model = MeanLogit()
    # The course readers yield float32 labels [N, 1] (SPEC 1.3).
    a = evaluate(model, _batches(images, labels, 4, column=True), loss="bce", threshold=0.3)
    b = evaluate(model, _batches(images, labels, 13), loss=None, threshold=0.3)
    assert a["threshold"] == 0.3
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-6)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)  # per-image mean: batch size does not matter
    assert a["predictions"].tolist() == (a["probabilities"] >= 0.3).astype(int).tolist()


def test_evaluate_multiclass_outputs():
    model = paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(12, 3))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3, 2, 2)).astype("float32")
    y = rng.integers(0, 3, 10)
    result = evaluate(model, [(x, y)], loss="ce")
    logits = model(paddle.to_tensor(x)).numpy()
    pred = logits.argmax(1)
    assert result["accuracy"] == pytest.approx(np.mean(pred == y))
    assert np.array(result["confusion_matrix"]).shape == (3, 3)
    assert math.isnan(result["auc"])
    z = logits - logits.max(1, keepdims=True)
    ce = -np.mean(z[np.arange(10), y] - np.log(np.exp(z).sum(1)))
    assert result["loss"] == pytest.approx(ce, rel=1e-5)


def test_evaluate_bad_input(toy_data):
    images, labels = toy_data
    with pytest.raises(DataError, match="no batches"):
        evaluate(MeanLogit(), [], loss="bce")
    with pytest.raises(ConfigError, match="one output"):
        evaluate(MeanLogit(two=True), _batches(images, labels, 5), loss="bce")
    with pytest.raises(ConfigError, match="loss must be one of"):
        evaluate(MeanLogit(), _batches(images, labels, 5), loss="mse")
    with pytest.raises(DataError, match="labels"):
        evaluate(MeanLogit(), [(images[:3], np.array([0, 2, 1]))], loss="bce")


def test_pm_probability_from_logits_is_stable():
    p = pm_probability_from_logits(np.array([[-1000.0], [0.0], [1000.0]]))
    assert p.tolist() == [0.0, 0.5, 1.0]
    q = pm_probability_from_logits(np.array([[1000.0, -1000.0], [3.0, 3.0]]), "ce")
    assert q.tolist() == [0.0, 0.5]


# ----------------------------------------------------------------------------- tools/eval.py end to end


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A synthetic dataset folder and a run folder with squeezenet1_1 weights and config.yaml (64 px)."""
    from paddle_palm.data.synthetic import make_synthetic_palm
    from paddle_palm.engine.config import resolve, save_run_config
    from paddle_palm.models import build_model

    root = tmp_path_factory.mktemp("eval")
    data = make_synthetic_palm(root / "data", n_train=4, n_valid=12, image_size=64, seed=3)
    run = root / "run"
    run.mkdir()
    paddle.seed(7)
    model = build_model("squeezenet1_1")
    paddle.save(model.state_dict(), str(run / "best_model.pdparams"))
    save_run_config(resolve(cli={"arch": "squeezenet1_1", "image_size": 64}), run)
    return data, run


def _tool(repo_root, *args):
    return subprocess.run([sys.executable, str(repo_root / "tools" / "eval.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=repo_root)


def test_eval_cli_end_to_end(repo_root, run_dir, tmp_path):
    data, run = run_dir
    proc = _tool(repo_root, "--weights", run / "best_model.pdparams", "--data-dir", data, "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("n", "accuracy", "auc", "sensitivity", "specificity", "loss"):
        assert key in summary
    assert summary["n"] == 12
    assert summary["arch"] == "squeezenet1_1" and summary["image_size"] == 64  # read from config.yaml
    assert "majority-class baseline" in proc.stdout and "per-class accuracy" in proc.stdout
    written = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert written["accuracy"] == summary["accuracy"] and written["confusion_matrix"] == summary["confusion_matrix"]
    for name in ("confusion_matrix.png", "roc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"

    # The figures agree with the per-image predictions written beside them.
    import pandas as pd

    table = pd.read_csv(tmp_path / "predictions.csv")
    assert len(table) == 12
    probs, truth = table["pm_probability"].to_numpy(), table["true_label"].to_numpy()
    assert summary["accuracy"] == pytest.approx(np.mean((probs >= 0.5) == truth))
    assert summary["auc"] == pytest.approx(metrics.roc_auc(truth, probs), abs=1e-4)


def test_eval_cli_flags_override_and_default_output(repo_root, run_dir, tmp_path):
    data, run = run_dir
    labels = tmp_path / "rows.csv"
    import pandas as pd

    pd.read_csv(data / "labels.csv").head(5).to_csv(labels, index=False)
    proc = _tool(repo_root, "--arch", "squeezenet1_1", "--weights", run / "best_model.pdparams", "--data-dir", data,
                 "--labels", labels, "--threshold", "0.25", "--image-size", "48", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["n"] == 5 and summary["threshold"] == 0.25 and summary["image_size"] == 48
    assert (run / "metrics.json").is_file() and (run / "roc.png").is_file()  # default: beside the weights


def _load_tool(repo_root, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_cli_bad_weights_in_a_real_process(repo_root, run_dir):
    data, run = run_dir
    proc = _tool(repo_root, "--arch", "squeezenet1_1", "--weights", run / "missing.pdparams", "--data-dir", data)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "missing.pdparams" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "se_resnet18", "--weights", "{run}/best_model.pdparams", "--data-dir", "{data}"], "architecture"),
        (["--weights", "{run}/best_model.pdparams", "--data-dir", "{run}/no-such-folder"], "not found"),
        (["--arch", "nonet", "--weights", "{run}/best_model.pdparams", "--data-dir", "{data}"], "unknown model"),
        (["--weights", "{run}/best_model.pdparams", "--data-dir", "{data}", "--threshold", "2"], "<= 1.0"),
        (["--weights", "{data}/labels.csv", "--arch", "squeezenet1_1", "--data-dir", "{data}"], "labels.csv"),
    ],
    ids=["other-architecture", "missing-data", "unknown-arch", "bad-threshold", "not-a-checkpoint"],
)
def test_eval_cli_bad_input_is_one_line(repo_root, run_dir, args, message, capsys):
    from paddle_palm import cli

    data, run = run_dir
    tool = _load_tool(repo_root, "eval")
    with pytest.raises(SystemExit) as info:
        cli.run(tool.main, [a.format(run=run, data=data) for a in args])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
