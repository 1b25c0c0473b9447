"""``palm-train``: train a pathologic-myopia classifier on PALM (or the built-in synthetic data).

Examples (from the repository root; ``palm-train`` once installed)::

    python tools/train.py --arch senet18                      # the course's SENet18 recipe, synthetic data
    python tools/train.py --arch resnet50 --data-dir ../shared/palm
    python tools/train.py --config configs/palm_cpu.yaml --data-dir ../shared/palm
    python tools/train.py --config configs/palm_finetune.yaml --data-dir ../shared/palm   # from ImageNet weights
    python tools/train.py --resume runs/resnet50-20240101-120000 --epochs 20

Defaults follow each architecture's recipe (the course program it comes from:
loss, optimiser, learning rate, batch size, epochs, preprocessing; ``--help``
lists them); ``--config FILE`` (``-c``) loads YAML settings, ``-o section.key=value``
(repeatable, PaddleClas style: ``-o Global.epochs=5``) overrides them, and any option
given here overrides both.  The run folder receives the checkpoints, ``history.csv``,
``config.yaml``, the plots and ``train.log``.  Data-parallel training::

    python -m paddle.distributed.launch --devices 0,1 tools/train.py --arch resnet50 --data-dir DIR
"""

import argparse
import json
import math
import textwrap

from paddle_palm import cli
from paddle_palm.engine import config as cfg

S = argparse.SUPPRESS


