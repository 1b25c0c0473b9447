"""Micro-benchmark: ResNet-50's convolutions as Paddle's conv2d against matmul-based equivalents.

For every distinct convolution shape of ResNet-50 (batch 10, 224x224 by default) this times
forward + backward (input and weight gradients) of

* ``conv2d``: ``paddle.nn.functional.conv2d`` (im2col + one MKL GEMM per image in dynamic mode);
* ``bmm``: 1x1 convolutions as one broadcast ``paddle.matmul(weight[out, in], x[N, in, H*W])``
  (stride 2: ``x[:, :, ::2, ::2]`` first); 3x3 and 7x7 convolutions as ``paddle.nn.functional.unfold``
  followed by the same broadcast matmul;
* ``nhwc``: 1x1 convolutions as one large ``[N*H*W, in] @ [in, out]`` matmul between transposes;
* ``conv_nhwc``: Paddle's ``conv2d`` with ``data_format="NHWC"`` on an input already stored NHWC;
* ``split2``: the batch split in two halves whose ``conv2d`` / ``conv2d_grad`` run in two Python
  threads with one MKL thread each (instead of one GEMM per image shared by two MKL threads).

Variants are interleaved round by round and the median is reported, with each shape's share
of the network's convolution time weighted by how often the shape occurs.  Run it after
``setup_runtime(fast=True)`` (the default here) so that MKL uses its AVX2 kernels.

With ``--step`` it times whole ResNet-50 training steps (Momentum, sigmoid loss) instead, one
process per configuration, interleaved: ``base`` (the fast runtime), ``malloc`` (plus glibc
``mallopt`` thresholds that keep large buffers in the heap instead of ``mmap``/``munmap`` at
every allocation) and ``bmm14`` / ``bmm28`` (plus the ``bmm`` form for 1x1 and 3x3 convolutions
whose input is at most 14 / 28 pixels wide).  It prints wall time and the process's user and
system CPU time per step (medians).

Usage: ``python bench/conv_micro.py [--batch 10] [--size 224] [--rounds 5] [--threads N] [--no-fast]``,
``python bench/conv_micro.py --step [--rounds 3] [--steps 3] [--modes base,malloc,bmm14+malloc]``.
"""

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def resnet50_convs(size):
    """(count, in, out, kernel, stride, input side) for every distinct conv of ResNet-50."""
    shapes = {}

    def add(cin, cout, k, s, side):
        key = (cin, cout, k, s, side)
        shapes[key] = shapes.get(key, 0) + 1

    side = size // 2
    add(3, 64, 7, 2, size)
    side = side // 2  # max pool
    cin = 64
    for filters, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            add(cin, filters, 1, 1, side)
            add(filters, filters, 3, s, side)
            out_side = side // s
            add(filters, filters * 4, 1, 1, out_side)
            if b == 0:
                add(cin, filters * 4, 1, s, side)
            cin, side = filters * 4, out_side
    return [(n,) + key for key, n in shapes.items()]


def bmm_conv(x, w, k, s, p):
    """``conv2d(x, w, stride=s, padding=p)`` (square, no bias) as ``unfold`` / slicing + one broadcast matmul."""
    import paddle
    import paddle.nn.functional as F

    n, c, h, wd = x.shape
    o = w.shape[0]
    if k == 1 and p == 0:
        if s > 1:
            x = x[:, :, ::s, ::s]
            h, wd = x.shape[2], x.shape[3]
        return paddle.matmul(w.reshape([o, c]), x.reshape([n, c, h * wd])).reshape([n, o, h, wd])
    cols = F.unfold(x, k, strides=s, paddings=p)
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    return paddle.matmul(w.reshape([o, c * k * k]), cols).reshape([n, o, ho, wo])


