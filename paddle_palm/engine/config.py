"""Training configuration: per-architecture recipes, YAML files, the resolved settings.

One flat dictionary describes a training run; every key is also a ``tools/train.py``
option (``batch_size`` is ``--batch-size``).  It is resolved in layers, each
overriding the one before (STYLE.md "Configuration"):

1. :data:`BASE_DEFAULTS` - what every run starts from;
2. the architecture's seed recipe, :data:`RECIPES` (SPEC 2);
3. a YAML file given with ``--config`` / ``-c`` (flat keys, or keys grouped under the
   section names of :data:`SECTIONS`);
4. PaddleClas-style ``-o section.key=value`` overrides (:func:`apply_overrides`);
5. the options given on the command line.

The resolved dictionary is written to the run folder as ``config.yaml``; the
evaluation, prediction and export tools read it back with :func:`load_run_config`
to rebuild the same network with the same preprocessing.

What belongs to a model rather than to a training run (its default number of
outputs and the loss that goes with them, its input size and its preprocessing)
comes from its registry entry (:func:`paddle_palm.models.model_spec`), and the
PALM class names from :mod:`paddle_palm.metrics`.  :func:`validate` and
:func:`check_image_size` are the checks of these values; the evaluation,
prediction and export tools reuse them (:mod:`paddle_palm.engine.model_settings`).

Importing the model zoo imports Paddle (seconds), so :mod:`paddle_palm.models` is
imported inside the functions that need a model's entry: reading this module stays
cheap for the tools' option parsing.
"""

import difflib
import os

from paddle_palm.errors import CheckpointError, ConfigError, MissingFileError
from paddle_palm.fileio import write_text_atomic
from paddle_palm.metrics import CLASS_NAMES_EN, CLASS_NAMES_ZH
from paddle_palm.operating_point import parse_threshold_rule

CONFIG_NAME = "config.yaml"

#: Every key of a run configuration, its default, grouped as in ``tools/train.py --help``.
SECTIONS = {
    "model": {
        "arch": None,
        "num_classes": None,  # None: follows the loss (1 logit for bce, 2 classes for ce)
        "loss": "bce",
        "label_smoothing": 0.0,  # training targets moved towards the uniform answer (engine.losses)
        "pretrained": None,  # None: random initialisation; "imagenet" or a .pdparams file (models.pretrained)
    },
    "data": {
        "dataset": "palm",
        "data_dir": None,  # None: the synthetic data set is generated
        "image_size": 224,
        "preprocess": "A",
        "augment": "none",
        "num_workers": 0,
        "cache": False,
        "mixup": 0.0,  # Beta(alpha, alpha) of mixup's weight; 0: off (engine.losses.mixup_plan)
        "labels_file": None,
    },
    "optimisation": {
        "optimizer": "momentum",
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "lr_schedule": "constant",
        "end_lr": 0.0,
        "decay_steps": None,  # polynomial: None means every step of the run
        "power": 1.0,
        "milestones": [],
        "gamma": 0.1,
        "plateau_factor": 0.1,
        "plateau_patience": 1,
        "min_lr": 0.0,
        "warmup_epochs": 0,
        "epochs": 10,
        "batch_size": 10,
        "ema": False,
        "ema_decay": 0.999,
        "amp": False,
        "amp_dtype": "auto",  # auto: float16 (loss-scaled) on a GPU, bfloat16 on a CPU
        "grad_clip": None,
        "backbone_lr_scale": 1.0,  # the pretrained backbone's rate as a multiple of lr (the classifier keeps lr)
        "freeze_epochs": 0,  # the backbone is not updated during the first N epochs
    },
    "run": {
        "seed": 0,
        "output_dir": None,
        "metric": "val_acc",
        "early_stop": 0,
        "threshold": 0.5,
        # How the decision threshold is chosen on the validation split at the end of training
        # (paddle_palm.operating_point): None keeps the fixed `threshold`; youden, sensitivity:S, ...
        "threshold_rule": None,
        "calibrate": False,  # fit temperature scaling on the validation split (kept only if it helps)
        "log_interval": 10,
        "visualdl": True,
        "progress": True,
    },
    "runtime": {
        "device": "auto",
        "fast": True,
        "threads": None,
    },
}

