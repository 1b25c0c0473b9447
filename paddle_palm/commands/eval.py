"""``palm-eval``: evaluate trained weights on the PALM validation images.

Examples (from the repository root; ``palm-eval`` once installed)::

    python tools/eval.py --weights runs/resnet50/best_model.pdparams --data-dir ../shared/palm
    python tools/eval.py --arch squeezenet1_1 --weights sq.pdparams --data-dir DIR --image-size 128
    python tools/eval.py --weights runs/x/best_model.pdparams --data-dir DIR --labels my_rows.csv --threshold 0.3

The run's ``config.yaml`` beside the weights gives the architecture, number of
outputs, image size, preprocessing, classes and threshold; options given here
override it.  The report compares the model with the majority-class baseline
(always answering the most frequent class).  The last line of standard output
is one JSON object (``n``, ``accuracy``, ``auc``, ``sensitivity``,
``specificity``, ``loss``, ...; undefined values are ``null``), and the output
folder (default: the folder of the weights) receives ``metrics.json``,
``confusion_matrix.png``, ``roc.png`` and ``predictions.csv``.
"""

import argparse
import json

from paddle_palm import cli


def build_parser():
    """The argument parser of ``palm-eval`` / ``tools/eval.py``."""
    parser = cli.ArgumentParser(
        formatter_class=argparse.HelpFormatter,  # each help text states its own default
        description="Evaluate a trained pathologic-myopia classifier on the PALM validation images: "
        "loss, accuracy, ROC AUC, sensitivity, specificity, precision, F1, confusion matrix, "
        "per-class accuracy, next to the majority-class baseline; the operating point training chose, with "
        "95% confidence intervals; calibration (Brier score, reliability diagram); and how accuracy grows "
        "when a band around the threshold is referred to a specialist.",
        epilog=cli.SETTINGS_FROM_RUN,
    )
    cli.add_model_options(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", required=True,
                      help="dataset folder (PALM-Training400/, PALM-Validation400/, PALM-Validation-GT/)")
    data.add_argument("--labels", metavar="FILE",
                      help="label sheet (csv or xlsx with imgName, Label) choosing the validation rows "
                      "(default: the folder's own)")
    data.add_argument("--split", choices=("valid", "train"), default="valid",
                      help="which images to evaluate (default: %(default)s)")
    cli.add_loading_options(data, batch_size_default=32)
    cli.add_screening_options(parser.add_argument_group("screening"))
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", metavar="DIR",
                     help="folder for metrics.json, confusion_matrix.png, roc.png, reliability.png, coverage.png, "
                     "predictions.csv (default: beside the weights)")
    return parser


def main(argv=None):
    """Parse the arguments, evaluate, print the report and the JSON line."""
    args = build_parser().parse_args(argv)
    from paddle_palm.engine.evaluate import evaluate_checkpoint
    from paddle_palm.engine.reports import format_report

    summary = evaluate_checkpoint(
        args.weights, args.data_dir, arch=args.arch, labels_file=args.labels, split=args.split,
        output_dir=args.output_dir, image_size=args.image_size, preprocess=args.preprocess,
        num_classes=args.num_classes, batch_size=args.batch_size, threshold=args.threshold,
        tta=args.tta, refer_band=args.refer_band,
        num_workers=args.num_workers,
    )
    print(format_report(summary))
    print(json.dumps(summary, allow_nan=False), flush=True)
    return 0


def entry():
    """The ``palm-eval`` console script (also ``python tools/eval.py``)."""
    cli.start(main, cli.QUIET_PADDLE)


if __name__ == "__main__":
    entry()
