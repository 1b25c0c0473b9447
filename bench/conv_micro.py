"""Micro-benchmark: ResNet-50's convolutions as Paddle's conv2d against matmul-based equivalents.

For every distinct convolution shape of ResNet-50 (batch 10, 224x224 by default) this times
forward + backward (input and weight gradients) of

* ``conv2d``: ``paddle.nn.functional.conv2d`` (im2col + one MKL GEMM per image in dynamic mode);
* ``bmm``: 1x1 convolutions as one broadcast ``paddle.matmul(weight[out, in], x[N, in, H*W])``
  (stride 2: ``x[:, :, ::2, ::2]`` first); 3x3 convolutions as ``paddle.nn.functional.unfold``
  followed by the same broadcast matmul;
* ``nhwc``: 1x1 convolutions as one large ``[N*H*W, in] @ [in, out]`` matmul between transposes;
* ``conv_nhwc``: Paddle's ``conv2d`` with ``data_format="NHWC"`` on an input already stored NHWC.

Variants are interleaved round by round and the median is reported, with each shape's share
of the network's convolution time weighted by how often the shape occurs.  Run it after
``setup_runtime(fast=True)`` (the default here) so that MKL uses its AVX2 kernels.

Usage: ``python bench/conv_micro.py [--batch 10] [--size 224] [--rounds 5] [--no-fast]``.
"""

import argparse
import statistics
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-fast", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="math threads (default: every core); with 1 the process CPU time is also "
                             "reported, which a busy machine disturbs much less than the wall time")
    args = parser.parse_args(argv)

    from paddle_palm import runtime

    runtime.setup_runtime(device="cpu", fast=not args.no_fast, threads=args.threads)
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    def conv2d(x, w, k, s):
        return F.conv2d(x, w, stride=s, padding=(k - 1) // 2)

    def bmm(x, w, k, s):
        n, c, h, wd = x.shape
        o = w.shape[0]
        if k == 1:
            if s > 1:
                x = x[:, :, ::s, ::s]
                h, wd = x.shape[2], x.shape[3]
            y = paddle.matmul(w.reshape([o, c]), x.reshape([n, c, h * wd]))
            return y.reshape([n, o, h, wd])
        p = (k - 1) // 2
        cols = F.unfold(x, k, strides=s, paddings=p)
        ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        y = paddle.matmul(w.reshape([o, c * k * k]), cols)
        return y.reshape([n, o, ho, wo])

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

    variants = {"conv2d": conv2d, "bmm": bmm, "nhwc": nhwc, "conv_nhwc": conv_nhwc}
    clock = time.process_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    rows = []
    total = {name: 0.0 for name in variants}
    for count, cin, cout, k, s, side in resnet50_convs(args.size):
        x = paddle.to_tensor(rng.standard_normal((args.batch, cin, side, side)).astype("float32"), stop_gradient=False)
        w = paddle.to_tensor((rng.standard_normal((cout, cin, k, k)) * 0.05).astype("float32"), stop_gradient=False)
        x_nhwc = paddle.to_tensor(x.numpy().transpose(0, 2, 3, 1).copy(), stop_gradient=False)
        names = [name for name in variants if k == 1 or name != "nhwc"]
        if k == 7:
            names = ["conv2d", "bmm"]
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
                else:
                    out = (y.numpy(), gx, gw)
                    if ref is None:
                        ref = out
                    else:
                        for a, b in zip(out, ref):
                            err = np.abs(a - b).max() / (np.abs(b).max() + 1e-12)
                            assert err < 1e-4, (name, cin, cout, k, s, side, err)
        med = {name: statistics.median(v) for name, v in times.items()}
        for name in variants:
            total[name] += count * med.get(name, med["conv2d"])
        best = min(med, key=med.get)
        rows.append((count, cin, cout, k, s, side, med, best))
        cells = "  ".join(f"{n}={1000 * v:7.1f}ms" for n, v in med.items())
        print(f"{count:2d}x {cin:4d}->{cout:4d} k{k} s{s} @{side:3d}: {cells}  best={best}", flush=True)
    base = total["conv2d"]
    print("network conv fwd+bwd total (ms), other variants fall back to conv2d where not applicable:")
    for name, v in total.items():
        print(f"  {name:7s} {1000 * v:8.1f}  ({base / v:.2f}x)")
    best_total = sum(r[0] * min(r[6].values()) for r in rows)
    print(f"  best-of {1000 * best_total:8.1f}  ({base / best_total:.2f}x)")


if __name__ == "__main__":
    main()
