"""Execution paths measured by ``bench/run.py``, one runner class per path.

A runner times one iteration of a *metric* on one architecture:

* ``train``: forward, loss, backward and the optimizer update of one batch;
* ``eval``: a forward pass of one batch in inference mode;
* ``latency``: a forward pass of one image (batch 1);
* ``gflops``: one 2048^3 single-precision matrix product (the math library alone).

Each runner builds its network once (:meth:`Runner.prepare` compiles and warms up
a metric), then :meth:`Runner.run` returns the wall time of one iteration in
seconds.  The runners live in worker processes (:mod:`bench.worker`) because
some settings (MKL's code path, Paddle's static mode) are per process.

The path the trainer takes by default (``tools/train.py``'s ``--fast``) is
:class:`PaddleDygraph` with ``onednn_conv=True`` in a process set up by
:func:`paddle_palm.runtime.setup_runtime`: the network's ``Conv2D`` layers run the
oneDNN operator of :mod:`paddle_palm.ops`.

The training recipes follow the seeds: ResNet-50 one logit, sigmoid
cross-entropy and Momentum 0.9 (SPEC 2.4); SqueezeNet 1.1 two classes, softmax
cross-entropy and Adam 1e-4 (SPEC 2.5, the Paddle version).
"""

import os
import tempfile
import time

import numpy as np

#: Architecture -> (outputs, loss, optimizer, learning rate).
RECIPES = {
    "resnet50": (1, "bce", "momentum", 0.005),
    "squeezenet1_1": (2, "ce", "adam", 1e-4),
}

MATMUL_N = 2048