def _milestones(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epoch numbers separated by commas, e.g. 30,60; got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive epoch numbers separated by commas, got {text!r}")
    return values


def _recipes_text():
    lines = ["per-architecture defaults (the recipes of the course programs; any option overrides them):"]
    for arch in cfg.RECIPES:
        r = _recipe(arch)
        sched = r.get("lr_schedule", "constant")
        extra = f" -> {r['end_lr']:g} over {r['decay_steps']:g} steps" if sched == "polynomial" else ""
        data = f", dataset {r['dataset']}" if r.get("dataset", "palm") != "palm" else ""
        lines.append(
            f"  {arch:18s} loss {r.get('loss', 'bce')}, {r.get('optimizer', 'momentum')} lr {r['lr']:g} "
            f"({sched}{extra}), batch {r['batch_size']}, {r['epochs']} epochs{data}"
        )
    others = sorted(set(_list_models()) - set(cfg.RECIPES))
    if others:
        lines.append("other architectures use the base defaults: " + ", ".join(others))
    return "\n".join(lines)


def _recipe(arch):
    try:
        return cfg.recipe(arch)  # with the model's own loss (its registry entry)
    except Exception:  # the model zoo failed to import: --help must still work
        return cfg.RECIPES[arch]


def _list_models():
    try:
        from paddle_palm.models import list_models

        return list_models()
    except Exception:  # the model zoo failed to import: --help must still work
        return []


def build_parser():
    """The argument parser of ``palm-train`` / ``tools/train.py``."""
    parser = cli.ArgumentParser(
        description=textwrap.fill(
            "Train a pathologic-myopia (PM) classifier. Defaults follow the architecture's recipe (below); "
            "-c/--config FILE loads YAML settings, -o section.key=value overrides them (PaddleClas style); "
            "options given here override all of these. "
            "Without --data-dir a small synthetic data set is generated and used.", width=79),
        epilog=_recipes_text() + "\n\nthe run folder: best_model.pdparams, latest.pdparams/.pdopt/.pdstates, "
        "history.csv, loss.csv, config.yaml, loss.png, history.png, train.log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=S,
    )
    _model_and_data_options(parser)
    _optimisation_options(parser)
    _run_options(parser)
    return parser


def _model_and_data_options(parser):
    """The network and its loss; the data set, its preprocessing and loading."""
    m = parser.add_argument_group("model")
    m.add_argument("--arch", metavar="NAME", help="architecture: " + ", ".join(_list_models()))
    m.add_argument("--loss", choices=cfg.CHOICES["loss"],
                   help="bce: one logit, sigmoid cross-entropy (senet18, resnet*); ce: two classes, softmax "
                   "cross-entropy (squeezenet*). The number of outputs follows")
    m.add_argument("--label-smoothing", type=cli.probability, metavar="E",
                   help="train towards targets 1 - E/2 and E/2 (bce) or (1 - E) one-hot + E/C (ce) instead of 1 and 0; "
                   "0.1 is usual (default 0: off)")
    m.add_argument("--num-classes", type=cli.positive_int, metavar="N", help="outputs (default: follows --loss)")
    m.add_argument("--pretrained", metavar="imagenet|PATH",
                   help="start from pretrained weights: imagenet (paddle.vision's, downloaded once into Paddle's "
                   "cache; resnet50/101/152, squeezenet1_0/1_1) or a .pdparams state dict of the same network "
                   "(paddle.vision, PaddleClas or paddle_palm names); the classifier is new unless it fits")

    d = parser.add_argument_group("data")
    d.add_argument("--data-dir", metavar="DIR",
                   help="dataset folder (tools/prepare_data.py output, e.g. ../shared/palm); default: synthetic data")
    d.add_argument("--labels-file", metavar="FILE", help="validation labels (csv/xlsx; default: the folder's labels.csv)")
    d.add_argument("--dataset", choices=cfg.CHOICES["dataset"],
                   help="palm (default), or mnist / cifar10 (the data sets of the course's other lessons) from local files "
                   "in --data-dir")
    d.add_argument("--image-size", type=cli.image_side, metavar="PX", help="input side in pixels (default 224)")
    d.add_argument("--preprocess", type=cli.preprocess_name, metavar="METHOD", help=cli.PREPROCESS_HELP)
    d.add_argument("--augment", choices=cfg.CHOICES["augment"],
                   help="flip: random horizontal and vertical flips (as the SqueezeNet programs train); a config "
                   "file can give a mapping instead: hflip, vflip (probabilities), max_rotation (degrees), scale, "
                   "brightness, contrast, saturation (relative ranges), hue (a fraction of a turn, at most 0.5), as "
                   "configs/palm_cpu.yaml does")
    d.add_argument("--mixup", type=cli.non_negative_float, metavar="ALPHA",
                   help="mixup: train on blends lam*x + (1-lam)*x' of two images of a batch against the same blend of "
                   "their losses, lam ~ Beta(ALPHA, ALPHA); 0.2 is usual (default 0: off)")
    d.add_argument("--num-workers", type=cli.worker_count, metavar="N", help="data-loading processes (default 0)")
    d.add_argument("--cache", action=argparse.BooleanOptionalAction,
                   help="decode and resize every image once, before training, and keep them in memory")



def _optimisation_options(parser):
    """The update rule, the learning-rate schedule, epochs and batches, EMA, mixed precision."""
    o = parser.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=cfg.CHOICES["optimizer"],
                   help="update rule; adamw: Adam with --weight-decay decoupled from the gradient")
    o.add_argument("--lr", type=cli.positive_float, metavar="F", help="(initial) learning rate")
    o.add_argument("--momentum", type=cli.probability, metavar="F", help="momentum (default 0.9)")
    o.add_argument("--weight-decay", type=cli.non_negative_float, metavar="F",
                   help="L2 regularisation (default 0); with adamw, each step takes rate x F of every weight "
                        "off it instead (0.01-0.05 is usual)")
    o.add_argument("--lr-schedule", choices=cfg.CHOICES["lr_schedule"],
                   help="constant; polynomial (per batch, to --end-lr over --decay-steps); cosine; plateau "
                   "(x --plateau-factor when the validation loss stalls); multistep (x --gamma at --milestones)")
    o.add_argument("--end-lr", type=cli.non_negative_float, metavar="F", help="final rate of polynomial / cosine")
    o.add_argument("--decay-steps", type=cli.positive_float, metavar="N", help="polynomial length in batches (default: the whole run)")
    o.add_argument("--power", type=cli.positive_float, metavar="F", help="polynomial exponent (default 1)")
    o.add_argument("--milestones", type=_milestones, metavar="E1,E2", help="multistep epochs, e.g. 30,60")
    o.add_argument("--gamma", type=cli.positive_float, metavar="F", help="multistep factor (default 0.1)")
    o.add_argument("--plateau-factor", type=cli.positive_float, metavar="F", help="plateau factor (default 0.1)")
    o.add_argument("--plateau-patience", type=cli.non_negative_int, metavar="N", help="plateau patience in epochs")
    o.add_argument("--min-lr", type=cli.non_negative_float, metavar="F", help="plateau floor")
    o.add_argument("--warmup-epochs", type=cli.non_negative_int, metavar="N", help="linear warm-up epochs (default 0)")
    o.add_argument("--epochs", type=cli.positive_int, metavar="N", help="total epochs (also when resuming)")
    o.add_argument("--batch-size", type=cli.batch_size, metavar="N", help="images per batch (per process)")
    o.add_argument("--grad-clip", type=cli.positive_float, metavar="F", help="clip the gradient's global norm")
    o.add_argument("--backbone-lr-scale", type=cli.non_negative_float, metavar="F",
                   help="fine-tuning: the backbone learns at F x the rate, the classifier at the full rate (e.g. 0.1)")
    o.add_argument("--freeze-epochs", type=cli.non_negative_int, metavar="N",
                   help="fine-tuning: train only the classifier for the first N epochs (default 0)")
    o.add_argument("--ema", action=argparse.BooleanOptionalAction,
                   help="validate and save as best_model an exponential moving average of the weights")
    o.add_argument("--ema-decay", type=cli.positive_float, metavar="F", help="EMA decay (default 0.999)")
    o.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="mixed precision: float16 with loss scaling on GPU; on a CPU with AVX-512 BF16 or AMX the "
                   "oneDNN operator's convolutions multiply in bfloat16 (float32 weights; about 1.5x faster, "
                   "docs/BENCHMARKS.md 3.6), on other CPUs training stays float32")
    o.add_argument("--amp-dtype", choices=cfg.CHOICES["amp_dtype"],
                   help="with --amp: auto (float16 on GPU, bfloat16 on CPU), float16 (GPU, with loss scaling) or "
                   "bfloat16 (CPU, or a GPU of compute capability 8.0+)")



