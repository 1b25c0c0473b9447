"""``palm-export``: export trained weights as a Paddle Inference model with the sigmoid/softmax inside.

Examples (from the repository root; ``palm-export`` once installed)::

    python tools/export.py --weights runs/resnet50/best_model.pdparams --output exported/resnet50
    python tools/export.py --arch squeezenet1_1 --weights sq.pdparams --output exported/sq --image-size 128
    python tools/predict.py --inference-model exported/resnet50 ../shared/palm/PALM-Validation400
    python tools/export.py --weights runs/resnet50/best_model.pdparams --output exported/resnet50 --format both \
        --verify-images ../shared/palm/PALM-Validation400      # also model.onnx (pip install "paddle_palm[onnx]")
    python tools/predict.py --inference-model exported/resnet50/model.onnx photos/   # through onnxruntime

The output folder receives ``inference.json`` (the program; ``.pdmodel`` with
Paddle 2) and ``inference.pdiparams`` (the weights), whose input ``image`` is a
float32 batch ``[N, C, S, S]`` and whose output is the PM probability ``[N, 1]``,
and ``preprocess.json``: the preprocessing the model expects (method A or B,
image size, channel order, mean, std), its class names, threshold and the
source weights, and ``inference.yml``: the preprocessing and threshold in the layout
PaddleClas's deploy scripts read.  ``--format onnx`` (or ``both``) adds ``model.onnx``
(paddle2onnx; input ``image``, output ``pm_probability``).  The export is checked: the
exported model, run through Paddle Inference with oneDNN (and onnxruntime for ONNX),
must give the checkpoint's probabilities (the largest difference is printed).
"""

import argparse

from paddle_palm import cli


def build_parser():
    """The argument parser of ``palm-export`` / ``tools/export.py``."""
    parser = cli.ArgumentParser(
        formatter_class=argparse.HelpFormatter,  # each help text states its own default
        description="Export a trained classifier for Paddle Inference: the network with its "
        "sigmoid/softmax inside (output: PM probability) and its preprocessing recorded in preprocess.json.",
        epilog=cli.SETTINGS_FROM_RUN + "  Run the result with: python tools/predict.py --inference-model DIR "
        "IMAGES...",
    )
    cli.add_model_options(parser, exported=True)
    out = parser.add_argument_group("output")
    out.add_argument("--output", metavar="DIR", required=True, help="folder to write the exported model into")
    out.add_argument("--format", choices=("paddle", "onnx", "both"), default="paddle",
                     help="paddle (default): Paddle Inference files; onnx or both: model.onnx as well, converted by "
                     "paddle2onnx from the Paddle files, which stay beside it (needs pip install \"paddle_palm[onnx]\")")
    out.add_argument("--no-verify", action="store_true",
                     help="skip loading the exported model back to compare it with the checkpoint")
    out.add_argument("--verify-images", nargs="+", metavar="PATH",
                     help="image files or folders whose first 8 images join the check's synthetic inputs "
                     "(e.g. ../shared/palm/PALM-Validation400)")
    return parser


def main(argv=None):
    """Parse the arguments and export."""
    args = build_parser().parse_args(argv)
    from paddle_palm.engine.export import EXPORT_TOLERANCE, export_checkpoint

    record = export_checkpoint(args.weights, args.output, arch=args.arch, num_classes=args.num_classes,
                               image_size=args.image_size, preprocess=args.preprocess, threshold=args.threshold,
                               verify=not args.no_verify, fmt=args.format, verify_images=args.verify_images)
    size = record["preprocess"]["image_size"]
    files = record["files"]
    names = [files["model"], files["params"]] + [files[k] for k in ("onnx", "deploy") if k in files]
    print(f"exported {record['arch']} ({record['weights']}) to {args.output}: {', '.join(names)}, preprocess.json")
    print(f"input image [N, {record['input']['shape'][1]}, {size}, {size}] float32, preprocessing "
          f"{record['preprocess']['method']}; output {record['output_tensor']!r} [N, 1] ({record['output']}); "
          f"threshold {record['threshold']:g}")
    checks = [("Paddle Inference (oneDNN fp32)", record.get("verification")),
              (record.get("onnx", {}).get("verification", {}).get("backend"), record.get("onnx", {}).get("verification"))]
    for backend, check in checks:
        if check:
            verdict = "ok" if check["max_abs_diff"] <= EXPORT_TOLERANCE else "LARGER THAN THE TOLERANCE"
            print(f"check: {backend} vs checkpoint on {check['input'].split(':')[0]}, max |difference| "
                  f"{check['max_abs_diff']:.2e} (tolerance {EXPORT_TOLERANCE:g}): {verdict}")
    return 0


def entry():
    """The ``palm-export`` console script (also ``python tools/export.py``)."""
    cli.start(main, cli.QUIET_PADDLE)


if __name__ == "__main__":
    entry()
