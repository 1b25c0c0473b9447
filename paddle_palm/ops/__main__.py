"""``python -m paddle_palm.ops``: build the oneDNN convolution operator now and say what happened.

This is the only place that downloads the oneDNN headers (training and evaluation never do).
Paddle and numpy are imported after the build, for the check: importing Paddle takes seconds.
"""

import argparse
import sys
import time
import warnings

from paddle_palm import ops


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m paddle_palm.ops",
        description="Build (or find in the cache) the oneDNN convolution operator that makes CPU training "
                    "fast, and check it against Paddle's convolution. Run it once after installing: it "
                    "downloads the oneDNN headers (training never does), pays the ~30 s compile up front "
                    "and retries what failed before.")
    parser.add_argument("--no-download", action="store_true",
                        help="do not fetch the oneDNN headers (onednn-devel) from PyPI when they are missing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = ops.build(download=not args.no_download, log=lambda line: print(line, flush=True), retry=True)
    except ops.OpsUnavailable as exc:
        print(f"oneDNN convolutions unavailable: {exc}; training will use Paddle's convolution", file=sys.stderr)
        return 1
    module = ops.load()
    if module is None:
        print(f"oneDNN convolutions unavailable: {ops.unavailable_reason()}", file=sys.stderr)
        return 1
    import numpy as np
    import paddle

    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((2, 8, 13, 13)).astype("float32"))
    w = paddle.to_tensor(rng.standard_normal((16, 8, 3, 3)).astype("float32"))
    got = ops.conv2d(x, w, stride=2, padding=1).numpy()
    want = paddle.nn.functional.conv2d(x, w, stride=2, padding=1).numpy()
    error = float(np.abs(got - want).max())
    version = ".".join(str(v) for v in module.version)
    print(f"oneDNN {version} convolution operator ready: {path} "
          f"({time.perf_counter() - start:.1f} s; max |difference| from paddle conv2d {error:.2e})")
    return 0 if error < 1e-4 else 1


if __name__ == "__main__":
    # Paddle's note on import that ccache (a C++ compiler cache) is missing: irrelevant to this one build.
    warnings.filterwarnings("ignore", message=".*ccache.*")
    sys.exit(main())