def _run_options(parser):
    """The run folder and what is recorded in it; the runtime."""
    r = parser.add_argument_group("run and output")
    r.add_argument("-c", "--config", metavar="FILE",
                   help="YAML settings (e.g. configs/palm_cpu.yaml or a run's config.yaml)")
    r.add_argument("-o", "--override", action="append", metavar="KEY=VALUE",
                   help="override one setting, repeatable: section.key=value or key=value (e.g. -o optimisation.epochs=5 "
                   "-o lr=0.01), or the PaddleClas names " + ", ".join(cfg.PADDLECLAS_KEYS) + "; the value is read "
                   "as YAML. "
                   "Precedence: defaults < recipe < -c FILE < -o < the options written out here")
    r.add_argument("--output-dir", metavar="DIR", help="run folder (default runs/<arch>-<date>-<time>)")
    r.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last finished epoch")
    r.add_argument("--seed", type=cli.non_negative_int, metavar="N", help="random seed: same seed, same run (default 0)")
    r.add_argument("--metric", choices=cfg.CHOICES["metric"], help="what picks best_model (default val_acc)")
    r.add_argument("--early-stop", type=cli.non_negative_int, metavar="N",
                   help="stop after N epochs without a better --metric (0: never)")
    r.add_argument("--threshold", type=cli.probability, metavar="P",
                   help="PM decision threshold during training (default 0.5); see --threshold-rule")
    r.add_argument("--threshold-rule", type=cli.threshold_rule, metavar="RULE",
                   help="how the model's decision threshold is chosen on the validation split when training ends: "
                        "youden (best sensitivity + specificity), sensitivity:0.98 (the best specificity that "
                        "catches 98%% of PM eyes), specificity:S, or fixed:T (default: fixed at --threshold); "
                        "recorded in best_model.pdstates and config.yaml, used by eval, predict and export")
    r.add_argument("--calibrate", action=argparse.BooleanOptionalAction,
                   help="fit temperature scaling on the validation split so the PM probabilities are honest "
                        "(kept only where cross-validation says it helps; default off)")
    r.add_argument("--log-interval", type=cli.positive_int, metavar="N", help="record the loss every N batches (default 10)")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bars")
    r.add_argument("--visualdl", action=argparse.BooleanOptionalAction, help="VisualDL logs when visualdl is installed")
    r.add_argument("--print-config", action="store_true", help="print the resolved settings as YAML and exit")

    t = parser.add_argument_group("runtime")
    t.add_argument("--device", choices=cfg.CHOICES["device"], help="where to train (default auto: GPU if present)")
    t.add_argument("--fast", action=argparse.BooleanOptionalAction,
                   help="the fast CPU execution path (default on); --no-fast: plain dygraph")
    t.add_argument("--threads", type=cli.thread_count, metavar="N", help="CPU threads (default: all cores)")


def main(argv=None):
    """Parse the options, resolve the configuration and train; print a JSON summary last."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    args = {**cfg.apply_overrides({}, args.pop("override", [])), **args}  # explicit options win over -o
    resume = args.pop("resume", None)
    print_config = args.pop("print_config", False)
    if resume:
        config = cfg.resolve_resume(resume, args, config_file)
    else:
        config = cfg.resolve(args, config_file)
    if print_config:
        print(cfg.to_yaml(config), end="")
        return 0

    from paddle_palm.engine.trainer import train

    summary = train(config, resume_dir=resume, echo=True)
    if summary.get("rank", 0) != 0:
        return 0  # data parallel: only the first process reports
    best = summary["best_value"]
    print(json.dumps({
        "run_dir": summary["run_dir"],
        "epochs": summary["epochs"],
        "stopped_early": summary["stopped_early"],
        "best_metric": summary["best_metric"],
        "best_value": best if best is None or math.isfinite(best) else None,
        "best_epoch": summary["best_epoch"],
    }))
    return 0


def entry():
    """The ``palm-train`` console script (also ``python tools/train.py``)."""
    cli.start(main)


if __name__ == "__main__":
    entry()
