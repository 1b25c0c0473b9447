"""bench/seed_study.py: a smoke run on synthetic data, and the real study (slow, minutes per seed)."""

import json
import subprocess
import sys

import pytest


def test_quick_study_trains_two_seeds_and_reports_their_spread(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, "bench/seed_study.py", "--quick", "--runs-dir", str(tmp_path / "runs"),
                           "--out-dir", str(tmp_path / "results")], cwd=repo_root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "results" / "seed_study-latest.json").read_text())
    assert report["seeds"] == [0, 1] and len(report["runs"]) == 2
    assert all((tmp_path / "runs" / f"seed{s}" / "best_model.pdparams").is_file() for s in (0, 1))
    # the evaluations stay beside the kept runs, for bench/threshold_rules.py
    assert all((tmp_path / "runs" / f"seed{s}" / "eval-validation-plain" / "predictions.csv").is_file() for s in (0, 1))
    (summary,) = report["summary"]
    for figure in ("accuracy", "auc", "sensitivity", "specificity"):
        values = [r[figure] for r in report["runs"]]
        assert summary[figure]["min"] == min(values) and summary[figure]["max"] == max(values)
        assert summary[figure]["mean"] == pytest.approx(sum(values) / 2)
    assert "| validation | plain | accuracy |" in proc.stdout
    shared = report["shared"]["validation/plain"]
    assert shared["seeds"] == ["0", "1"] and shared["images"] == 8 and 0.0 <= shared["ensemble_auc"] <= 1.0
    assert "the seeds' ensemble" in proc.stdout
    for seed in ("0", "1"):  # one epoch each: its time and AUC from the run's history
        curve = report["time_to_auc"][seed]
        assert curve["epochs"] == 1 and curve["minutes_to_best"] == pytest.approx(curve["minutes_all"])


def test_time_to_auc_reads_the_history(repo_root, tmp_path):
    sys.path.insert(0, str(repo_root / "bench"))
    import seed_study

    rows = [(1, 0.90), (2, 0.985), (3, 0.99), (4, 0.97)]
    (tmp_path / "history.csv").write_text("epoch,val_auc,seconds\n" + "".join(f"{e},{a},60\n" for e, a in rows))
    curve = seed_study.time_to_auc(tmp_path, 0.98)
    assert curve == {"target": 0.98, "minutes_to_target": 2.0, "best_val_auc": 0.99, "minutes_to_best": 3.0,
                     "minutes_all": 4.0, "epochs": 4}
    assert seed_study.time_to_auc(tmp_path, 0.995)["minutes_to_target"] is None


def test_arguments_are_split_as_a_shell_splits_them(repo_root):
    sys.path.insert(0, str(repo_root / "bench"))
    import seed_study

    text = '--threads 1 -o data.augment="{hflip: 0.5, hue: 0.03}"'
    args = seed_study.parse_args([f"--train-args={text}", "--variant", "tta=--tta --refer-band 0.1",
                                  "--variant", "band='--refer-band 0.2'"])
    assert args.train_args == text  # kept as written, for the report
    assert seed_study.shlex.split(args.train_args) == ["--threads", "1", "-o", "data.augment={hflip: 0.5, hue: 0.03}"]
    assert args.variant == [("tta", ["--tta", "--refer-band", "0.1"]), ("band", ["--refer-band 0.2"])]
    for bad in (["--train-args=-o 'unclosed"], ["--variant", "no-equals-sign"], ["--variant", "=--tta"]):
        with pytest.raises(SystemExit):
            seed_study.parse_args(bad)


def test_shared_errors_finds_the_eyes_every_seed_misses(repo_root, tmp_path):
    sys.path.insert(0, str(repo_root / "bench"))
    import seed_study

    # Four PM eyes (1-4) and four others (5-8).  Both runs miss eye 1; only one misses eye 5.
    runs = {"0": [0.2, 0.9, 0.8, 0.7, 0.6, 0.1, 0.3, 0.2], "1": [0.1, 0.6, 0.9, 0.8, 0.3, 0.2, 0.1, 0.4]}
    predictions = {}
    for seed, probs in runs.items():
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        lines = ["file,pm_probability,label,class_name,true_label"]
        for i, p in enumerate(probs, start=1):
            lines.append(f"/data/V{i:04d}.jpg,{p},{int(p > 0.5)},x,{int(i <= 4)}")
        (folder / "predictions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        predictions[seed] = seed_study.read_predictions(folder)
    shared = seed_study.shared_errors(predictions)
    assert shared["images"] == 8 and shared["seeds"] == ["0", "1"]
    assert shared["missed_by_all"] == [{"image": "V0001.jpg", "true_label": 1, "min_probability": 0.1,
                                        "max_probability": 0.2}]
    # The ensemble's AUC is that of the two runs' mean log-odds, with ties counted one half.
    import numpy as np

    logit = lambda p: np.log(np.asarray(p) / (1 - np.asarray(p)))  # noqa: E731
    mean = (logit(runs["0"]) + logit(runs["1"])) / 2
    pos, neg = mean[:4], mean[4:]
    expected = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / 16
    assert shared["ensemble_auc"] == pytest.approx(expected)
    assert expected < 1.0


@pytest.mark.slow
def test_the_recipe_with_three_seeds(repo_root, shared_palm, tmp_path):
    """The recipe on the real data, seeds 0, 1, 2 (about 10 minutes each on 2 cores)."""
    proc = subprocess.run([sys.executable, "bench/seed_study.py", "--data-dir", str(shared_palm),
                           "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "results")],
                          cwd=repo_root, capture_output=True, text=True, timeout=3 * 3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (summary,) = json.loads((tmp_path / "results" / "seed_study-latest.json").read_text())["summary"]
    assert summary["auc"]["min"] > 0.95 and summary["accuracy"]["min"] > 0.9
