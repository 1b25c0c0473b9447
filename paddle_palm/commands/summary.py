"""``palm-summary``: print the ``paddle.summary`` table of a registered architecture.

Examples (from the repository root; ``palm-summary`` once installed)::

    python tools/summary.py --arch resnet50
    python tools/summary.py --arch squeezenet1_0 --num-classes 4            # the SqueezeNet program's table
    python tools/summary.py --arch senet18_cifar --input-shape 2,3,32,32    # the CIFAR-10 lesson's layers

The table lists every layer in the order the forward pass finishes it, with
its input and output shapes and parameter count; the last line is the total
parameter count, split into trainable parameters and non-trainable ones
(BatchNorm running mean and variance, which Paddle counts as parameters).
"""

import argparse
import sys

from paddle_palm import cli


def input_shape(text):
    """argparse type: ``"1,3,224,224"`` -> ``(1, 3, 224, 224)``, four positive integers."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four integers N,C,H,W such as 1,3,224,224, got {text!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected four positive integers N,C,H,W such as 1,3,224,224, got {text!r}"
        )
    return shape


def build_parser():
    """The argument parser of ``palm-summary`` / ``tools/summary.py``."""
    from paddle_palm.models import list_models

    parser = cli.ArgumentParser(
        description="Print the paddle.summary table of an architecture: every layer with its input and "
        "output shapes and parameter count, then the total parameter count.",
        epilog="Paddle counts a BatchNorm layer's running mean and variance as (non-trainable) parameters: "
        "its rows show 4*C where PyTorch's torchsummary shows 2*C; compare 'Trainable params' with "
        "PyTorch tables.",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--arch", required=True, choices=list_models(), metavar="NAME",
                       help=f"architecture, one of: {', '.join(list_models())}")
    model.add_argument("--num-classes", type=cli.positive_int, metavar="N",
                       help="number of outputs (default: the architecture's own, e.g. 1 logit for resnet50)")
    shape = parser.add_argument_group("input")
    shape.add_argument("--input-shape", type=input_shape, metavar="N,C,H,W",
                       help="shape of the random input (default: 1 image of the architecture's channels and "
                       "recipe size, e.g. 1,3,224,224)")
    return parser


def main(argv=None):
    """Build the architecture and print its table; returns the exit code."""
    args = build_parser().parse_args(argv)

    from paddle_palm.models import build_model, model_spec
    from paddle_palm.models.summary import summary_text

    spec = model_spec(args.arch)
    shape = args.input_shape or (1, spec.in_channels, spec.input_size, spec.input_size)
    model = build_model(args.arch, num_classes=args.num_classes)
    sys.stdout.write(summary_text(model, shape, title=args.arch))
    return 0


def entry():
    """The ``palm-summary`` console script (also ``python tools/summary.py``)."""
    cli.start(main, cli.QUIET_PADDLE)


if __name__ == "__main__":
    entry()
