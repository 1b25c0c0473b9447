"""ONNX: the exported Paddle model converted by paddle2onnx, and run by onnxruntime.

``tools/export.py --format onnx`` (or ``both``) converts the program ``paddle.jit.save``
wrote (:mod:`paddle_palm.engine.export`) into ``model.onnx`` beside it: the same graph,
probability layer included, with the input named ``image`` (float32 ``[N, C, S, S]``)
and the output ``pm_probability`` (``[N, 1]``).  ``tools/predict.py --backend onnx`` runs
it through onnxruntime on CPU (:class:`paddle_palm.engine.predictors.OnnxPredictor`).

Both need the optional extra ``onnx`` (paddle2onnx, onnx, onnxruntime); without it
:func:`require_onnx` says in one line what to install.  This module imports them (and
paddle2onnx imports Paddle, which takes seconds) inside its functions only.
"""

import contextlib
import importlib.util
import os
import tempfile

import numpy as np

from paddle_palm import compat
from paddle_palm.engine.export_record import INPUT_NAME, OUTPUT_NAME
from paddle_palm.errors import ConfigError, DataError, UnsupportedVersionError, short_message

#: The ONNX operator set written (onnxruntime 1.x and every current ONNX runtime read it).
OPSET = 13
#: What to install for ONNX export and prediction.
INSTALL_HINT = 'pip install "paddle_palm[onnx]"'

__all__ = ["INSTALL_HINT", "OPSET", "convert_to_onnx", "onnx_session", "require_onnx", "run_onnx"]


def require_onnx(what="ONNX export", modules=("paddle2onnx", "onnx", "onnxruntime")):
    """Check that the optional ONNX packages are installed (without importing them).

    Raises:
        ConfigError: one line naming the missing packages and the command that installs them.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{what} needs {', '.join(missing)}, which {verb} not installed: {INSTALL_HINT}")
    if "paddle2onnx" in modules:
        from importlib import metadata

        try:
            converter = metadata.version("paddle2onnx")
        except metadata.PackageNotFoundError:
            converter = None
        problem = compat.paddle2onnx_problem(compat.installed_paddle_version(), converter)
        if problem:
            raise ConfigError(f"{what}: {problem}")


@contextlib.contextmanager
def _captured_output():
    """Send what C++ and Python print to file descriptors 1 and 2 into a temporary file (yielded)."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(fd) for fd in (1, 2)]
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield sink
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _last_line(sink):
    sink.seek(0)
    lines = [line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no message"])[-1][:300]


def _rename_tensor(graph, old, new):
    """Rename a tensor of an ONNX graph everywhere it appears (graph inputs/outputs, nodes, value infos)."""
    if old == new:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def convert_to_onnx(model_file, params_file, target, output_name=OUTPUT_NAME):
    """Convert a saved Paddle program into ``target`` (``model.onnx``), input ``image``, output ``output_name``
    (``pm_probability``; ``class_probabilities`` for a network of more than two classes).

    paddle2onnx's own messages are kept out of the terminal; when it fails, its last
    error line is in the exception.

    Returns:
        dict: ``opset``, ``converter`` (paddle2onnx's version), ``input``, ``output``.

    Raises:
        UnsupportedVersionError: paddle2onnx could not convert the program (its reason).
    """
    require_onnx()
    import onnx
    import paddle2onnx

    target = os.fspath(target)
    raw = target + ".paddle2onnx"
    # Polygraphy folds the constants paddle2onnx leaves (about half the nodes of a SqueezeNet); paddle2onnx
    # lets it install missing packages on the fly (POLYGRAPHY_AUTOINSTALL_DEPS), which an export must not do:
    # it is used only when its dependencies are all present, and the setting is restored afterwards.
    fold = all(importlib.util.find_spec(name) for name in ("polygraphy", "onnx_graphsurgeon", "onnxruntime"))
    saved_env = os.environ.get("POLYGRAPHY_AUTOINSTALL_DEPS")
    with _captured_output() as sink:
        try:
            compat.paddle2onnx_export(paddle2onnx, os.fspath(model_file), os.fspath(params_file), raw, OPSET, fold)
        except Exception:  # noqa: BLE001  paddle2onnx raises several types; its reason is in its output
            pass
        finally:
            if saved_env is None:
                os.environ.pop("POLYGRAPHY_AUTOINSTALL_DEPS", None)
            else:
                os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = saved_env
    if not os.path.isfile(raw):
        raise UnsupportedVersionError(f"paddle2onnx {paddle2onnx.__version__} could not convert {model_file}: "
                                      f"{_last_line(sink)}")
    model = onnx.load(raw)
    os.unlink(raw)
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise UnsupportedVersionError(f"paddle2onnx wrote {len(graph.input)} inputs and {len(graph.output)} outputs "
                                      "(expected one of each)")
    _rename_tensor(graph, graph.input[0].name, INPUT_NAME)
    _rename_tensor(graph, graph.output[0].name, output_name)
    onnx.checker.check_model(model)
    onnx.save(model, target)
    return {"opset": OPSET, "converter": f"paddle2onnx {paddle2onnx.__version__}", "input": INPUT_NAME,
            "output": output_name}


def onnx_session(model_bytes, threads, source):
    """An onnxruntime CPU session for an ONNX model given as bytes (already checked against its digest).

    Raises:
        DataError: onnxruntime cannot read the model (named by ``source``).
    """
    require_onnx("ONNX prediction", modules=("onnxruntime",))
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  onnxruntime raises its own types for a bad model
        raise DataError(f"{source} is not a model onnxruntime can run: {short_message(exc)}") from None


def run_onnx(session, batch):
    """The first output of ``session`` for a float32 batch, as ``float64`` ``[N]`` (column 0)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    name = session.get_inputs()[0].name
    out = session.run(None, {name: batch})[0]
    return np.asarray(out, dtype=np.float64).reshape(batch.shape[0], -1)[:, 0]


def onnxruntime_version():
    """onnxruntime's version string (for records and descriptions)."""
    import onnxruntime

    return onnxruntime.__version__