def keep_big_buffers_in_heap():
    """glibc: serve large blocks from the heap and keep freed memory (no mmap/munmap per tensor)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def step_worker(mode, steps, batch, size):
    """Time ``steps`` ResNet-50 training steps in this process; print one ``RESULT`` line."""
    import types

    from paddle_palm import runtime

    runtime.setup_runtime(device="cpu", fast=True)
    if "malloc" in mode:
        assert keep_big_buffers_in_heap()
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from paddle_palm.models import build_model

    paddle.seed(0)
    model = build_model("resnet50")
    model.train()
    limit = 14 if "bmm14" in mode else 28 if "bmm28" in mode else 0

    def forward(layer, x):
        if x.shape[2] > limit:
            return layer.plain_forward(x)
        return bmm_conv(x, layer.weight, layer._kernel_size[0], layer._stride[0], (layer._kernel_size[0] - 1) // 2)

    if limit:
        for layer in model.sublayers():
            if isinstance(layer, paddle.nn.Conv2D) and layer._kernel_size[0] in (1, 3):
                layer.plain_forward = layer.forward
                layer.forward = types.MethodType(forward, layer)
    opt = paddle.optimizer.Momentum(0.005, momentum=0.9, parameters=model.parameters())
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype("float32"))
    y = paddle.to_tensor(rng.integers(0, 2, (batch, 1)).astype("float32"))
    walls, users, systems = [], [], []
    for k in range(steps + 1):
        t0, c0 = time.perf_counter(), os.times()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)
        c1 = os.times()
        if k:  # the first step warms up
            walls.append(time.perf_counter() - t0)
            users.append(c1.user - c0.user)
            systems.append(c1.system - c0.system)
    wall = statistics.median(walls)
    print(f"RESULT {mode:14s} wall {wall:.3f} s/step ({batch / wall:.2f} img/s)  user {statistics.median(users):.2f} s"
          f"  sys {statistics.median(systems):.2f} s", flush=True)


def step_main(args):
    """Run the ``--step`` configurations in interleaved processes."""
    for r in range(args.rounds):
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--step-worker", mode, "--steps", str(args.steps),
                   "--batch", str(args.batch), "--size", str(args.size)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
            print(f"round {r + 1}: " + (lines[0] if lines else f"{mode} failed: {out.stderr[-500:]}"), flush=True)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-fast", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="math threads (default: every core); with 1 the process CPU time is also "
                             "reported, which a busy machine disturbs much less than the wall time")
    parser.add_argument("--step", action="store_true", help="time whole training steps instead")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process (--step)")
    parser.add_argument("--modes", default="base,malloc,bmm14+malloc,bmm28+malloc", help="--step configurations")
    parser.add_argument("--step-worker", default=None, help=argparse.SUPPRESS)
    return parser


def split2_conv():
    """The ``split2`` variant: the two halves of the batch in two threads, one MKL thread each."""
    from concurrent.futures import ThreadPoolExecutor

    import paddle
    from paddle import _C_ops
    from paddle.autograd import PyLayer

    # one MKL thread per worker: the two halves of the batch run side by side (Paddle releases the GIL)
    mkl = ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), "libs", "libmklml_intel.so"))
    pool = ThreadPoolExecutor(2, initializer=lambda: mkl.MKL_Set_Num_Threads_Local(1))

    class SplitConv(PyLayer):
        @staticmethod
        def forward(ctx, x, w, k, s):
            p = (k - 1) // 2
            ctx.save_for_backward(x, w)
            ctx.args = ([s, s], [p, p])
            halves = paddle.split(x, 2)
            outs = list(pool.map(lambda h: _C_ops.conv2d(h, w, [s, s], [p, p], "EXPLICIT", [1, 1], 1, "NCHW"),
                                 halves))
            return paddle.concat(outs)

        @staticmethod
        def backward(ctx, dy):
            x, w = ctx.saved_tensor()
            strides, pads = ctx.args
            pairs = list(zip(paddle.split(x, 2), paddle.split(dy, 2)))
            grads = list(pool.map(lambda a: _C_ops.conv2d_grad(a[0], w, a[1], strides, pads, "EXPLICIT", [1, 1], 1,
                                                               "NCHW"), pairs))
            return paddle.concat([g[0] for g in grads]), grads[0][1] + grads[1][1]

    def split2(x, w, k, s):
        return SplitConv.apply(x, w, k, s)

    return split2


def conv_variants():
    """name -> ``f(x, w, kernel, stride)``: the convolution forms compared (module docstring)."""
    import paddle
    import paddle.nn.functional as F

    def conv2d(x, w, k, s):
        return F.conv2d(x, w, stride=s, padding=(k - 1) // 2)

    def bmm(x, w, k, s):
        return bmm_conv(x, w, k, s, (k - 1) // 2)

    def nhwc(x, w, k, s):
        n, c, h, wd = x.shape
        o = w.shape[0]
        if s > 1:
            x = x[:, :, ::s, ::s]
            h, wd = x.shape[2], x.shape[3]
        rows = x.transpose([0, 2, 3, 1]).reshape([n * h * wd, c])
        y = paddle.matmul(rows, w.reshape([o, c]), transpose_y=True)
        return y.reshape([n, h, wd, o]).transpose([0, 3, 1, 2])

    def conv_nhwc(x, w, k, s):
        # Paddle's own NHWC conv2d; the input is laid out NHWC outside the timed region's math
        return F.conv2d(x, w, stride=s, padding=(k - 1) // 2, data_format="NHWC")

    return {"conv2d": conv2d, "bmm": bmm, "nhwc": nhwc, "conv_nhwc": conv_nhwc, "split2": split2_conv()}


def time_shape(variants, shape, args, rng, clock):
    """Median forward + backward seconds of each applicable variant on one convolution shape.

    The first round checks every variant's output and gradients against the first variant's.
    """
    import numpy as np
    import paddle

    _, cin, cout, k, s, side = shape
    x = paddle.to_tensor(rng.standard_normal((args.batch, cin, side, side)).astype("float32"), stop_gradient=False)
    w = paddle.to_tensor((rng.standard_normal((cout, cin, k, k)) * 0.05).astype("float32"), stop_gradient=False)
    x_nhwc = paddle.to_tensor(x.numpy().transpose(0, 2, 3, 1).copy(), stop_gradient=False)
    names = [name for name in variants if k == 1 or name != "nhwc"]
    if k == 7:
        names = ["conv2d", "bmm", "split2"]
    ref = None
    times = {name: [] for name in names}
    for r in range(args.rounds + 1):
        for name in names:
            xin = x_nhwc if name == "conv_nhwc" else x
            xin.clear_gradient(), w.clear_gradient()
            t0 = clock()
            y = variants[name](xin, w, k, s)
            paddle.autograd.backward([y], [paddle.ones_like(y)])
            gx, gw = xin.grad.numpy(), w.grad.numpy()
            dt = clock() - t0
            if name == "conv_nhwc":
                y, gx = y.transpose([0, 3, 1, 2]), gx.transpose(0, 3, 1, 2)
            if r:
                times[name].append(dt)
                continue
            out = (y.numpy(), gx, gw)
            if ref is None:
                ref = out
                continue
            for a, b in zip(out, ref):
                err = np.abs(a - b).max() / (np.abs(b).max() + 1e-12)
                assert err < 1e-4, (name, cin, cout, k, s, side, err)
    return {name: statistics.median(v) for name, v in times.items()}


def print_totals(rows, total):
    """The network's convolution time per variant, and with the best variant of every shape."""
    base = total["conv2d"]
    print("network conv fwd+bwd total (ms), other variants fall back to conv2d where not applicable:")
    for name, v in total.items():
        print(f"  {name:7s} {1000 * v:8.1f}  ({base / v:.2f}x)")
    best_total = sum(r[0] * min(r[6].values()) for r in rows)
    print(f"  best-of {1000 * best_total:8.1f}  ({base / best_total:.2f}x)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.step_worker:
        return step_worker(args.step_worker, args.steps, args.batch, args.size)
    if args.step:
        return step_main(args)

    from paddle_palm import runtime

    runtime.setup_runtime(device="cpu", fast=not args.no_fast, threads=args.threads)
    import numpy as np

    variants = conv_variants()
    clock = time.process_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    rows = []
    total = {name: 0.0 for name in variants}
    for shape in resnet50_convs(args.size):
        count, cin, cout, k, s, side = shape
        med = time_shape(variants, shape, args, rng, clock)
        for name in variants:
            total[name] += count * med.get(name, med["conv2d"])
        best = min(med, key=med.get)
        rows.append((count, cin, cout, k, s, side, med, best))
        cells = "  ".join(f"{n}={1000 * v:7.1f}ms" for n, v in med.items())
        print(f"{count:2d}x {cin:4d}->{cout:4d} k{k} s{s} @{side:3d}: {cells}  best={best}", flush=True)
    print_totals(rows, total)


if __name__ == "__main__":
    main()
