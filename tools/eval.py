#!/usr/bin/env python
"""Evaluate trained weights on the PALM validation images (SPEC 5).

Examples (from the repository root)::

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
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Paddle warns on import that ccache (a compiler cache for C++ extensions) is missing: irrelevant here.
warnings.filterwarnings("ignore", message=".*ccache.*")
os.environ.setdefault("GLOG_minloglevel", "2")

from paddle_palm import cli  # noqa: E402

if __name__ == "__main__":
    cli.handle_signals_early()  # Ctrl-C while Paddle is imported: one line too


def build_parser():
    """The argument parser of ``tools/eval.py``."""
    parser = cli.ArgumentParser(
        formatter_class=argparse.HelpFormatter,  # each help text states its own default
        prog="eval.py",
        description="Evaluate a trained pathologic-myopia classifier on the PALM validation images: "
        "loss, accuracy, ROC AUC, sensitivity, specificity, precision, F1, confusion matrix, "
        "per-class accuracy, next to the majority-class baseline.",
        epilog="Settings not given are read from config.yaml beside the weights (written by tools/train.py), "
        "else they are the architecture's seed recipe (SPEC 2).",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--arch", metavar="NAME", help="architecture (default: from config.yaml beside the weights)")
    model.add_argument("--weights", metavar="FILE", required=True,
                       help="trained weights: a .pdparams file, its prefix, or a run folder (best_model first)")
    model.add_argument("--num-classes", type=cli.positive_int, metavar="N",
                       help="outputs of the network: 1 (one PM logit, sigmoid) or 2 (softmax)")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", required=True,
                      help="dataset folder (PALM-Training400/, PALM-Validation400/, PALM-Validation-GT/)")
    data.add_argument("--labels", metavar="FILE",
                      help="label sheet (csv or xlsx with imgName, Label) choosing the validation rows "
                      "(default: the folder's own)")
    data.add_argument("--split", choices=("valid", "train"), default="valid", help="which images to evaluate (default: %(default)s)")
    data.add_argument("--image-size", type=cli.image_side, metavar="N", help="input side (default: the run's)")
    data.add_argument("--preprocess", type=str.upper, choices=("A", "B"),
                      help="A: course BGR resize to [-1, 1] (SPEC 1.3); B: seed 004 padding_black + Normalize (SPEC 1.4)")
    data.add_argument("--batch-size", type=cli.batch_size, default=32, metavar="N",
                      help="images per forward pass (default: %(default)s)")
    data.add_argument("--num-workers", type=cli.worker_count, default=0, metavar="N",
                      help="data-loading worker processes (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--threshold", type=cli.probability, metavar="P",
                     help="PM when pm_probability >= P (default: the run's, else 0.5)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="folder for metrics.json, confusion_matrix.png, roc.png, predictions.csv "
                     "(default: beside the weights)")
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
        num_workers=args.num_workers,
    )
    print(format_report(summary))
    print(json.dumps(summary, allow_nan=False), flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
