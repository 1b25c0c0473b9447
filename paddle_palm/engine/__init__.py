"""The training and evaluation engine behind ``tools/*.py`` (the PaddleClas layout, STYLE.md).

* :mod:`paddle_palm.engine.config`     - recipes (SPEC 2), YAML, the resolved ``config.yaml``;
* :mod:`paddle_palm.engine.checkpoint` - crash-safe checkpoints and :func:`load_weights`;
* :mod:`paddle_palm.engine.optim`      - optimizers, learning-rate schedules, EMA;
* :mod:`paddle_palm.engine.loaders`    - datasets, reproducible per-epoch orders, batches;
* :mod:`paddle_palm.engine.run_folder` - the output folder's lock, log and clean-up;
* :mod:`paddle_palm.engine.recorder`   - the run's history, loss curve, plots and VisualDL;
* :mod:`paddle_palm.engine.trainer`    - the training loop (:func:`train`);
* :mod:`paddle_palm.engine.evaluate`   - validation metrics;
* :mod:`paddle_palm.engine.model_settings` - a trained model rebuilt from its weights and config.yaml;
* :mod:`paddle_palm.engine.predictors` - checkpoint and exported-model predictors;
* :mod:`paddle_palm.engine.predict`    - the prediction loop over files and folders;
* :mod:`paddle_palm.engine.reports`    - prediction and evaluation CSV files and tables;
* :mod:`paddle_palm.engine.losses`     - the training losses;
* :mod:`paddle_palm.engine.export_record` - the exported folder, its preprocess.json and checks;
* :mod:`paddle_palm.engine.export`     - Paddle Inference models.

Submodules import Paddle only when used, so ``import paddle_palm.engine`` is cheap.
"""

import importlib

_LAZY = {
    "load_weights": "paddle_palm.engine.checkpoint",
    "load_run_config": "paddle_palm.engine.config",
    "train": "paddle_palm.engine.trainer",
    "Trainer": "paddle_palm.engine.trainer",
    "evaluate": "paddle_palm.engine.evaluate",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