def recipe(arch):
    """``(num_classes, loss, optimizer, lr)`` for a benchmarked architecture."""
    if arch not in RECIPES:
        raise ValueError(f"no benchmark recipe for {arch!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[arch]


def make_batch(batch_size, image_size, num_classes, seed=0):
    """A fixed random batch: images uniform in [-1, 1] (preprocessing A's range) and labels."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1.0, 1.0, size=(batch_size, 3, image_size, image_size)).astype("float32")
    labels = rng.integers(0, 2, size=(batch_size,)).astype("int64")
    return images, labels


class Runner:
    """Base class: a path that can time some metrics on one architecture."""

    metrics = ()

    def __init__(self, arch, batch_size, image_size):
        self.arch = arch
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_classes, self.loss_name, self.optimizer_name, self.lr = recipe(arch)
        self.images, self.labels = make_batch(batch_size, image_size, self.num_classes)
        self._prepared = set()

    def prepare(self, metric, warmup=1):
        """Build what ``metric`` needs and run it ``warmup`` times (first-call compilation)."""
        if metric in self._prepared:
            return
        for _ in range(warmup):
            self.run(metric)
        self._prepared.add(metric)

    def run(self, metric):
        """Wall time in seconds of one iteration of ``metric``."""
        start = time.perf_counter()
        getattr(self, "_" + metric)()
        return time.perf_counter() - start


# --------------------------------------------------------------------------- Paddle


def paddle_model(arch, num_classes):
    """paddle_palm's network when the package provides it, else ``paddle.vision``'s of the same structure."""
    try:
        from paddle_palm.models import build_model

        return build_model(arch, num_classes=num_classes)
    except (ImportError, ValueError):
        import paddle

        factory = getattr(paddle.vision.models, arch)
        return factory(num_classes=num_classes)


def paddle_loss(logits, labels, loss_name):
    """The recipe's loss on Paddle tensors."""
    import paddle.nn.functional as F

    if loss_name == "bce":
        return F.binary_cross_entropy_with_logits(logits.reshape([-1, 1]), labels.astype("float32").reshape([-1, 1]))
    return F.cross_entropy(logits, labels)


def paddle_optimizer(name, lr, parameters):
    """The recipe's optimizer."""
    import paddle

    if name == "adam":
        return paddle.optimizer.Adam(lr, parameters=parameters)
    return paddle.optimizer.Momentum(lr, momentum=0.9, parameters=parameters)


class PaddleDygraph(Runner):
    """Paddle dynamic graph.

    With ``to_static=True`` the network is compiled by ``paddle.jit.to_static``.  With
    ``onednn_conv=True`` its ``Conv2D`` layers are switched to the oneDNN operator of
    :mod:`paddle_palm.ops` by :func:`paddle_palm.runtime.accelerate_model` (with the
    channels-last stages of the networks that have them), as the trainer does on its fast
    path; ``threads`` is then oneDNN's thread count (None: every usable core).

    Raises:
        RuntimeError: ``onednn_conv`` was asked for but the operator is unavailable here
            (the message says why), so the path is reported as failed rather than timing
            Paddle's own convolution under its name.
    """

    metrics = ("train", "eval", "latency")

    def __init__(self, arch, batch_size, image_size, to_static=False, onednn_conv=False, threads=None):
        super().__init__(arch, batch_size, image_size)
        import paddle

        paddle.seed(0)
        self.model = paddle_model(arch, self.num_classes)
        self.optimizer = paddle_optimizer(self.optimizer_name, self.lr, self.model.parameters())
        if onednn_conv:
            from paddle_palm import ops, runtime

            if runtime.accelerate_model(self.model, threads=threads, channels_last=True) != "onednn":
                reason = ops.unavailable_reason() or "no Conv2D layer could be switched"
                raise RuntimeError(f"oneDNN convolutions unavailable: {reason}")
        if to_static:
            self.model = paddle.jit.to_static(self.model, full_graph=True)
        self.x = paddle.to_tensor(self.images)
        self.y = paddle.to_tensor(self.labels)
        self.x1 = paddle.to_tensor(self.images[:1])

    def _train(self):
        self.model.train()
        loss = paddle_loss(self.model(self.x), self.y, self.loss_name)
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        float(loss)

    def _forward(self, x):
        import paddle

        self.model.eval()
        with paddle.no_grad():
            self.model(x).numpy()

    def _eval(self):
        self._forward(self.x)

    def _latency(self):
        self._forward(self.x1)


class PaddleMatmul(Runner):
    """A 2048^3 ``paddle.matmul`` (the math library's speed in this process)."""

    metrics = ("gflops",)

    def __init__(self, arch, batch_size, image_size):
        super().__init__(arch, batch_size, image_size)
        import paddle

        rng = np.random.default_rng(0)
        self.a = paddle.to_tensor(rng.standard_normal((MATMUL_N, MATMUL_N)).astype("float32"))
        self.b = paddle.to_tensor(rng.standard_normal((MATMUL_N, MATMUL_N)).astype("float32"))

    def _gflops(self):
        import paddle

        paddle.matmul(self.a, self.b).numpy()


class PaddleConvLayout(Runner):
    """One 3x3 convolution (256 -> 256 channels at 28x28, forward + backward) in NCHW or NHWC."""

    metrics = ("train",)

    def __init__(self, arch, batch_size, image_size, data_format="NCHW"):
        super().__init__(arch, batch_size, image_size)
        import paddle

        paddle.seed(0)
        shape = [batch_size, 256, 28, 28] if data_format == "NCHW" else [batch_size, 28, 28, 256]
        self.conv = paddle.nn.Conv2D(256, 256, 3, padding=1, bias_attr=False, data_format=data_format)
        self.x = paddle.randn(shape)
        self.x.stop_gradient = False

    def _train(self):
        out = self.conv(self.x)
        out.sum().backward()
        self.conv.weight.clear_gradient()
        float(self.x.grad.sum())
        self.x.clear_gradient()


class PaddleInference(Runner):
    """Paddle Inference on an exported network (``paddle.jit.save``), with or without oneDNN, fp32 or bf16."""

    metrics = ("eval", "latency")

    def __init__(self, arch, batch_size, image_size, onednn=False, bf16=False, threads=None):
        super().__init__(arch, batch_size, image_size)
        import paddle
        from paddle import inference

        paddle.seed(0)
        model = paddle_model(arch, self.num_classes)
        model.eval()
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-infer-")
        prefix = os.path.join(self._tmp.name, "model")
        spec = [paddle.static.InputSpec([None, 3, image_size, image_size], "float32", "image")]
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
        graph = prefix + ".json" if os.path.exists(prefix + ".json") else prefix + ".pdmodel"
        config = inference.Config(graph, prefix + ".pdiparams")
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads or 1)
        if onednn:
            config.enable_onednn()
            if bf16:
                config.enable_onednn_bfloat16()
        else:
            config.disable_onednn()
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def _forward(self, images):
        self.input.reshape(list(images.shape))
        self.input.copy_from_cpu(images)
        self.predictor.run()
        self.output.copy_to_cpu()

    def _eval(self):
        self._forward(self.images)

    def _latency(self):
        self._forward(self.images[:1])


