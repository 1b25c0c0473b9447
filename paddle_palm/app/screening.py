"""The screening service behind the app: one model, loaded once, many uploads.

:class:`Screener` loads a trained model when it is created and then answers
uploads: each photograph's PM probability, the decision at the model's
threshold (Chinese and English class names, :func:`paddle_palm.metrics.class_name`),
and a Grad-CAM overlay (:mod:`paddle_palm.viz.gradcam`) showing the regions that
raised the score of the decided class.

The model is either

* an exported model (``tools/export.py``): probabilities from Paddle Inference
  exactly as ``tools/predict.py --inference-model`` gives them, and Grad-CAM from
  the trained weights it was exported from (the ``weights`` its
  ``preprocess.json`` names, or ``weights=``), checked against the SHA-256 digest
  recorded at export; or
* a checkpoint (``--weights``): probabilities and Grad-CAM from the network
  rebuilt from its run's ``config.yaml``, as ``tools/predict.py --weights`` gives them.

Grad-CAM needs gradients, which an exported program does not offer; without
trained weights the app still screens and says that the overlay is missing.

Uploads are strangers' files.  Each is checked before anything decodes it: its
size (:attr:`UploadLimits.max_bytes`), its format from its first bytes (JPEG, PNG,
BMP), its pixel count from its header (:attr:`UploadLimits.max_pixels`), its
completeness (:func:`paddle_palm.data.images.read_image`).  A refused upload
gives a one-line message naming it; the other uploads of the same request are
still screened.  Weights are read by the project's restricted unpickler
(:mod:`paddle_palm.safe_load`, through the checkpoint loader), and an exported model's files must lie
inside its folder and load in a child process before this process loads them
(a damaged program can crash Paddle Inference).

Paddle's predictors and the dynamic-graph state are not safe to share between
threads: one lock serialises the model's work, each request keeps its own
images and results, so concurrent requests never see each other's results.

Paddle, OpenCV and the Grad-CAM module are imported inside the methods that use
them (importing Paddle takes seconds; ``tools/app.py`` installs its signal
handlers first).
"""

import base64
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from paddle_palm.app import records
from paddle_palm.data.images import inspect_image, read_image
from paddle_palm.data.transforms import base_method, preprocess_image
from paddle_palm.engine import export_record
from paddle_palm.engine.checkpoint import resolve_weights_path, sha256_file
from paddle_palm.engine.model_settings import load_trained_model, resolve_model_settings
from paddle_palm.engine.predictors import CheckpointPredictor, ExportedPredictor
from paddle_palm.errors import CheckpointError, ConfigError, DataError, ImageError, PalmError
from paddle_palm.metrics import CLASS_NAMES_EN, check_threshold, class_name

__all__ = ["Screener", "UploadLimits", "check_export_folder", "display_name"]

#: A PALM original is about 1 MB (2124 x 2056 JPEG); a phone photograph a few MB.
DEFAULT_MAX_UPLOAD_MB = 20
#: Fundus cameras give 2-12 megapixels; 50 keeps room without letting one upload take gigabytes.
DEFAULT_MAX_PIXELS = 50_000_000
#: Photographs per request (page or API).
DEFAULT_MAX_IMAGES = 16


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """What one request may send.

    Attributes:
        max_bytes: largest file, in bytes.
        max_pixels: largest image, width x height (checked from the header, before decoding).
        max_images: photographs per request.
    """

    max_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = DEFAULT_MAX_IMAGES

    def as_dict(self):
        return dataclasses.asdict(self)


def display_name(name, fallback="upload"):
    """A file name safe to show and log: its last path part, printable, at most 120 characters."""
    text = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    if len(text) > 120:
        text = text[:100] + "..." + text[-17:]
    return text or fallback



# ----------------------------------------------------------------------------- the exported model's folder


_PROBE = r"""
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
from paddle_palm.engine.predictors import ExportedPredictor
p = ExportedPredictor(sys.argv[1], threads=1)
x = np.zeros((1, 3, p.image_size, p.image_size), dtype=np.float32)
v = p.pm_probability(x)
assert v.shape == (1,) and 0.0 <= float(v[0]) <= 1.0, v
print("ok")
"""


