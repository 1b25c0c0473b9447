"""``palm-prepare-data``: unpack the three PALM archives into a ready dataset folder.

    python tools/prepare_data.py --archives ~/Downloads/palm --out data/palm

The archives folder must hold ``training.zip``; ``validation.zip`` and
``valid_gt.zip`` are optional but go together.  The output folder then holds
``PALM-Training400/``, ``PALM-Validation400/`` and ``PALM-Validation-GT/`` with
the label sheet and its ``labels.csv`` copy: what ``tools/train.py --data-dir``
and ``tools/eval.py --data-dir`` take.  Running it again is quick and harmless.
"""

import argparse

from paddle_palm.cli import ArgumentParser, start


def build_parser():
    """The argument parser of ``palm-prepare-data`` / ``tools/prepare_data.py``."""
    parser = ArgumentParser(
        description="Unpack training.zip (with its nested PALM-Training400.zip), validation.zip and "
                    "valid_gt.zip, convert the label sheet to labels.csv, and write the dataset folder.",
        epilog="example: python tools/prepare_data.py --archives ~/Downloads/palm --out data/palm. "
               "Damaged or unsafe archives are refused with a one-line message and the output folder is "
               "left as it was; running it again is quick and changes nothing.",
    )
    paths = parser.add_argument_group("folders")
    paths.add_argument("--archives", required=True, metavar="DIR", default=argparse.SUPPRESS,
                       help="folder holding training.zip, and optionally validation.zip with valid_gt.zip "
                            "(the annotation zips inside training.zip are not needed)")
    paths.add_argument("--out", required=True, metavar="DIR", default=argparse.SUPPRESS,
                       help="dataset folder to write (created if needed); give it to train.py/eval.py as --data-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def format_summary(summary):
    """The lines printed after preparation: counts by class, validation images, label rows."""
    by_prefix = summary["train_by_prefix"]
    classes = ", ".join(f"{k} {v}" for k, v in sorted(by_prefix.items()))
    lines = [
        f"dataset folder: {summary['data_dir']}",
        f"training images: {summary['train']} ({classes}; pathologic {summary['train_positive']}, "
        f"non-pathologic {summary['train'] - summary['train_positive']})",
        f"validation images: {summary['valid']}",
    ]
    if summary["labels_file"]:
        lines.append(f"label rows: {summary['label_rows']} (positive {summary['label_positive']}) "
                     f"in {summary['labels_file']}")
    else:
        lines.append("label rows: 0 (no validation archives given)")
    return lines


def main(argv=None):
    """Parse the arguments, prepare the dataset folder and describe it."""
    args = build_parser().parse_args(argv)
    # Imported here, after the signal handlers (OpenCV, numpy and pandas take a moment to import).
    from paddle_palm.data.archives import is_prepared, prepare_palm
    from paddle_palm.data.layout import describe_dataset

    if is_prepared(args.archives, args.out):
        print(f"{args.out} is already prepared from these archives; nothing to do")
    out = prepare_palm(args.archives, args.out, progress=not args.quiet)
    for line in format_summary(describe_dataset(out)):
        print(line)
    return 0


def entry():
    """The ``palm-prepare-data`` console script (also ``python tools/prepare_data.py``)."""
    start(main)


if __name__ == "__main__":
    entry()