#: The flat defaults (first layer of the resolution).
BASE_DEFAULTS = {key: value for section in SECTIONS.values() for key, value in section.items()}

#: Seed recipes per architecture (SPEC 2): the training settings that differ from BASE_DEFAULTS.  The
#: model's own loss, image size and preprocessing come from its registry entry (:func:`recipe`).
RECIPES = {
    # SPEC 2.1 (seed 000): sigmoid BCE, Momentum(1e-3, 0.9), batch 10, 3 epochs, preprocessing A.
    "senet18": {"optimizer": "momentum", "lr": 0.001, "momentum": 0.9, "batch_size": 10, "epochs": 3},
    # The ImageNet-style SE-ResNet18 has no seed; it uses the seed-000 optimiser with flips and more epochs.
    "se_resnet18": {
        "optimizer": "momentum", "lr": 0.001, "momentum": 0.9, "batch_size": 10, "epochs": 10, "augment": "flip",
    },
    # SPEC 2.4 (seed 001): Momentum 0.9 with PolynomialDecay(0.005, (400//10+1)*2.5 = 102.5 steps, end 0.001).
    **{
        name: {
            "optimizer": "momentum", "lr": 0.005, "momentum": 0.9, "lr_schedule": "polynomial",
            "decay_steps": (400 // 10 + 1) * 2.5, "end_lr": 0.001, "batch_size": 10, "epochs": 10,
        }
        for name in ("resnet50", "resnet101", "resnet152")
    },
    # SPEC 2.5 (seed 004): softmax CE over 2 classes, preprocessing B with random flips, batch 16, 20 epochs,
    # best model by validation accuracy.  The seed's Adam(1e-3) makes the final ReLU of SqueezeNet die on
    # PALM (every logit 0, accuracy stuck at the majority class) and is 2.8x slower per epoch on CPU, so the
    # recipe uses Momentum(1e-3, 0.9) (measured at 128 px: 0.95 accuracy, AUC 0.989 on V0001-V0100 after 84
    # epochs).  Larger rates (2e-3 with a cosine schedule) killed the ReLU too; --optimizer adam restores the seed.
    **{
        name: {
            "optimizer": "momentum", "lr": 0.001, "momentum": 0.9, "batch_size": 16, "epochs": 20,
            "augment": "flip",
        }
        for name in ("squeezenet1_0", "squeezenet1_1")
    },
    # SPEC 2.2 (seed 003): CIFAR-10, SGD(0.1, momentum 0.9, wd 5e-4), ReduceLROnPlateau(0.94, patience 1).
    "senet18_cifar": {
        "dataset": "cifar10", "optimizer": "momentum", "lr": 0.1, "momentum": 0.9,
        "weight_decay": 5e-4, "lr_schedule": "plateau", "plateau_factor": 0.94, "plateau_patience": 1,
        "min_lr": 1e-6, "batch_size": 128, "epochs": 20, "metric": "val_acc",
    },
    # SPEC 2.3 (seed 002): MNIST, SGD(0.05, momentum 0.5), batch 32, 20 epochs, input resized to 224.
    "se_resnet18_mnist": {
        "dataset": "mnist", "optimizer": "momentum", "lr": 0.05, "momentum": 0.5, "batch_size": 32, "epochs": 20,
    },
}

CHOICES = {
    "loss": ("bce", "ce"),
    "dataset": ("palm", "mnist", "cifar10"),
    "augment": ("none", "flip"),
    "optimizer": ("momentum", "sgd", "adam", "adamw"),
    "lr_schedule": ("constant", "polynomial", "cosine", "plateau", "multistep"),
    "metric": ("val_acc", "val_auc", "val_loss"),
    "device": ("auto", "cpu", "gpu"),
    "amp_dtype": ("auto", "float16", "bfloat16"),
}

#: Keys of an ``augment`` mapping: the fields of :class:`paddle_palm.data.transforms.Augmentation`
#: (listed here so that reading a config does not import OpenCV; a test keeps the two the same).
AUGMENT_KEYS = ("hflip", "vflip", "max_rotation", "scale", "brightness", "contrast", "saturation", "hue")

# (type, minimum, inclusive) of the numeric keys; None in the type means the key may also be None.
_NUMBERS = {
    "num_classes": (int, 1, True, True),
    "image_size": (int, 8, True, False),
    "num_workers": (int, 0, True, False),
    "lr": (float, 0.0, False, False),
    "momentum": (float, 0.0, True, False),
    "label_smoothing": (float, 0.0, True, False),
    "mixup": (float, 0.0, True, False),
    "weight_decay": (float, 0.0, True, False),
    "end_lr": (float, 0.0, True, False),
    "decay_steps": (float, 0.0, False, True),
    "power": (float, 0.0, False, False),
    "gamma": (float, 0.0, False, False),
    "plateau_factor": (float, 0.0, False, False),
    "plateau_patience": (int, 0, True, False),
    "min_lr": (float, 0.0, True, False),
    "warmup_epochs": (int, 0, True, False),
    "epochs": (int, 1, True, False),
    "batch_size": (int, 1, True, False),
    "ema_decay": (float, 0.0, False, False),
    "grad_clip": (float, 0.0, False, True),
    "backbone_lr_scale": (float, 0.0, True, False),
    "freeze_epochs": (int, 0, True, False),
    "seed": (int, 0, True, False),
    "early_stop": (int, 0, True, False),
    "threshold": (float, 0.0, True, False),
    "log_interval": (int, 1, True, False),
    "threads": (int, 1, True, True),
}
_BOOLS = ("cache", "ema", "amp", "visualdl", "progress", "fast", "calibrate")
_PATHS = ("arch", "data_dir", "labels_file", "output_dir", "pretrained")

#: Keys that must not change when a run is resumed (the checkpoint would not fit, or the
#: continued run could no longer match an uninterrupted one).
RESUME_FIXED = ("arch", "num_classes", "loss", "dataset", "optimizer", "ema", "batch_size", "seed", "image_size")


def recipe(arch):
    """The seed recipe of ``arch`` merged over :data:`BASE_DEFAULTS` and its registry entry (a new dict).

    The registry gives the loss of the model's default outputs, its image size and its preprocessing.
    """
    from paddle_palm.models import model_spec

    spec = model_spec(arch)  # unknown name: ConfigError listing the known ones
    config = dict(BASE_DEFAULTS)
    config.update(loss=spec.loss, image_size=spec.input_size, preprocess=spec.preprocess)
    config.update(RECIPES.get(arch, {}))
    config["arch"] = arch
    return config


def _where(source):
    return f" in {source}" if source else ""


def _suggest(key):
    close = difflib.get_close_matches(key, list(BASE_DEFAULTS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def flatten(data, source=None):
    """Turn a YAML mapping (flat, or grouped by :data:`SECTIONS`) into a flat dict of known keys.

    Raises:
        ConfigError: not a mapping, or an unknown key (named, with the closest known one).
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of settings{_where(source)}, found {type(data).__name__}")
    flat = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat[_known(sub_key, source)] = sub_value
        else:
            flat[_known(key, source)] = value
    return flat


def _known(key, source):
    if not isinstance(key, str):
        raise ConfigError(f"setting names must be strings{_where(source)}, found {key!r}")
    norm = key.replace("-", "_")
    if norm in ("classes", "classes_zh", "paddle_palm_version", "operating_point"):
        return norm
    if norm not in BASE_DEFAULTS:
        raise ConfigError(f"unknown setting {key!r}{_where(source)}{_suggest(norm)}")
    return norm


#: PaddleClas-style names understood by ``-o`` (``-o Global.epochs=5``), mapped to ours.  Only the
#: ones whose meaning is the same here; anything else under these prefixes is refused with a hint.
PADDLECLAS_KEYS = {
    "Global.epochs": "epochs",
    "Global.seed": "seed",
    "Global.output_dir": "output_dir",
    "Global.device": "device",
    "Global.print_batch_step": "log_interval",
    "Arch.name": "arch",
    "Arch.class_num": "num_classes",
    "Optimizer.name": "optimizer",
    "Optimizer.momentum": "momentum",
    "Optimizer.lr.learning_rate": "lr",
    "Optimizer.regularizer.coeff": "weight_decay",
    "DataLoader.Train.sampler.batch_size": "batch_size",
    "DataLoader.Train.loader.num_workers": "num_workers",
    # The list items of PaddleClas's configs, by the index its override syntax gives them
    # (``Loss.Train.0.CELoss.epsilon``: the first loss of the list; its recipes put CELoss first).
    "Loss.Train.0.CELoss.epsilon": "label_smoothing",
    "DataLoader.Train.dataset.batch_transform_ops.0.MixupOperator.alpha": "mixup",
    # These take PaddleClas's values and are translated by _paddleclas_value.
    "Global.image_shape": "image_size",
    "Arch.pretrained": "pretrained",
    "Global.pretrained_model": "pretrained",
    "Optimizer.lr.name": "lr_schedule",
    "Optimizer.lr.warmup_epoch": "warmup_epochs",
    "Optimizer.lr.eta_min": "end_lr",
    "Optimizer.lr.end_lr": "end_lr",
    "Optimizer.lr.power": "power",
    "Optimizer.lr.milestones": "milestones",
    "Optimizer.lr.gamma": "gamma",
    "EMA.decay": "ema_decay",
}

#: PaddleClas's learning-rate schedules (``Optimizer.lr.name``, lower case) and theirs here.  The
#: curves are the same; a warm-up differs for ``Linear`` and ``MultiStepDecay``: PaddleClas starts
#: their decay after it, here the warm-up scales the first epochs of the decay.
PADDLECLAS_SCHEDULES = {"constant": "constant", "cosine": "cosine", "linear": "polynomial",
                        "multistepdecay": "multistep"}


def _override_key(name, item):
    """The flat key an ``-o`` name stands for: ``section.key``, ``key`` or a :data:`PADDLECLAS_KEYS` name."""
    if name in PADDLECLAS_KEYS:
        return PADDLECLAS_KEYS[name]
    section, dot, key = name.partition(".")
    where = f"-o {item!r}"
    if not dot:
        return _known(name, where)
    if section in SECTIONS:
        norm = _known(key, where)
        if norm not in SECTIONS[section]:
            owner = next(s for s, keys in SECTIONS.items() if norm in keys)
            raise ConfigError(f"{norm!r} is in section {owner!r}, not {section!r} ({where}: use {owner}.{norm})")
        return norm
    close = difflib.get_close_matches(name, list(PADDLECLAS_KEYS) + [f"{s}.{k}" for s in SECTIONS
                                                                      for k in SECTIONS[s]], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown setting {name!r} in {where}{hint}; sections: {', '.join(SECTIONS)}")


def apply_overrides(config, overrides):
    """Apply PaddleClas-style ``-o`` overrides to a flat configuration; return a new dict.

    Each item is ``section.key=value`` (a section of :data:`SECTIONS`), ``key=value``, or one
    of the PaddleClas names of :data:`PADDLECLAS_KEYS` (``Global.epochs=5``, ``Arch.name=resnet50``).
    The value is read as YAML (``yaml.safe_load``: ``5`` is a number, ``true`` a boolean,
    ``[10, 20]`` a list; never evaluated) and checked like a configuration file's.

    Args:
        config: a flat configuration (not changed).
        overrides: the ``-o`` items, in order (a later one wins).

    Raises:
        ConfigError: no ``=``, a value that is not YAML, an unknown key (with the closest
            known one) or a bad value, naming the item.
    """
    import yaml

    out = dict(config or {})
    for item in overrides or ():
        name, eq, text = str(item).partition("=")
        name = name.strip()
        if not eq or not name:
            raise ConfigError(f"-o {item!r}: expected section.key=value, e.g. -o optimisation.epochs=5")
        key = _override_key(name, item)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"-o {item!r}: the value is not YAML ({' '.join(str(exc).split())[:200]})") from None
        updates = {key: value}
        if name in PADDLECLAS_KEYS:
            updates = _paddleclas_value(key, value, f"-o {item!r}")
        out.update(validate(updates, source=f"-o {item!r}"))
    return out


def _paddleclas_value(key, value, where):
    """The settings a PaddleClas name (here as our ``key``) and its value stand for, translated."""
    if key in ("arch", "optimizer", "lr_schedule") and isinstance(value, str):
        value = value.lower()  # PaddleClas writes ResNet50, SqueezeNet1_1, Momentum, Cosine
    if key == "lr_schedule" and isinstance(value, str):
        if value not in PADDLECLAS_SCHEDULES:
            raise ConfigError(
                f"{where}: PaddleClas's schedule {value!r} has no equal here; expected Constant, Cosine, "
                "Linear or MultiStepDecay, or set optimisation.lr_schedule"
            )
        value = PADDLECLAS_SCHEDULES[value]
    if key == "image_size" and isinstance(value, list):
        # PaddleClas's image_shape is [channels, height, width]; the networks here take square RGB.
        if len(value) != 3 or value[0] != 3 or value[1] != value[2]:
            raise ConfigError(f"{where}: expected [3, size, size] (square RGB images), found {value!r}")
        value = value[1]
    if key == "pretrained" and isinstance(value, bool):
        value = "imagenet" if value else None  # PaddleClas: True downloads the ImageNet weights
    elif key == "pretrained" and isinstance(value, str) and value != "imagenet" and not value.endswith(".pdparams"):
        value += ".pdparams"  # PaddleClas names weights without the suffix (output/best_model)
    if key == "ema_decay":
        return {"ema": True, key: value}  # PaddleClas's EMA section switches the average on
    return {key: value}


def validate(config, source=None):
    """Check types, ranges and choices of every value; return the normalised dict.

    Args:
        config: a flat configuration.
        source: where the values came from (a file name), for messages.

    Raises:
        ConfigError: naming the key, the bad value and what was expected.
    """
    out = dict(config)
    for key, value in config.items():
        where = _where(source)
        if key == "augment" and isinstance(value, dict):
            bad = [k for k in value if k not in AUGMENT_KEYS]
            if bad or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
                raise ConfigError(f"augment = {value!r}{where}: expected none, flip, or a mapping of "
                                  f"{', '.join(AUGMENT_KEYS)} to numbers")
            out[key] = {k: float(v) for k, v in value.items()}
        elif key == "preprocess" and value is not None:
            from paddle_palm.data.transforms import check_method  # OpenCV: only when a config names one

            try:
                out[key] = check_method(value)
            except ConfigError as exc:
                raise ConfigError(f"preprocess = {value!r}{where}: {exc}") from None
        elif key in CHOICES and value is not None:
            text = str(value)
            if text not in CHOICES[key]:
                raise ConfigError(f"{key} = {value!r}{where}: expected one of {', '.join(CHOICES[key])}")
            out[key] = text
        elif key in _NUMBERS:
            kind, minimum, inclusive, nullable = _NUMBERS[key]
            if value is None:
                if not nullable:
                    raise ConfigError(f"{key}{where} must be set (a number)")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"{key} = {value!r}{where}: expected {'an integer' if kind is int else 'a number'}")
            value = kind(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{key} = {value!r}{where}: expected a finite number")
            if value < minimum or (not inclusive and value == minimum):
                bound = f">= {minimum}" if inclusive else f"> {minimum}"
                raise ConfigError(f"{key} = {value!r}{where}: expected a value {bound}")
            out[key] = value
        elif key in _BOOLS:
            if not isinstance(value, bool):
                raise ConfigError(f"{key} = {value!r}{where}: expected true or false")
        elif key in _PATHS:
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigError(f"{key} = {value!r}{where}: expected a name or a path")
            if value is not None:
                out[key] = os.fspath(value)
        elif key == "threshold_rule":
            out[key] = None if value is None else str(parse_threshold_rule(value))
        elif key == "operating_point":
            out[key] = _checked_operating_point(value, source)
        elif key == "milestones":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ConfigError(f"milestones = {value!r}{where}: expected a list of positive epoch numbers")
            out[key] = sorted(int(v) for v in value)
    for key in ("ema_decay", "threshold", "momentum"):
        if out.get(key) is not None and out[key] > 1:
            raise ConfigError(f"{key} = {out[key]!r}{_where(source)}: expected a value <= 1")
    if out.get("label_smoothing") is not None and out["label_smoothing"] >= 1:
        raise ConfigError(f"label_smoothing = {out['label_smoothing']!r}{_where(source)}: expected a value below 1 "
                          "(0.1 is usual)")
    return out


def _checked_operating_point(value, source):
    """The ``operating_point`` a finished training records (None, or threshold, temperature, rule)."""
    if value is None:
        return None
    ok = isinstance(value, dict) and set(value) <= {"threshold", "temperature", "rule"}
    number = (int, float)
    ok = ok and isinstance(value.get("threshold"), number) and 0.0 <= value["threshold"] <= 1.0
    ok = ok and isinstance(value.get("temperature", 1.0), number) and 0.0 < value.get("temperature", 1.0) < 1e6
    ok = ok and (value.get("rule") is None or isinstance(value.get("rule"), str))
    if not ok:
        raise ConfigError(f"operating_point = {value!r}{_where(source)}: expected threshold (in [0, 1]), "
                          "temperature (> 0) and rule, as tools/train.py records them")
    return {"threshold": float(value["threshold"]), "temperature": float(value.get("temperature", 1.0)),
            "rule": value.get("rule")}


def read_yaml(path):
    """Read a YAML configuration file into a flat, validated dict.

    Raises:
        MissingFileError: the file does not exist.
        ConfigError: not YAML, not a mapping, an unknown key or a bad value.
    """
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"configuration file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{path} is not a valid YAML file: {reason}") from None
    return validate(flatten(data, source=path), source=path)


def resolve(cli=None, config_file=None, base=None):
    """Resolve a run's configuration: defaults < recipe < ``config_file`` < ``cli``.

    Args:
        cli: the options given on the command line (only those the user gave).
        config_file: a YAML file (``--config``), or None.
        base: a resolved configuration to start from instead of the recipe (used
            by ``--resume``: the saved ``config.yaml``).

    Returns:
        dict: every key of :data:`BASE_DEFAULTS` plus ``classes``; ``num_classes``
        follows the loss (1 for ``bce``, 2 for ``ce``) unless it was given.

    Raises:
        ConfigError: no architecture, an inconsistent loss/num_classes, a bad value.
    """
    cli = validate(flatten(cli or {}, source="the command line"), source=None)
    from_file = read_yaml(config_file) if config_file else {}
    if base is not None:
        config = dict(BASE_DEFAULTS)
        config.update(base)
    else:
        arch = cli.get("arch") or from_file.get("arch")
        if not arch:
            from paddle_palm.models import list_models

            raise ConfigError("no architecture given: use --arch NAME (one of " + ", ".join(list_models()) + ")")
        config = recipe(arch)
    explicit = {}
    explicit.update(from_file)
    explicit.update(cli)
    if base is None and "loss" in explicit and "num_classes" not in explicit:
        config["num_classes"] = None  # follows the newly chosen loss
    config.update(explicit)
    return finalize(config)


def finalize(config):
    """Fill the derived values (``num_classes``, ``classes``) and check their consistency."""
    config = validate(config)
    loss, num_classes = config["loss"], config.get("num_classes")
    if config["dataset"] == "palm":
        if num_classes is None:
            num_classes = 1 if loss == "bce" else 2
        if loss == "bce" and num_classes != 1:
            raise ConfigError(f"loss bce trains one logit, but num_classes = {num_classes}; use --loss ce for {num_classes} classes")
        if loss == "ce" and num_classes != 2:
            raise ConfigError(f"loss ce on PALM needs num_classes = 2 (normal, pathologic myopia), got {num_classes}")
        config["classes"] = list(CLASS_NAMES_EN)
        config["classes_zh"] = list(CLASS_NAMES_ZH)
    else:
        if loss != "ce":
            raise ConfigError(f"dataset {config['dataset']} has 10 classes: it needs --loss ce, got {loss}")
        num_classes = num_classes or 10
        config["classes"] = list(DATASET_CLASSES[config["dataset"]])
        config.pop("classes_zh", None)
    config["num_classes"] = int(num_classes)
    _check_input(config)
    if config["lr_schedule"] == "multistep" and not config["milestones"]:
        raise ConfigError("lr_schedule multistep needs milestones (epochs at which the rate is multiplied by gamma)")
    _check_fine_tuning(config)
    return config


def _check_fine_tuning(config):
    """``pretrained``, ``backbone_lr_scale`` and ``freeze_epochs`` need a network with a weight mapping."""
    from paddle_palm.models import convert, pretrained

    pretrained.check_pretrained(config["arch"], config.get("pretrained"))
    if config.get("backbone_lr_scale", 1.0) != 1.0 or config.get("freeze_epochs", 0):
        if config["arch"] not in convert.SUPPORTED:
            raise ConfigError(f"backbone_lr_scale and freeze_epochs need a network whose classifier is known "
                              f"({', '.join(convert.SUPPORTED)}); {config['arch']} is not one")


def check_image_size(arch, size):
    """The image size must suit the architecture (SENet18's head is sized for 224 px, SPEC 2.1).

    Returns:
        ModelSpec: the registry entry of ``arch``.

    Raises:
        ConfigError: an unknown architecture, or a size it does not accept.
    """
    from paddle_palm.models import model_spec

    spec = model_spec(arch)
    if spec.fixed_input_size and size != spec.input_size:
        raise ConfigError(f"{arch} takes images of exactly {spec.input_size} px (its head is sized for it), "
                          f"got image_size {size}")
    if size < spec.min_input_size:
        raise ConfigError(f"image_size {size} is too small for {arch}: it needs at least {spec.min_input_size} px")
    return spec


def _check_input(config):
    """The image size and the data set's channels must suit the architecture."""
    spec = check_image_size(config["arch"], config["image_size"])
    channels = 1 if config["dataset"] == "mnist" else 3
    if spec.in_channels != channels:
        raise ConfigError(f"{config['arch']} takes {spec.in_channels}-channel images but the {config['dataset']} "
                          f"data set has {channels} channel(s); choose another --arch or --dataset")


DATASET_CLASSES = {
    "mnist": [str(i) for i in range(10)],
    # SPEC 1.5 (seed 003).
    "cifar10": ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def to_yaml(config):
    """The configuration as YAML text, grouped by :data:`SECTIONS` with a comment per group."""
    import yaml

    lines = ["# Resolved training configuration (paddle_palm tools/train.py).",
             "# Every key is a train.py option; python tools/train.py --config THIS_FILE repeats the run."]
    for section, keys in SECTIONS.items():
        part = {k: config.get(k) for k in keys}
        if section == "model":
            part["classes"] = config.get("classes")
            if config.get("classes_zh"):
                part["classes_zh"] = config["classes_zh"]
        lines.append(f"{section}:")
        text = yaml.safe_dump(part, sort_keys=False, allow_unicode=True, default_flow_style=None)
        lines.extend("  " + line for line in text.rstrip("\n").split("\n"))
    if config.get("operating_point"):
        lines.append("# The decision threshold (and temperature) chosen on the validation split at the end of training.")
        text = yaml.safe_dump({"operating_point": config["operating_point"]}, sort_keys=False)
        lines.extend(text.rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"


def save_run_config(config, run_dir):
    """Write ``config.yaml`` (atomically) into ``run_dir``; return its path."""
    path = os.path.join(os.fspath(run_dir), CONFIG_NAME)
    write_text_atomic(path, to_yaml(config))
    return path


def find_run_config(path):
    """The ``config.yaml`` that belongs to ``path`` (a run folder or a file inside one), or None."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    candidate = os.path.join(folder, CONFIG_NAME)
    return candidate if os.path.isfile(candidate) else None


def load_run_config(path, required=True):
    """Read the run configuration beside a weights file or inside a run folder.

    This is how evaluation, prediction and export rebuild the trained network
    (SPEC 5: they read ``config.yaml`` beside the weights and let flags override it).

    Args:
        path: a run folder, a weights file (``runs/x/best_model.pdparams``) or any
            file inside a run folder, or a ``config.yaml`` itself.
        required: when False, a missing ``config.yaml`` gives ``{}`` instead of an error.

    Returns:
        dict: the flat configuration, with at least ``arch``, ``num_classes``,
        ``image_size``, ``preprocess``, ``loss`` and ``classes`` (plus
        ``classes_zh`` for PALM and every other training setting).

    Raises:
        MissingFileError: there is no ``config.yaml`` there (and ``required``).
        ConfigError: the file is not valid YAML, names no architecture, or holds bad values.
    """
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.basename(path).endswith((".yaml", ".yml")):
        found = path
    else:
        found = find_run_config(path)
    if found is None:
        if not required:
            return {}
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        raise MissingFileError(f"no {CONFIG_NAME} in {folder} (expected the run folder written by tools/train.py)")
    data = read_yaml(found)
    if not data.get("arch"):
        raise ConfigError(f"{found} names no architecture (key 'arch')")
    config = recipe(data["arch"])
    config.update(data)
    if "num_classes" not in data and "loss" in data:
        config["num_classes"] = None
    return finalize(config)


def resolve_resume(run_dir, cli=None, config_file=None):
    """The configuration of a resumed run: its saved ``config.yaml`` < ``config_file`` < ``cli``.

    Only settings that cannot change the computation already done may differ
    (``epochs``, ``early_stop``, ``num_workers``, ``device``, ...); changing one of
    :data:`RESUME_FIXED` is refused, because the saved checkpoint would not fit or the
    continued run could no longer equal an uninterrupted one.

    Raises:
        MissingFileError: ``run_dir`` has no ``config.yaml``.
        ConfigError: a fixed setting was changed.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise MissingFileError(f"--resume folder not found: {run_dir}")
    if not os.path.isfile(os.path.join(run_dir, CONFIG_NAME)):
        raise CheckpointError(f"nothing to resume in {run_dir}: no {CONFIG_NAME} "
                              "(expected a run folder written by tools/train.py)")
    saved = load_run_config(run_dir)
    config = resolve(cli, config_file, base=saved)
    for key in RESUME_FIXED:
        if config.get(key) != saved.get(key):
            raise ConfigError(f"{key} cannot change when resuming {run_dir}: the run used {saved.get(key)!r}, "
                              f"got {config.get(key)!r}")
    config["output_dir"] = run_dir
    return config
