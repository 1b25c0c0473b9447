"""Tests of the screening app (paddle_palm.app, tools/app.py).

A tiny squeezenet1_1 is trained for one epoch on a synthetic data set in the
test, then exported with tools/export.py; the app is started on a free local
port with it and answers real PALM photographs.  The probabilities must be the
ones tools/predict.py gives for the same files (same Paddle Inference program;
tolerance 1e-5 because predict.py's CSV keeps six decimals).  The page is driven
in headless Chromium (Debian's chromium + chromium-driver) through Selenium.

Tests of the model service, the records and the checkpoint check need only
Paddle; the server tests skip when Gradio is missing, the browser tests when
Chromium, ChromeDriver or Selenium is (``.ci/install_app_deps.sh`` installs them).
"""

import base64
import concurrent.futures
import csv
import importlib.util
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_GRADIO = importlib.util.find_spec("gradio") is not None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HAVE_SELENIUM = importlib.util.find_spec("selenium") is not None

needs_gradio = pytest.mark.skipif(not HAVE_GRADIO, reason='gradio is not installed (pip install "paddle_palm[app]")')
needs_browser = pytest.mark.skipif(
    not (HAVE_GRADIO and CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM),
    reason="headless browser test needs gradio, selenium, chromium and chromedriver (.ci/install_app_deps.sh)")

#: Real PALM photographs sent to the app (the shared copies are 224x224 JPEGs).
PALM_FILES = ["PALM-Validation400/V0001.jpg", "PALM-Validation400/V0002.jpg", "PALM-Validation400/V0008.jpg",
              "PALM-Training400/P0001.jpg", "PALM-Training400/N0001.jpg", "PALM-Training400/H0001.jpg"]


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               GLOG_minloglevel="2", GRADIO_ANALYTICS_ENABLED="False")
    return env


def _tool(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "tools" / args[0]), *map(str, args[1:])], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=_env())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A one-epoch squeezenet1_1 run on synthetic data (64 px), its export, and tools/eval.py's outputs."""
    from paddle_palm.data.synthetic import make_synthetic_palm

    root = tmp_path_factory.mktemp("app")
    data = make_synthetic_palm(root / "data", n_train=8, n_valid=8, image_size=96, seed=3)
    run = root / "run"
    proc = _tool("train.py", "--arch", "squeezenet1_1", "--data-dir", data, "--epochs", "1", "--image-size", "64",
                 "--batch-size", "8", "--seed", "0", "--output-dir", run, "--no-progress", "--no-visualdl")
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = root / "exported"
    proc = _tool("export.py", "--weights", run / "best_model.pdparams", "--output", exported)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"root": root, "data": data, "run": run, "weights": run / "best_model.pdparams", "exported": exported}


def _palm(shared_palm):
    return [shared_palm / f for f in PALM_FILES]


# ----------------------------------------------------------------------------- the checkpoint check


