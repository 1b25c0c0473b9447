"""A benchmark worker process: holds the runners of one process-wide setting and times them on request.

Settings that cannot be switched inside one process (MKL's code path is chosen
at its first call; Paddle's static mode is global) each get their own worker.  The
oneDNN convolution operator gets one too, so that its OpenMP threads and primitive
cache never touch the timings of the paths that use Paddle's own convolution:

========================  ================================================================
kind                      setting
========================  ================================================================
``paddle-default``        Paddle exactly as installed (what a plain script gets)
``paddle-fast``           :func:`paddle_palm.runtime.setup_runtime` ``(fast=True)``
``paddle-fast-conv``      the fast runtime; its runners switch their ``Conv2D`` layers to
                          :mod:`paddle_palm.ops` (oneDNN), as ``tools/train.py`` does
``paddle-onednn-flag``    the fast runtime plus ``FLAGS_use_onednn=1`` (dynamic mode)
``paddle-static``         the fast runtime plus ``paddle.enable_static()``
``paddle-static-onednn``  the static worker plus ``FLAGS_use_onednn=1``
``torch``                 PyTorch with one thread per usable core
``data``                  the data-pipeline measurements (:mod:`bench.data_pipeline`)
========================  ================================================================

The protocol is one JSON object per line: requests on standard input, replies on
standard output prefixed with :data:`REPLY_PREFIX` (anything else a library
prints is ignored by the coordinator).
"""

import json
import os
import sys
import traceback

REPLY_PREFIX = "@@BENCH "

#: Worker kind -> environment variables set before anything is imported.
WORKER_ENV = {
    "paddle-onednn-flag": {"FLAGS_use_onednn": "1", "FLAGS_use_mkldnn": "1"},
    "paddle-static-onednn": {"FLAGS_use_onednn": "1", "FLAGS_use_mkldnn": "1"},
}

FAST_KINDS = ("paddle-fast", "paddle-fast-conv", "paddle-onednn-flag", "paddle-static", "paddle-static-onednn",
              "data")


def _reply(obj):
    sys.stdout.write(REPLY_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _setup(kind):
    """Apply the worker's process-wide setting; returns a description."""
    info = {"kind": kind}
    if kind in FAST_KINDS:
        from paddle_palm import runtime

        info["runtime"] = runtime.setup_runtime(device="cpu", fast=True)
        info["threads"] = info["runtime"]["threads"]
        if kind.startswith("paddle-static"):
            import paddle

            paddle.enable_static()
        if kind == "paddle-fast-conv":
            from paddle_palm import ops

            # Built (or found in the cache) here, so that compiling never counts as a prepare time.
            module = ops.load()
            info["onednn_conv"] = (f"oneDNN {'.'.join(map(str, module.version))}" if module is not None
                                   else f"unavailable: {ops.unavailable_reason()}")
    elif kind == "paddle-default":
        import paddle

        paddle.set_device("cpu")
        info["threads"] = 1
    elif kind == "torch":
        import torch

        from paddle_palm.runtime import usable_cores

        torch.set_num_threads(usable_cores())
        info["threads"] = torch.get_num_threads()
        info["torch"] = torch.__version__
    if kind != "torch":
        import paddle

        info["paddle"] = paddle.__version__
    return info


def _make_runner(spec, arch, batch_size, image_size, threads):
    from bench import paths

    name = spec["runner"]
    options = dict(spec.get("options", {}))
    if name == "PaddleInference" or options.get("onednn_conv"):
        options["threads"] = threads
    return getattr(paths, name)(arch, batch_size, image_size, **options)


def main(kind):
    """Serve requests until ``quit`` or the end of standard input."""
    os.environ.update(WORKER_ENV.get(kind, {}))
    runners = {}
    info = None
    for line in sys.stdin:
        request = json.loads(line)
        command = request["cmd"]
        try:
            if command == "setup":
                info = _setup(kind)
                _reply({"ok": True, "info": info})
            elif command == "prepare":
                key = (request["path"], request["arch"])
                if key not in runners:
                    runners[key] = _make_runner(request["spec"], request["arch"], request["batch_size"],
                                                request["image_size"], info.get("threads"))
                runners[key].prepare(request["metric"], warmup=request.get("warmup", 1))
                _reply({"ok": True})
            elif command == "run":
                runner = runners[(request["path"], request["arch"])]
                times = [runner.run(request["metric"]) for _ in range(request["iters"])]
                _reply({"ok": True, "times": times})
            elif command == "data":
                from bench import data_pipeline

                _reply({"ok": True, "data": data_pipeline.measure(**request["options"])})
            elif command == "quit":
                _reply({"ok": True})
                return
            else:
                _reply({"ok": False, "error": f"unknown command {command!r}"})
        except Exception as error:  # reported to the coordinator, which records the path as failed
            message = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            traceback.print_exc(file=sys.stderr)
            _reply({"ok": False, "error": message[:400]})


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv[1])