def check_export_folder(model_dir, probe=True, timeout=600):
    """Check an exported model's folder before this process loads it; return its ``preprocess.json`` record.

    The record and the files it names are checked as every loader checks them
    (:func:`paddle_palm.engine.export_record.check_export_folder`: layout, plain
    file names inside the folder, digests recorded at export).  With ``probe``, a
    child process loads the model and runs it once: a damaged program that crashes
    Paddle Inference then ends the child, not the app.

    Raises:
        MissingFileError, DataError: the folder is not a usable export (named).
    """
    model_dir = Path(model_dir)
    record, _ = export_record.check_export_folder(model_dir)
    if probe:
        env = dict(os.environ, GLOG_minloglevel="3", PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[2])] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE, os.fspath(model_dir)], capture_output=True,
                                  text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise DataError(f"{model_dir}: loading the exported model took more than {timeout} s") from None
        if proc.returncode != 0 or "ok" not in proc.stdout.split():
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error") or "Error" in ln]
            why = (f"the loader was killed by signal {-proc.returncode}" if proc.returncode < 0
                   else (lines[-1].strip()[:300] if lines else f"exit code {proc.returncode}"))
            raise DataError(f"{model_dir} does not hold a loadable Paddle Inference model ({why})")
    return record


# ----------------------------------------------------------------------------- the service