class _Payload:
    """A pickle that runs code when loaded: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_restricted_reading_accepts_paddle_checkpoints_and_refuses_code(tmp_path):
    import paddle

    from paddle_palm.errors import CheckpointError
    from paddle_palm.safe_load import load_pickle, restricted_loads

    def check_checkpoint_file(path):
        return list(load_pickle(path))

    def restricted_load(data):
        return restricted_loads(data, "upload")

    from paddle_palm.models import build_model

    good = tmp_path / "good.pdparams"
    paddle.save(build_model("squeezenet1_1").state_dict(), str(good))
    keys = check_checkpoint_file(good)
    assert "features.0.weight" in keys
    # Paddle 2.x's LoDTensor form, eval("data", {"data": array}), and a protocol-2 pickle (Paddle 1.8).
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)

    class LoD:
        def __reduce__(self):
            return (eval, ("data", {"data": arr}))

    loaded = restricted_load(pickle.dumps({"w": LoD()}, protocol=4))
    np.testing.assert_array_equal(loaded["w"], arr)
    np.testing.assert_array_equal(restricted_load(pickle.dumps({"w": arr}, protocol=2))["w"], arr)

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"features.0.weight": _Payload(str(marker))}))
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.pdparams: it asks for .*open"):
        check_checkpoint_file(evil)
    assert not marker.exists()

    class BadEval:
        def __reduce__(self):
            return (eval, ("__import__('os').getcwd()", {}))

    with pytest.raises(CheckpointError, match="eval"):
        restricted_load(pickle.dumps({"w": BadEval()}))
    truncated = tmp_path / "cut.pdparams"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a complete Paddle checkpoint"):
        check_checkpoint_file(truncated)


# ----------------------------------------------------------------------------- the records


def test_model_card_reads_the_run(model):
    from paddle_palm.app.records import read_model_card

    run = model["run"]
    card = read_model_card(run, "squeezenet1_1", "x", 0.5, 64, "B", ["a", "b"], ["甲", "乙"],
                           weights_file=model["weights"])
    with open(run / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    best = json.loads((run / "best_model.pdstates").read_text())["best"]["epoch"]
    row = next(r for r in rows if int(r["epoch"]) == best)
    assert card.best_epoch == best and card.epochs == 1
    assert card.val_auc == pytest.approx(float(row["val_auc"]))
    assert card.val_sensitivity == pytest.approx(float(row["val_sensitivity"]))
    assert card.trained == json.loads((run / "latest.pdstates").read_text())["time"]
    assert card.val_images == 8
    empty = read_model_card(None, "squeezenet1_1", "x", 0.5, 64, "B", [], [])
    assert empty.trained is None and empty.val_auc is None and "folder is unknown" in empty.missing[0]


def test_validation_scores_from_eval_outputs(model, tmp_path):
    from paddle_palm.app.records import scores_from_eval_outputs
    from paddle_palm.engine.evaluate import evaluate_checkpoint

    assert scores_from_eval_outputs(model["run"], model["weights"]) is None  # eval.py has not run there
    folder = tmp_path / "eval"
    folder.mkdir()
    weights = folder / "best_model.pdparams"
    shutil.copy(model["weights"], weights)
    shutil.copy(model["run"] / "config.yaml", folder / "config.yaml")
    summary = evaluate_checkpoint(weights, model["data"], output_dir=folder)
    scores = scores_from_eval_outputs(folder, weights)
    assert scores is not None and scores.labels.size == summary["n"] == 8
    op = scores.operating_point(summary["threshold"])
    assert op["sensitivity"] == pytest.approx(summary["sensitivity"])
    assert op["specificity"] == pytest.approx(summary["specificity"])
    assert scores.operating_point(0.0)["sensitivity"] == 1.0 and scores.operating_point(1.01)["specificity"] == 1.0


# ----------------------------------------------------------------------------- the service without a server


def test_screener_with_weights_matches_the_checkpoint_predictor(model, shared_palm):
    from paddle_palm.app.screening import Screener
    from paddle_palm.engine.predictors import CheckpointPredictor

    screener = Screener(weights=model["weights"], probe=False)
    try:
        reference = CheckpointPredictor(model["weights"])
        for path in _palm(shared_palm)[:3]:
            x, _ = reference.load_image(path)
            expected = float(reference.pm_probability(x[None])[0])
            r = screener.screen(path.name, path.read_bytes())
            assert r["pm_probability"] == pytest.approx(expected, abs=1e-5)
            assert r["overlay"].shape == r["photo"].shape and r["overlay"].dtype == np.uint8
            assert r["gradcam"]["class_index"] == r["label"]
            assert r["class_name"] in ("病理性近视 (pathologic myopia)", "非病理性近视 (non-pathologic myopia)")
        assert screener.card.arch == "squeezenet1_1" and screener.card.val_auc is not None
    finally:
        screener.close()


def test_screener_refuses_bad_uploads_by_name(model, shared_palm, tmp_path):
    from paddle_palm.app.screening import Screener, UploadLimits

    screener = Screener(weights=model["weights"], probe=False,
                        limits=UploadLimits(max_bytes=200_000, max_pixels=1_000_000, max_images=3))
    try:
        jpeg = (shared_palm / PALM_FILES[0]).read_bytes()
        results = screener.screen_many([
            ("notes.txt", b"just text"), ("empty.jpg", b""), ("cut.jpg", jpeg[: len(jpeg) // 2]),
        ])
        assert [r["ok"] for r in results] == [False, False, False]
        assert "notes.txt: not an image file" in results[0]["error"]
        assert "empty.jpg: empty file" in results[1]["error"]
        assert results[2]["error"].startswith("cut.jpg: truncated")
        assert all(screener._tmp not in r["error"] for r in results)  # the upload's name, not the temp file
        big = screener.screen_many([("big.jpg", jpeg + b"\0" * 200_000)])[0]
        assert not big["ok"] and "file too large" in big["error"]
        with pytest.raises(Exception, match="at most 3 per request"):
            screener.screen_many([("a.jpg", jpeg)] * 4)
        # A PNG whose header declares 2000 x 1000 pixels: refused before decoding.
        import cv2

        ok, png = cv2.imencode(".png", np.zeros((1000, 2000, 3), np.uint8))
        huge = screener.screen_many([("wide.png", png.tobytes())])[0]
        assert not huge["ok"] and "2000x1000" in huge["error"] and "1,000,000 pixels" in huge["error"]
    finally:
        screener.close()


def test_screener_refuses_unsafe_checkpoint_and_damaged_export(model, tmp_path):
    from paddle_palm.app.screening import Screener, check_export_folder
    from paddle_palm.errors import CheckpointError, DataError

    run = tmp_path / "evil-run"
    run.mkdir()
    shutil.copy(model["run"] / "config.yaml", run / "config.yaml")
    marker = tmp_path / "ran"
    (run / "best_model.pdparams").write_bytes(pickle.dumps({"x": _Payload(str(marker))}))
    with pytest.raises(CheckpointError, match="refusing to load"):
        Screener(weights=run / "best_model.pdparams")
    assert not marker.exists()

    # The export's Grad-CAM weights must be the exported ones.
    other = tmp_path / "other.pdparams"
    import paddle

    from paddle_palm.models import build_model

    paddle.save(build_model("squeezenet1_1").state_dict(), str(other))
    with pytest.raises(CheckpointError, match="are not the weights exported"):
        Screener(inference_model=model["exported"], weights=other, probe=False)

    damaged = tmp_path / "damaged"
    shutil.copytree(model["exported"], damaged)
    record = json.loads((damaged / "preprocess.json").read_text())
    record["files"]["params"] = "../../etc/passwd"
    (damaged / "preprocess.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="not a file name inside the export folder"):
        check_export_folder(damaged, probe=False)
    record["files"]["params"] = "inference.pdiparams"
    (damaged / "preprocess.json").write_text(json.dumps(record))
    model_file = damaged / record["files"]["model"]
    model_file.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match=str(damaged)):
        check_export_folder(damaged, probe=True)


# ----------------------------------------------------------------------------- the server


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _post(url, payload, timeout=300):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class _App:
    """tools/app.py on a free local port, ready when ``/api/model`` answers ``ready_status``."""

    def __init__(self, *args, ready_status=200):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.uploads = tempfile.mkdtemp(prefix="palm-app-test-")  # Gradio's copies of the page's uploads
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "app.py"), *map(str, args),
                                      "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env=dict(_env(), GRADIO_TEMP_DIR=self.uploads))
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                shutil.rmtree(self.uploads, ignore_errors=True)
                raise AssertionError(f"the app stopped: {self.output()}")
            try:
                self.model = _get(self.url + "/api/model", timeout=5)
                if ready_status == 200:
                    break
            except urllib.error.HTTPError as exc:
                if exc.code == ready_status:
                    self.model = json.load(exc)
                    break
            except (OSError, ValueError):
                if time.time() > deadline:
                    self.stop()
                    raise AssertionError(f"the app did not start in 300 s: {self.output()}") from None
                time.sleep(1)

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.uploads, ignore_errors=True)


@pytest.fixture(scope="module")
def app(model):
    """tools/app.py serving the exported model (Grad-CAM from its weights), with a 1 MB upload limit."""
    if not HAVE_GRADIO:
        pytest.skip('gradio is not installed (pip install "paddle_palm[app]")')
    server = _App("--inference-model", model["exported"], "--valid-data", model["data"], "--max-upload-mb", "1",
                  "--max-images", "8")
    yield server
    server.stop()
    out = server.output()
    assert "Traceback" not in out, out


def _image_payload(paths, overlay=True):
    return {"images": [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths],
            "overlay": overlay}


@needs_gradio
def test_app_binds_localhost_and_describes_the_model(app, model):
    m = app.model["model"]
    assert m["arch"] == "squeezenet1_1" and m["trained"] and m["val_auc"] is not None
    assert m["classes_zh"] == ["非病理性近视", "病理性近视"]
    assert app.model["gradcam"] is True
    assert app.model["validation_scores"]["n"] == 8
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
    if out:
        lines = [ln for ln in out.splitlines() if f":{app.port} " in ln]
        assert lines and all("127.0.0.1:" in ln for ln in lines), lines
    op = _get(app.url + "/api/operating-point?threshold=0.3")
    assert op["threshold"] == 0.3 and op["exact"] and op["n"] == 8
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(app.url + "/api/operating-point?threshold=x")
    assert info.value.code == 400 and "threshold must be a number" in json.load(info.value)["error"]


@needs_gradio
def test_api_matches_predict_tool_on_real_palm_photos(app, model, shared_palm, tmp_path):
    paths = _palm(shared_palm)
    code, body = _post(app.url + "/api/screen", _image_payload(paths))
    assert code == 200 and body["ok"], body
    results = body["results"]
    assert [r["name"] for r in results] == [p.name for p in paths]
    out_csv = tmp_path / "predict.csv"
    proc = _tool("predict.py", "--inference-model", model["exported"], *paths, "--csv", out_csv, "--quiet")
    assert proc.returncode == 0, proc.stderr
    with open(out_csv, newline="", encoding="utf-8") as fh:
        expected = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    for r in results:
        e = expected[r["name"]]
        assert r["pm_probability"] == pytest.approx(float(e["pm_probability"]), abs=1e-5)
        assert r["label"] == int(e["label"]) and r["class_name"] == e["class_name"]
        assert r["decision"] == ("PM" if r["label"] else "not PM")
        png = base64.b64decode(r["overlay_png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        import cv2

        overlay = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert overlay.shape == (224, 224, 3)
    code, body = _post(app.url + "/api/screen", _image_payload(paths[:1], overlay=False))
    assert code == 200 and body["results"][0]["overlay_png"] is None


@needs_gradio
def test_api_refuses_bad_requests_and_files_in_one_line(app, shared_palm, tmp_path):
    good = (shared_palm / PALM_FILES[0]).read_bytes()
    items = [
        {"name": "notes.txt", "data": base64.b64encode(b"not a photo").decode()},
        {"name": "big.jpg", "data": base64.b64encode(good + b"\0" * (1 << 20)).decode()},
        {"name": "cut.jpg", "data": base64.b64encode(good[:3000]).decode()},
        {"name": "bad64.jpg", "data": "***"},
        {"name": "../../etc/V0001.jpg", "data": base64.b64encode(good).decode()},
    ]
    code, body = _post(app.url + "/api/screen", {"images": items})
    assert code == 200 and body["ok"] is False
    r = body["results"]
    assert [x["ok"] for x in r] == [False, False, False, False, True]
    assert "not an image file" in r[0]["error"] and "file too large" in r[1]["error"]
    assert "truncated" in r[2]["error"] and "not valid base64" in r[3]["error"]
    assert r[4]["name"] == "V0001.jpg"
    for x in r[:4]:
        assert "\n" not in x["error"] and "Traceback" not in x["error"]
    assert _post(app.url + "/api/screen", b"{not json")[0] == 400
    assert _post(app.url + "/api/screen", {"images": []})[0] == 400
    assert _post(app.url + "/api/screen", {"images": items[:1] * 9})[0] == 400
    # A body declared larger than the cap is refused before it is read.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
    conn.putrequest("POST", "/api/screen")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(200 << 20))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "request too large" in json.load(response)["error"]
    conn.close()


@needs_gradio
def test_concurrent_requests_get_their_own_results(app, shared_palm):
    paths = _palm(shared_palm)
    sequential = {}
    for p in paths:
        code, body = _post(app.url + "/api/screen", _image_payload([p]))
        assert code == 200
        sequential[p.name] = body["results"][0]

    def one(i):
        chosen = [paths[i % len(paths)], paths[(i + 3) % len(paths)]]
        code, body = _post(app.url + "/api/screen", _image_payload(chosen))
        return chosen, code, body

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(16)))
    for chosen, code, body in answers:
        assert code == 200
        assert [r["name"] for r in body["results"]] == [p.name for p in chosen]
        for r in body["results"]:
            ref = sequential[r["name"]]
            assert r["pm_probability"] == pytest.approx(ref["pm_probability"], abs=1e-6)
            assert r["overlay_png"] == ref["overlay_png"]


@needs_gradio
def test_app_refuses_unsafe_checkpoint_at_start(model, tmp_path):
    run = tmp_path / "evil-run"
    run.mkdir()
    shutil.copy(model["run"] / "config.yaml", run / "config.yaml")
    marker = tmp_path / "ran"
    (run / "best_model.pdparams").write_bytes(pickle.dumps({"x": _Payload(str(marker))}))
    proc = _tool("app.py", "--weights", run, "--port", _free_port(), timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "refusing to load" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not marker.exists()


def test_missing_gradio_is_one_line(tmp_path, model):
    hint = 'error: the screening app needs Gradio: pip install "paddle_palm[app]" (or: pip install gradio)'
    args = ["--inference-model", str(model["exported"]), "--port", str(_free_port())]
    # Not installed: said at once, before the model is loaded.
    blocked = ("import sys, runpy; sys.modules['gradio'] = None; sys.argv = ['app.py'] + sys.argv[1:]; "
               f"runpy.run_path({str(ROOT / 'tools' / 'app.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", blocked, *args], capture_output=True, text=True, timeout=300,
                          env=_env(), cwd=ROOT)
    assert proc.returncode == 1 and proc.stderr.strip() == hint and "loading" not in proc.stdout
    # Installed but broken (it cannot be imported): the same line when the page is built.
    fake = tmp_path / "nogradio" / "gradio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named gradio')\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "app.py"), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 1 and proc.stderr.strip() == hint


@pytest.fixture(scope="module")
def refusal_app(model, tmp_path_factory):
    """tools/app.py --serve-load-errors given a checkpoint whose pickle would run code."""
    if not HAVE_GRADIO:
        pytest.skip('gradio is not installed (pip install "paddle_palm[app]")')
    run = tmp_path_factory.mktemp("evil-run")
    shutil.copy(model["run"] / "config.yaml", run / "config.yaml")
    marker = run.parent / "payload-ran"
    (run / "best_model.pdparams").write_bytes(pickle.dumps({"x": _Payload(str(marker))}))
    server = _App("--weights", run, "--serve-load-errors", ready_status=503)
    yield server, marker
    server.stop()


@needs_gradio
def test_unloadable_model_is_explained_by_the_api(refusal_app):
    server, marker = refusal_app
    assert server.model["ok"] is False and "refusing to load" in server.model["error"]
    code, body = _post(server.url + "/api/screen", {"images": [{"name": "a.jpg", "data": ""}]})
    assert code == 503 and body["error"].startswith("the model was not loaded: ")
    assert not marker.exists()


# ----------------------------------------------------------------------------- the page, in a real browser


@pytest.fixture(scope="module")
def browser():
    if not (HAVE_GRADIO and CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM):
        pytest.skip("headless browser test needs gradio, selenium, chromium and chromedriver (.ci/install_app_deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="palm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={profile}", "--window-size=1280,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open_page(browser, app):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app.url + "/")
    WebDriverWait(browser, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#palm-card"))
    return By, WebDriverWait


def _upload_and_screen(browser, files, wait, By):
    box = browser.find_element(By.CSS_SELECTOR, "#photos input[type=file]")
    box.send_keys("\n".join(str(f) for f in files))
    wait(browser, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#photos tr, #photos .file")) >= 1)
    time.sleep(1)  # the upload finishes before the click is handled
    browser.find_element(By.CSS_SELECTOR, "#screen-button").click()
    wait(browser, 180).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .palm-result")) == len(files))
    return browser.find_elements(By.CSS_SELECTOR, "#results .palm-result")


@needs_browser
def test_page_screens_uploaded_photos_with_overlay(app, browser, shared_palm, model):
    By, wait = _open_page(browser, app)
    card = browser.find_element(By.CSS_SELECTOR, "#palm-card")
    assert card.get_attribute("data-arch") == "squeezenet1_1"
    assert "Validation AUC" in card.text and "Trained" in card.text
    paths = _palm(shared_palm)[:2]
    blocks = _upload_and_screen(browser, paths, wait, By)
    code, body = _post(app.url + "/api/screen", _image_payload(paths))
    for block, expected in zip(blocks, body["results"]):
        assert block.get_attribute("data-name") == expected["name"] and block.get_attribute("data-ok") == "1"
        assert float(block.get_attribute("data-pm-probability")) == pytest.approx(expected["pm_probability"], abs=1e-6)
        assert f"{expected['pm_probability']:.4f}" in block.text
        assert expected["class_name"] in block.text
        overlay = block.find_element(By.CSS_SELECTOR, "img.palm-overlay")
        photo = block.find_element(By.CSS_SELECTOR, "img.palm-photo")
        # The overlay is really drawn: decoded by the browser, and its pixels are the API's overlay.
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay) == 224
        assert browser.execute_script("return arguments[0].naturalWidth", photo) == 224
        assert overlay.get_attribute("src") == "data:image/png;base64," + expected["overlay_png"]
    browser.save_screenshot(str(model["root"] / "page.png"))


@needs_browser
def test_page_shows_refusals_and_slider_figures(app, browser, shared_palm, tmp_path):
    By, wait = _open_page(browser, app)
    notes = tmp_path / "notes.txt"
    notes.write_text("a letter, not a photograph")
    big = tmp_path / "big.jpg"
    big.write_bytes((shared_palm / PALM_FILES[0]).read_bytes() + b"\0" * (1536 * 1024))
    blocks = _upload_and_screen(browser, [notes, big, shared_palm / PALM_FILES[3]], wait, By)
    texts = [b.text for b in blocks]
    assert [b.get_attribute("data-ok") for b in blocks] == ["0", "0", "1"]
    assert "notes.txt: not an image file; expected a JPEG, PNG or BMP image" in texts[0]
    assert "big.jpg: file too large" in texts[1]
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in page and 'File "' not in page

    number = browser.find_element(By.CSS_SELECTOR, "#threshold input[type=number]")
    number.clear()
    number.send_keys("0.3\n")
    wait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#palm-op").get_attribute("data-threshold") == "0.30")
    op = _get(app.url + "/api/operating-point?threshold=0.3")
    shown = browser.find_element(By.CSS_SELECTOR, "#palm-op")
    assert float(shown.get_attribute("data-sensitivity")) == pytest.approx(op["sensitivity"])
    assert float(shown.get_attribute("data-specificity")) == pytest.approx(op["specificity"])
    wait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .palm-slider-decision"))


@needs_browser
def test_page_says_why_the_model_was_not_loaded(refusal_app, browser):
    server, marker = refusal_app
    By, wait = _open_page(browser, server)
    text = browser.find_element(By.CSS_SELECTOR, "#palm-load-error").text
    assert text.startswith("The model was not loaded: ") and "refusing to load" in text
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text and not marker.exists()
