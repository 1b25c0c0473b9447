"""Predictors: PM probabilities for preprocessed images, from a checkpoint or an exported model.

Two predictors give the same numbers through the same preprocessing
(:func:`paddle_palm.data.transforms.preprocess_image`):

* :class:`CheckpointPredictor` rebuilds the trained network from a
  ``.pdparams`` file and the run's ``config.yaml`` beside it
  (:mod:`paddle_palm.engine.model_settings`; SPEC 5) and runs it in dynamic mode;
* :class:`ExportedPredictor` loads what ``tools/export.py`` wrote
  (:mod:`paddle_palm.engine.export_record`) into a Paddle Inference predictor with
  oneDNN on CPU (issue 8: ResNet-50 at 224x224 in about 25 ms per image on two
  cores) and reads the recorded preprocessing from ``preprocess.json``;
* :class:`OnnxPredictor` runs the ``model.onnx`` written by ``tools/export.py --format onnx``
  through onnxruntime on CPU (:mod:`paddle_palm.engine.onnx_export`), with the same record.

:func:`paddle_palm.engine.predict.predict_images` runs either over files and folders.
Paddle is imported inside the methods that run the model (importing it takes
seconds; the tools install their signal handlers first).
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from paddle_palm import compat
from paddle_palm.data.images import read_image
from paddle_palm.data.transforms import preprocess_image
from paddle_palm.engine import onnx_export
from paddle_palm.engine.export_record import ONNX_FILE, check_export_folder, check_onnx_export
from paddle_palm.engine.model_settings import load_trained_model, resolve_model_settings
from paddle_palm.errors import ConfigError, DataError, short_message
from paddle_palm.metrics import check_threshold, pm_probability_from_logits
from paddle_palm.runtime import MAX_THREADS

__all__ = ["CheckpointPredictor", "ExportedPredictor", "OnnxPredictor", "load_predictor", "onnx_model_folder"]


class _Predictor:
    """Shared part of the two predictors: settings and the preprocessing of one file."""

    image_size = 224
    preprocess = "A"
    threshold = 0.5
    classes = None
    classes_zh = None
    description = ""
    tta = False  # test-time augmentation: average with the horizontally flipped image


    def load_image(self, path):
        """Read and preprocess one image file -> ``float32`` ``[3, S, S]`` (and the BGR image)."""
        image = read_image(path)
        return preprocess_image(image, self.image_size, self.preprocess), image

    def pm_probability(self, batch):
        """PM probability ``[N]`` (float64) of a preprocessed batch ``float32`` ``[N, C, S, S]``.

        With :attr:`tta`, the mean of the image's and its mirror image's probabilities (a fundus
        photograph of a left eye mirrored looks like a right eye: the label does not change).
        """
        probs = self._pm_probability(batch)
        if self.tta:
            probs = (probs + self._pm_probability(np.asarray(batch)[..., ::-1])) / 2.0
        return probs

    def _pm_probability(self, batch):
        raise NotImplementedError


class CheckpointPredictor(_Predictor):
    """Predict with a trained network in dynamic mode (the reference numbers).

    Args:
        weights: a ``.pdparams`` file (or prefix, or run folder).
        arch, num_classes, image_size, preprocess, threshold: override the
            values of the run's ``config.yaml`` (see :func:`resolve_model_settings`).
        tta: average each image's probability with its mirror image's.

    The logits are divided by the run's calibration temperature (1 unless training fitted one).
    """

    def __init__(self, weights, arch=None, num_classes=None, image_size=None, preprocess=None, threshold=None,
                 tta=False):
        self.settings = resolve_model_settings(weights, arch, num_classes, image_size, preprocess, threshold)
        self.tta = bool(tta)
        self.model = load_trained_model(self.settings)
        s = self.settings
        if s.num_classes > 2:
            raise ConfigError(
                f"{s.arch} with {s.num_classes} outputs is not a PM classifier (1 logit or 2 classes expected)"
            )
        self.image_size, self.preprocess, self.threshold = s.image_size, s.preprocess, s.threshold
        self.classes, self.classes_zh = s.classes, s.classes_zh
        self.description = f"{s.arch} checkpoint {s.weights}"

    def _pm_probability(self, batch):
        import paddle

        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))
        return pm_probability_from_logits(logits.numpy() / self.settings.temperature, self.settings.loss)


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _inference_config(model_file, params_file, device, threads, onednn, precision):
    """A ``paddle.inference.Config`` for the model files on ``device`` (CPU settings checked)."""
    from paddle import inference

    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be fp32 or bf16, got {precision!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads must be from 1 to {MAX_THREADS}, got {threads}")
    config = inference.Config(os.fspath(model_file), os.fspath(params_file))
    if str(device).split(":")[0] == "gpu":  # cuDNN kernels; the CPU settings below do not apply
        if precision != "fp32":
            raise ConfigError("--precision bf16 is a CPU (oneDNN) setting; on a GPU the model runs in fp32")
        config.enable_use_gpu(256, int(str(device).partition(":")[2] or 0))  # initial memory pool (MB), card
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if precision == "bf16" and not onednn:
            raise ConfigError("precision bf16 needs oneDNN")
        compat.set_inference_onednn(config, onednn, bfloat16=precision == "bf16")
    config.switch_ir_optim(True)
    config.disable_glog_info()
    return config


class ExportedPredictor(_Predictor):
    """Predict with an exported model through Paddle Inference (oneDNN on CPU).

    Args:
        model_dir: the folder written by ``tools/export.py`` (``inference.json`` or
            ``inference.pdmodel``, ``inference.pdiparams``, ``preprocess.json``).
        threads: CPU math threads (default: every core this process may use).
        onednn: use oneDNN kernels on CPU (the fast path; False for plain CPU kernels).
        precision: ``"fp32"`` (the same numbers as the checkpoint) or ``"bf16"``
            (oneDNN bfloat16 on CPUs that have it: faster, probabilities within about 1e-2).
        threshold: override the threshold recorded at export.
        tta: average each image's probability with its mirror image's.
        device: ``"cpu"`` (the default), or ``"gpu"`` / ``"gpu:N"`` for Paddle Inference on CUDA
            (:func:`paddle_palm.engine.device.select_device` resolves ``auto``); ``threads``,
            ``onednn`` and ``precision`` are CPU settings and do not apply there.
    """

    def __init__(self, model_dir, threads=None, onednn=True, precision="fp32", threshold=None, device="cpu",
                 tta=False):
        from paddle import inference

        self.tta = bool(tta)
        model_dir = Path(model_dir)
        # Schema, files inside the folder, digests of export time: checked before Paddle Inference parses them.
        self.record, files = check_export_folder(model_dir)
        threads = int(threads or _default_threads())
        config = _inference_config(files["model"], files["params"], device, threads, onednn, precision)
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as exc:  # Paddle raises several types for a damaged model file
            raise DataError(f"{model_dir} does not hold a loadable Paddle Inference model: {short_message(exc)}") from None
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output_name = self._predictor.get_output_names()[0]
        pre = self.record["preprocess"]
        self.image_size, self.preprocess = int(pre["image_size"]), pre["method"]
        self.threshold = check_threshold(self.record.get("threshold", 0.5) if threshold is None else threshold)
        self.classes = self.record.get("classes")
        self.classes_zh = self.record.get("classes_zh")
        self.threads, self.onednn, self.precision = threads, bool(onednn), precision
        self.device = str(device)
        on_gpu = self.device.split(":")[0] == "gpu"
        backend = (f"CUDA {self.device}" if on_gpu else
                   f"{'oneDNN ' + precision if onednn else 'plain CPU'}, {threads} threads")
        self.description = f"{self.record.get('arch', 'model')} exported to {model_dir} (Paddle Inference, {backend})"

    def _pm_probability(self, batch):
        # The export's output is already calibrated: its temperature is part of the model (export.py).
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self._predictor.run()
        out = self._predictor.get_output_handle(self._output_name).copy_to_cpu()
        return np.asarray(out, dtype=np.float64).reshape(batch.shape[0], -1)[:, 0]


def onnx_model_folder(path):
    """The export folder of ``path`` when it names an ONNX model (``DIR/model.onnx``), else None."""
    path = Path(path)
    return path.parent if path.suffix.lower() == ".onnx" else None


class OnnxPredictor(_Predictor):
    """Predict with the ``model.onnx`` of an exported model through onnxruntime (CPU).

    Args:
        model_dir: the folder written by ``tools/export.py --format onnx`` (or its ``model.onnx``).
        threads: onnxruntime's intra-op threads (default: every core this process may use).
        threshold: override the threshold recorded at export.
        tta: average each image's probability with its mirror image's.

    The model file's SHA-256 digest is checked against ``preprocess.json`` before
    onnxruntime reads it (the bytes checked are the bytes loaded).
    """

    def __init__(self, model_dir, threads=None, threshold=None, tta=False):
        model_dir = onnx_model_folder(model_dir) or Path(model_dir)
        onnx_export.require_onnx("ONNX prediction", modules=("onnxruntime",))
        self.tta = bool(tta)
        self.record, path = check_onnx_export(model_dir)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.record["files"]["sha256"][ONNX_FILE]:  # replaced since the check
            raise DataError(f"{path} changed while it was being read; try again")
        self.threads = int(threads or _default_threads())
        self._session = onnx_export.onnx_session(data, self.threads, path)
        pre = self.record["preprocess"]
        self.image_size, self.preprocess = int(pre["image_size"]), pre["method"]
        self.threshold = check_threshold(self.record.get("threshold", 0.5) if threshold is None else threshold)
        self.classes = self.record.get("classes")
        self.classes_zh = self.record.get("classes_zh")
        self.description = (f"{self.record.get('arch', 'model')} exported to {path} (onnxruntime "
                            f"{onnx_export.onnxruntime_version()}, CPU, {self.threads} threads)")

    def _pm_probability(self, batch):
        return onnx_export.run_onnx(self._session, batch)


def load_predictor(weights=None, arch=None, inference_model=None, backend="paddle", **kwargs):
    """A :class:`CheckpointPredictor` (``weights``), or for ``inference_model`` an :class:`ExportedPredictor`
    (``backend="paddle"``) or an :class:`OnnxPredictor` (``backend="onnx"``, or a path to a ``.onnx`` file).

    Keyword arguments go to the chosen class (``threshold``, ``image_size``, ``threads``, ...).
    """
    if (weights is None) == (inference_model is None):
        raise ConfigError("give either weights (with an architecture) or an exported model folder, not both")
    if inference_model is not None and (backend == "onnx" or onnx_model_folder(inference_model)):
        return OnnxPredictor(inference_model, **{k: v for k, v in kwargs.items() if k in ("threads", "threshold", "tta")})
    if inference_model is not None:
        allowed = {k: v for k, v in kwargs.items()
                   if k in ("threads", "onednn", "precision", "threshold", "device", "tta")}
        return ExportedPredictor(inference_model, **allowed)
    allowed = {k: v for k, v in kwargs.items() if k in ("num_classes", "image_size", "preprocess", "threshold", "tta")}
    return CheckpointPredictor(weights, arch=arch, **allowed)
