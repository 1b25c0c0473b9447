"""``palm-app``: serve a screening app in the browser: upload fundus photographs, see the PM probability and
where the model looked.

Examples (from the repository root; ``palm-app`` once installed)::

    python tools/app.py --inference-model exported/ --weights runs/RUN/best_model.pdparams
    python tools/app.py --weights runs/RUN                      # a run folder: its best_model.pdparams
    python tools/app.py --inference-model exported/ --valid-data ../shared/palm --host 0.0.0.0 --port 8080

The page is at http://127.0.0.1:7860/ and the JSON API at ``/api/screen``,
``/api/model`` and ``/api/operating-point`` (README, "A screening app").  The
model is loaded once; it runs on the CPU unless ``--device gpu``; the server
listens on this machine only unless ``--host`` says otherwise.  Needs the
``app`` extra: ``pip install "paddle_palm[app]"``.
"""

import argparse
import os
import sys

from paddle_palm import cli
from paddle_palm.errors import PalmError

#: The app's environment defaults: Paddle's C++ log quiet, and no usage statistics or update checks from
#: Gradio (the app runs offline).
APP_ENVIRON = {**cli.QUIET_PADDLE, "GRADIO_ANALYTICS_ENABLED": "False"}


def build_parser():
    """The argument parser of ``palm-app`` / ``tools/app.py``."""
    parser = cli.ArgumentParser(
        formatter_class=argparse.HelpFormatter,
        description="Serve a page and a JSON API that screen fundus photographs for pathologic myopia (PM): "
        "PM probability, decision, Grad-CAM overlay, and the model's identity.",
        epilog="Give --inference-model (Paddle Inference; add --weights for the Grad-CAM overlay unless the "
        "export's weights are still where preprocess.json says) or --weights alone.",
    )
    model = cli.add_model_options(parser, source="both", settings=False,
                                  title="model (give --inference-model and/or --weights)")
    model.add_argument("--run-dir", metavar="DIR",
                       help="training run whose records describe the model (default: the folder of the weights)")
    model.add_argument("--valid-data", metavar="DIR",
                       help="dataset folder whose validation split is scored at start-up for the threshold slider "
                       "(default: predictions.csv of tools/eval.py beside the weights, if any)")
    model.add_argument("--no-gradcam", action="store_true", help="no Grad-CAM overlays (faster)")
    run = parser.add_argument_group("server")
    run.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                     help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for every "
                     "interface; GRADIO_SERVER_NAME sets the default)")
    run.add_argument("--port", type=cli.positive_int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                     help="TCP port (default: %(default)s; GRADIO_SERVER_PORT sets the default)")
    cli.add_runtime_options(run, devices=("cpu", "gpu"), device_default="cpu",
                            device_help="device of the dynamic-graph network (Grad-CAM; the model with --weights "
                            "alone); Paddle Inference runs on the CPU (default: %(default)s)",
                            threads_help="CPU threads of Paddle Inference")
    limits = parser.add_argument_group("upload limits")
    limits.add_argument("--max-upload-mb", type=cli.positive_float, default=20.0, metavar="MB",
                        help="largest photograph accepted (default: %(default)g MB)")
    limits.add_argument("--max-megapixels", type=cli.positive_float, default=50.0, metavar="MP",
                        help="largest image accepted, checked from its header (default: %(default)g megapixels)")
    run.add_argument("--serve-load-errors", action="store_true",
                     help="when the model cannot be loaded (missing, damaged, unsafe), still serve: the page and "
                     "the API then say why (for hosted apps whose console nobody reads); default: exit with one line")
    limits.add_argument("--max-images", type=cli.positive_int, default=16, metavar="N",
                        help="photographs per request (default: %(default)s)")
    return parser


def main(argv=None):
    """Parse the arguments, load the model once and serve until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.inference_model and not args.weights:
        parser.error("give --inference-model DIR or --weights FILE")
    if args.inference_model and args.arch:
        parser.error("--arch goes with --weights alone; an exported model records its own")

    from paddle_palm.app import require_web_stack

    require_web_stack(import_now=False)  # before the model is loaded: a missing extra is one line, at once
    from paddle_palm.app.screening import Screener, UploadLimits
    from paddle_palm.app.server import serve

    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 1024 * 1024),
                          max_pixels=int(args.max_megapixels * 1_000_000), max_images=args.max_images)
    print("loading the model ...", flush=True)
    try:
        screener = Screener(weights=args.weights, inference_model=args.inference_model, arch=args.arch,
                            threshold=args.threshold, run_dir=args.run_dir, valid_data=args.valid_data,
                            device=args.device, threads=args.threads, limits=limits, gradcam=not args.no_gradcam)
    except PalmError as exc:
        if not args.serve_load_errors:
            raise
        print(f"error: {cli.one_line(exc)}", file=sys.stderr, flush=True)
        serve(None, host=args.host, port=args.port, refusal=cli.one_line(exc))
        return 1
    c = screener.card
    print(f"model: {c.arch} ({c.source}); trained {c.trained or 'n/a'}; validation AUC "
          f"{'n/a' if c.val_auc is None else f'{c.val_auc:.4f}'}; threshold {c.threshold:g}; "
          f"Grad-CAM {'on' if screener.gradcam is not None else 'off'}", flush=True)
    for note in c.missing:
        print(f"note: {note}", flush=True)
    try:
        serve(screener, host=args.host, port=args.port)
    finally:
        screener.close()
    return 0


def entry():
    """The ``palm-app`` console script (also ``python tools/app.py``)."""
    cli.start(main, APP_ENVIRON)


if __name__ == "__main__":
    entry()