class Screener:
    """A trained PM classifier answering uploaded photographs (see the module docstring).

    Args:
        weights: trained weights (``.pdparams`` file, prefix or run folder).  With
            ``inference_model`` they are used for Grad-CAM only (and must be the
            weights that were exported).
        inference_model: a folder written by ``tools/export.py``.
        arch: architecture of ``weights`` when no ``config.yaml`` lies beside them.
        threshold: PM threshold (default: the run's or the export's).
        run_dir: the training run whose records describe the model (default: the
            folder of the weights).
        valid_data: a dataset folder whose validation split is scored at start-up
            for the threshold slider (default: ``tools/eval.py``'s ``predictions.csv``
            beside the weights, when there is one).
        device: ``"cpu"`` (default) or ``"gpu"`` for the dynamic-graph network.
        threads: CPU threads of Paddle Inference (default: every core).
        limits: an :class:`UploadLimits`.
        gradcam: False to skip the overlays.
        probe: load an exported model in a child process first.

    Raises:
        PalmError subclasses: a missing, damaged or unsafe model, bad settings.
    """

    def __init__(self, weights=None, inference_model=None, arch=None, threshold=None, run_dir=None,
                 valid_data=None, device="cpu", threads=None, limits=None, gradcam=True, probe=True):
        if weights is None and inference_model is None:
            raise ConfigError("give an exported model (--inference-model DIR) or trained weights (--weights FILE)")
        self.limits = limits or UploadLimits()
        self._lock = threading.Lock()
        self._tmp = None
        self.gradcam_note = None
        self._set_device(device)

        if inference_model is not None:
            self._load_exported(inference_model, weights, threads, threshold, gradcam, probe)
        else:
            self._load_checkpoint(weights, arch, threshold, gradcam)
        if not gradcam:
            self.gradcam_note = "Grad-CAM is turned off (--no-gradcam)"

        self.gradcam = None
        if self.gradcam_model is not None:
            from paddle_palm.viz.gradcam import GradCAM

            self.gradcam = GradCAM(self.gradcam_model)

        self.threshold = float(self.predictor.threshold)
        self.classes = list(self.predictor.classes or CLASS_NAMES_EN)
        self.classes_zh = list(self.predictor.classes_zh or [])
        self._describe_model(run_dir, valid_data)
        # Private (0700): uploads are written here to be read, and the folder goes when the screener does.
        self._tmp = tempfile.mkdtemp(prefix="palm-app-")
        self._remove_tmp = weakref.finalize(self, shutil.rmtree, self._tmp, True)

    def _describe_model(self, run_dir, valid_data):
        """The model card and the validation scores behind the threshold slider."""
        if run_dir is None and self.weights_file:
            folder = os.path.dirname(os.path.abspath(self.weights_file))
            run_dir = folder if os.path.isdir(folder) else None
        self.card = records.read_model_card(
            run_dir, self.arch, self.source, self.threshold, self.predictor.image_size, self.predictor.preprocess,
            self.classes, self.classes_zh, weights_file=self.weights_file)
        if valid_data is not None:
            self.validation = records.score_validation_split(self.predictor, valid_data)
        else:
            self.validation = records.scores_from_eval_outputs(run_dir, self.weights_file) if run_dir else None
        if self.validation is None:
            self.card.missing.append(
                "per-image validation scores (the slider then shows only the run's recorded operating point): "
                "run tools/eval.py on the weights (it writes predictions.csv beside them) or start the app "
                "with --valid-data DIR")
        if self.gradcam_note:
            self.card.missing.append(self.gradcam_note)

    # ---- loading -----------------------------------------------------------------------------------

    def _load_exported(self, inference_model, weights, threads, threshold, gradcam, probe):
        """Probabilities from the exported model; Grad-CAM from the weights it was exported from."""
        record = check_export_folder(inference_model, probe=probe)
        self.predictor = ExportedPredictor(inference_model, threads=threads, threshold=threshold)
        self.arch = record.get("arch") or "model"
        gradcam_weights = self._weights_of_export(record, weights, inference_model) if gradcam else None
        self.source = f"exported model {os.fspath(inference_model)} (Paddle Inference, CPU)"
        self.weights_file = gradcam_weights or (record.get("weights") if isinstance(record.get("weights"), str) else None)
        if gradcam and gradcam_weights:
            self.gradcam_model = self._load_dynamic(gradcam_weights, arch=self.arch,
                                                    num_classes=record.get("num_classes"),
                                                    image_size=self.predictor.image_size,
                                                    preprocess=self.predictor.preprocess, fast=False)
        else:
            self.gradcam_model = None

    def _load_checkpoint(self, weights, arch, threshold, gradcam):
        """Probabilities and Grad-CAM from the network rebuilt from ``weights``."""
        path = resolve_weights_path(weights)
        self.predictor = CheckpointPredictor(path, arch=arch, threshold=threshold)
        self.arch = self.predictor.settings.arch
        self.source = f"checkpoint {path}"
        self.weights_file = self.predictor.settings.weights
        self.gradcam_model = self.predictor.model if gradcam else None

    @staticmethod
    def _set_device(device):
        import paddle

        device = str(device or "cpu").lower()
        if device not in ("cpu", "gpu"):
            raise ConfigError(f"device must be cpu or gpu, got {device!r}")
        if device == "gpu" and not paddle.device.is_compiled_with_cuda():
            raise ConfigError("--device gpu: this Paddle has no CUDA support (install paddlepaddle-gpu)")
        paddle.set_device(device)

    def _weights_of_export(self, record, weights, model_dir):
        """The trained weights an exported model came from, checked by digest; None (with a note) if unknown."""
        recorded_digest = record.get("weights_sha256")
        if weights is not None:
            path = resolve_weights_path(weights)
            if not os.path.isfile(path):
                raise CheckpointError(f"weights file not found: {path}")
            if recorded_digest and sha256_file(path) != recorded_digest:
                raise CheckpointError(f"{path} are not the weights exported to {model_dir} (their SHA-256 differs "
                                      "from the one in preprocess.json)")
            return path
        path = record.get("weights")
        if isinstance(path, str) and os.path.isfile(path) and recorded_digest and sha256_file(path) == recorded_digest:
            return path
        self.gradcam_note = ("no Grad-CAM overlay: the weights this model was exported from are not at hand "
                             "(start the app with --weights FILE beside --inference-model)")
        return None

    @staticmethod
    def _load_dynamic(weights, arch, num_classes, image_size, preprocess, fast):
        settings = resolve_model_settings(weights, arch=arch, num_classes=num_classes, image_size=image_size,
                                          preprocess=preprocess)
        return load_trained_model(settings, fast=fast)

    def close(self):
        """Remove the private folder of uploads."""
        if self._tmp is not None:
            self._remove_tmp()

    # ---- what the page and the API show about the model ---------------------------------------------

    def describe(self):
        """The model's identity, the validation figures and the upload limits, as a JSON-ready dict."""
        out = {"model": self.card.as_dict(), "limits": self.limits.as_dict(),
               "gradcam": self.gradcam is not None,
               "validation_scores": None}
        if self.validation is not None:
            out["validation_scores"] = {"source": self.validation.source, "n": int(self.validation.labels.size),
                                        "at_model_threshold": self.operating_point(self.threshold)}
        return out

    def operating_point(self, threshold):
        """Sensitivity/specificity on the validation split at ``threshold`` (what the slider shows).

        Returns:
            dict: with per-image scores, the figures at ``threshold`` (see
            :meth:`ValidationScores.operating_point`); without them, the run's one
            recorded point with ``"exact": False`` when ``threshold`` is not the run's.
        """
        t = check_threshold(threshold)
        if self.validation is not None:
            return dict(self.validation.operating_point(t), exact=True)
        c = self.card
        recorded = c.val_sensitivity is not None or c.val_specificity is not None
        return {"threshold": t, "sensitivity": c.val_sensitivity if abs(t - c.threshold) < 1e-9 else None,
                "specificity": c.val_specificity if abs(t - c.threshold) < 1e-9 else None,
                "recorded_threshold": c.threshold if recorded else None,
                "recorded_sensitivity": c.val_sensitivity, "recorded_specificity": c.val_specificity,
                "exact": False, "source": c.val_source, "n": c.val_images}

    # ---- screening ----------------------------------------------------------------------------------

    def class_names(self, label):
        """``(display, zh, en)`` names of class ``label``."""
        en = self.classes[label] if label < len(self.classes) else f"class {label}"
        zh = self.classes_zh[label] if label < len(self.classes_zh) else ""
        return class_name(label, self.classes, self.classes_zh), zh, en

    def _read_upload(self, name, data):
        limit = self.limits.max_bytes
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{name}: no file content")
        if len(data) == 0:
            raise ImageError(f"{name}: empty file (0 bytes); expected a JPEG, PNG or BMP photograph")
        if len(data) > limit:
            raise ImageError(f"{name}: file too large ({len(data) / 1048576:.1f} MB); at most "
                             f"{limit / 1048576:g} MB per photograph is accepted")
        fd, path = tempfile.mkstemp(dir=self._tmp, suffix=".upload")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                _, (width, height), _ = inspect_image(path)
                if width * height > self.limits.max_pixels:
                    raise ImageError(f"{path}: image too large ({width}x{height} = {width * height:,} pixels); "
                                     f"at most {self.limits.max_pixels:,} pixels are accepted")
                image = read_image(path)
            except PalmError as exc:
                # The messages name the private temporary file: name the upload instead.
                text = " ".join(str(exc).replace(path, name).split())
                raise ImageError(text) from None
        finally:
            try:
                os.remove(path)
            except OSError:
                pass
        return image

    def _overlay(self, image_bgr, cam, display_size):
        """The photograph and its Grad-CAM overlay, both scaled so the longer side is at most ``display_size``."""
        import cv2

        from paddle_palm.viz.gradcam import overlay_heatmap

        h, w = image_bgr.shape[:2]
        scale = min(1.0, float(display_size) / max(h, w))
        shown = image_bgr if scale >= 1.0 else cv2.resize(
            image_bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if cam is None:
            return shown, None
        if base_method(self.predictor.preprocess) == "B":
            # Preprocessing B fits the photograph into a black square (SPEC 1.4): keep the part of the
            # map that lies on the photograph, so that it lands on the right pixels.
            size = cam.shape[0]
            k = float(size) / max(w, h)
            nw, nh = max(1, int(w * k)), max(1, int(h * k))
            x0, y0 = (size - nw) // 2, (size - nh) // 2
            cam = cam[y0:y0 + nh, x0:x0 + nw]
        return shown, overlay_heatmap(shown, cam)

    def screen(self, name, data, overlay=True, display_size=448):
        """Screen one uploaded file.

        Args:
            name: the file's name (shown back; only its last part is kept).
            data: its bytes.
            overlay: compute the Grad-CAM overlay (when the model allows it).
            display_size: longest side of the returned pictures.

        Returns:
            dict: ``name``, ``ok`` True, ``pm_probability``, ``threshold``, ``label``,
            ``decision`` (``"PM"``/``"not PM"``), ``class_name`` (``"<Chinese> (<English>)"``),
            ``class_name_zh``, ``class_name_en``, ``confidence``, ``width``, ``height``,
            ``gradcam`` (the class it explains, or None), ``photo`` and ``overlay``
            (BGR ``uint8`` arrays or None), ``seconds``.

        Raises:
            ImageError: the upload is refused (the message names it).
        """
        name = display_name(name)
        started = time.perf_counter()
        image = self._read_upload(name, data)
        x = preprocess_image(image, self.predictor.image_size, self.predictor.preprocess)
        cam, explained = None, None
        with self._lock:
            p = float(self.predictor.pm_probability(x[None])[0])
            label = int(p >= self.threshold)
            if overlay and self.gradcam is not None:
                cam, explained, _ = self.gradcam.compute(x, class_index=label)
        display, zh, en = self.class_names(label)
        photo, blended = self._overlay(image, cam, display_size)
        return {
            "name": name, "ok": True, "pm_probability": p, "threshold": self.threshold, "label": label,
            "decision": "PM" if label == 1 else "not PM", "class_name": display, "class_name_zh": zh,
            "class_name_en": en, "confidence": p if label == 1 else 1.0 - p,
            "width": int(image.shape[1]), "height": int(image.shape[0]),
            "gradcam": None if explained is None else {
                "class_index": explained, "class_name": self.class_names(explained)[0],
                "layer": self.gradcam.layer_name},
            "photo": photo, "overlay": blended, "seconds": time.perf_counter() - started,
        }

    def screen_many(self, files, overlay=True, display_size=448):
        """Screen several uploads; a refused one gives ``{"name", "ok": False, "error"}`` and the others go on.

        Args:
            files: ``(name, bytes)`` pairs.

        Returns:
            list of dict (see :meth:`screen`).
        """
        files = list(files)
        if not files:
            raise DataError("no photograph given: upload one or more JPEG, PNG or BMP files")
        if len(files) > self.limits.max_images:
            raise DataError(f"{len(files)} photographs sent; at most {self.limits.max_images} per request")
        out = []
        for name, data in files:
            try:
                out.append(self.screen(name, data, overlay=overlay, display_size=display_size))
            except PalmError as exc:
                out.append({"name": display_name(name), "ok": False, "error": " ".join(str(exc).split())})
        return out


def png_base64(image_bgr):
    """A BGR ``uint8`` image as base64 PNG text (for JSON and data URLs)."""
    import cv2

    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise DataError("could not encode an image as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")