class PaddleStaticGraph(Runner):
    """Paddle static graph (``paddle.static`` programs run by an ``Executor``); needs static mode."""

    metrics = ("train", "eval", "latency")

    def __init__(self, arch, batch_size, image_size):
        super().__init__(arch, batch_size, image_size)
        import paddle

        paddle.enable_static()
        self.exe = paddle.static.Executor(paddle.CPUPlace())
        self.programs = {}
        for metric, n in (("train", batch_size), ("eval", batch_size), ("latency", 1)):
            main, startup = paddle.static.Program(), paddle.static.Program()
            with paddle.static.program_guard(main, startup):
                x = paddle.static.data("x", [n, 3, image_size, image_size], "float32")
                y = paddle.static.data("y", [n], "int64")
                paddle.seed(0)
                model = paddle_model(arch, self.num_classes)
                if metric == "train":
                    model.train()
                    out = paddle_loss(model(x), y, self.loss_name)
                    paddle_optimizer(self.optimizer_name, self.lr, None).minimize(out)
                else:
                    model.eval()
                    out = model(x)
            self.exe.run(startup)
            self.programs[metric] = (main, out)

    def _run_program(self, metric, n):
        main, out = self.programs[metric]
        self.exe.run(main, feed={"x": self.images[:n], "y": self.labels[:n]}, fetch_list=[out])

    def _train(self):
        self._run_program("train", self.batch_size)

    def _eval(self):
        self._run_program("eval", self.batch_size)

    def _latency(self):
        self._run_program("latency", 1)


# --------------------------------------------------------------------------- PyTorch


class Torch(Runner):
    """The PyTorch CPU reference (:mod:`bench.torch_reference`), same recipe."""

    metrics = ("train", "eval", "latency")

    def __init__(self, arch, batch_size, image_size):
        super().__init__(arch, batch_size, image_size)
        import torch

        from bench.torch_reference import build

        torch.manual_seed(0)
        self.torch = torch
        self.model = build(arch)
        if self.optimizer_name == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), self.lr)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), self.lr, momentum=0.9)
        self.x = torch.from_numpy(self.images)
        self.y = torch.from_numpy(self.labels)
        self.x1 = self.x[:1].clone()

    def _train(self):
        torch = self.torch
        self.model.train()
        logits = self.model(self.x)
        if self.loss_name == "bce":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.reshape(-1, 1),
                                                                        self.y.float().reshape(-1, 1))
        else:
            loss = torch.nn.functional.cross_entropy(logits, self.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        loss.item()

    def _forward(self, x):
        self.model.eval()
        with self.torch.inference_mode():
            self.model(x)

    def _eval(self):
        self._forward(self.x)

    def _latency(self):
        self._forward(self.x1)


class TorchMatmul(Runner):
    """A 2048^3 ``torch.matmul``."""

    metrics = ("gflops",)

    def __init__(self, arch, batch_size, image_size):
        super().__init__(arch, batch_size, image_size)
        import torch

        generator = torch.Generator().manual_seed(0)
        self.torch = torch
        self.a = torch.randn(MATMUL_N, MATMUL_N, generator=generator)
        self.b = torch.randn(MATMUL_N, MATMUL_N, generator=generator)

    def _gflops(self):
        self.torch.matmul(self.a, self.b)


class NumpyMatmul(Runner):
    """A 2048^3 ``numpy.matmul`` (numpy's bundled BLAS)."""

    metrics = ("gflops",)

    def __init__(self, arch, batch_size, image_size):
        super().__init__(arch, batch_size, image_size)
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((MATMUL_N, MATMUL_N)).astype("float32")
        self.b = rng.standard_normal((MATMUL_N, MATMUL_N)).astype("float32")

    def _gflops(self):
        np.matmul(self.a, self.b)
