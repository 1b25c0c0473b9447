"""The training loop behind ``tools/train.py`` (SPEC 5, issue 5).

:func:`train` takes a resolved configuration (:mod:`paddle_palm.engine.config`)
and runs it: it locks the output folder, builds the data, the network, the
optimizer and the schedule, trains with a progress bar per epoch, validates after
every epoch and writes the run folder:

====================  =====================================================================
``train.log``         everything printed, with times
``config.yaml``       the resolved settings (``--config`` repeats the run)
``latest.*``          ``.pdparams``, ``.pdopt``, ``.pdstates`` (+ ``.pdema``) after every epoch
``best_model.*``      the weights with the best validation metric (``.pdparams``, ``.pdstates``)
``history.csv``       one row per epoch: ``epoch,train_loss,val_loss,val_acc,val_auc,lr,seconds,...``
``loss.csv``          the training loss every ``log_interval`` (10) iterations, seed 001's record
``loss.png``          seed 001's plot of it ("train loss" against "iter")
``history.png``       loss, accuracy and AUC per epoch
``vdl/``              VisualDL logs, when ``visualdl`` is installed
====================  =====================================================================

Who does what: :class:`~paddle_palm.engine.run_folder.RunFolder` holds the folder (lock,
log, clean-up), :class:`~paddle_palm.engine.recorder.RunRecorder` the records (CSV files,
plots, VisualDL), :class:`~paddle_palm.runtime.ExecutionPath` how the steps run (threads,
denormals, oneDNN convolutions, channels-last stages; restored when the run ends), and
:class:`Trainer` the loop itself.

Exact resume: every random draw of epoch ``e`` (the shuffle, the flips, dropout)
comes from generators seeded by ``(seed, e)`` at the start of the epoch, never from a
state carried over from earlier epochs.  Together with the optimizer state, the
plateau state and the EMA saved in ``latest.*``, a run resumed after epoch ``k``
performs exactly the computations of an uninterrupted run, so it ends with the same
weights bit for bit (on the same machine and thread count).

Data parallel: under ``python -m paddle.distributed.launch`` every process trains
on its own shard of each epoch's shuffled order (a distributed batch sampler), the
network is wrapped in ``paddle.DataParallel``, every process validates on the whole
validation set (so all take the same early-stopping decision) and only rank 0
writes files.

Paddle (and the models, which need it) are imported inside the functions that use
them: importing Paddle takes seconds, and the tools install their signal handlers first.
"""

import math
import os
import random
import sys
import time

import numpy as np

from paddle_palm import compat, ops
from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.engine import config as cfg
from paddle_palm.engine import device as devices
from paddle_palm.engine.evaluate import evaluate
from paddle_palm.engine.loaders import (
    EpochBatchSampler,
    MainThreadLoader,
    build_datasets,
    check_num_workers,
    epoch_seed,
    iterate_batches,
    recording_worker_errors,
    worker_init_function,
)
from paddle_palm.engine.losses import compute_loss, mixup_plan
from paddle_palm.engine.optim import FineTuning, LearningRateSchedule, ModelEMA, build_optimizer
from paddle_palm.engine.recorder import HISTORY_FIELDS, RunRecorder
from paddle_palm.engine.run_folder import RunFolder, default_output_dir
from paddle_palm.errors import ConfigError, DataError, TrainingError
from paddle_palm.operating_point import describe_operating_point, fit_operating_point, operating_point_record
from paddle_palm.progress import progress_bar
from paddle_palm.runtime import ExecutionPath

__all__ = ["HISTORY_FIELDS", "METRIC_MODES", "Trainer", "compute_loss", "count_correct", "make_train_step", "train"]

#: Paddle warns at every BatchNorm layer's first training call that it tracks running statistics.
_PADDLE_NOISE = ("When training, we now always track global mean",)

#: Which way each ``--metric`` improves.
METRIC_MODES = {"val_acc": "max", "val_auc": "max", "val_loss": "min"}


# --------------------------------------------------------------------------- loss and the train step


def count_correct(logits, labels, loss):
    """Number of right answers in a batch (threshold 0.5 on the sigmoid, or the arg-max).

    ``labels`` is a numpy array of class indices, one per image.
    """
    out = logits.numpy()
    y = np.asarray(labels).reshape(-1)
    pred = (out.reshape(-1) > 0).astype(np.int64) if loss == "bce" else out.argmax(axis=1)
    return int((pred == y).sum())


def make_train_step(model, loss, amp=None, label_smoothing=0.0):
    """The forward pass and loss of one batch: ``step(images, labels, mix=None) -> (loss, logits)``.

    Plain dynamic graph: on Paddle 3.3 CPUs the fastest correct way (``paddle.jit.to_static``
    measured no faster and its oneDNN variants crash, ``docs/BENCHMARKS.md`` section 2).

    Args:
        model: the network (in train mode).
        loss: ``"bce"`` or ``"ce"``.
        amp: None, or ``"bfloat16"`` / ``"float16"`` for mixed precision (O1 auto-cast).
        label_smoothing: the targets' smoothing (:func:`~paddle_palm.engine.losses.compute_loss`).

    ``mix``, when given, is ``(lam, perm)`` (:func:`~paddle_palm.engine.losses.mixup_plan`): the
    network sees ``lam * images + (1 - lam) * images[perm]`` and the loss is the same mixture of
    the losses against ``labels`` and ``labels[perm]``.
    """
    import paddle

    def step(images, labels, mix=None):
        if mix is not None:
            lam, perm = mix
            perm = paddle.to_tensor(perm, dtype="int64")
            images = images * lam + paddle.gather(images, perm) * (1.0 - lam)
        if amp:
            with paddle.amp.auto_cast(enable=True, dtype=amp, level="O1"):
                logits = model(images)
        else:
            logits = model(images)
        value = compute_loss(logits, labels, loss, label_smoothing=label_smoothing)
        if mix is not None:
            partner = compute_loss(logits, paddle.gather(labels.reshape([-1]), perm), loss, label_smoothing=label_smoothing)
            value = value * lam + partner * (1.0 - lam)
        return value, logits

    return step


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One training run of a resolved configuration.

    Use :func:`train` (which also holds the run folder); the methods below are the steps
    of :meth:`fit`, each small enough to read on its own.  As a context manager it calls
    :meth:`close` on exit: the records and the execution path are closed and restored.

    Args:
        config: a resolved configuration (:func:`paddle_palm.engine.config.resolve`).
        run_dir: the output folder (created by :func:`train`).
        log: a callable taking one message.
        resume: when True, continue from ``run_dir/latest.*``.
    """

    def __init__(self, config, run_dir, log, resume=False):
        self.config = config
        self.run_dir = run_dir
        self.log = log
        self.resume = resume
        self.rank, self.world_size = _distributed_rank_and_size()
        self.is_writer = self.rank == 0
        self.recorder = RunRecorder(run_dir, writer=self.is_writer, visualdl=config["visualdl"], log=log)
        self.execution = None
        self.start_epoch = 0
        self.global_step = 0
        self.best = {"metric": config["metric"], "value": None, "epoch": None, "val_loss": None}
        self.best_validation = None  # (labels, PM probabilities) of the best epoch, for the operating point
        self.epochs_without_improvement = 0

    @property
    def history(self):
        """The rows of ``history.csv`` so far (:attr:`RunRecorder.history`)."""
        return self.recorder.history

    # ---- setup -------------------------------------------------------------------------------

    def setup(self):
        """Runtime, data, network, optimizer, schedule, EMA; then the saved state when resuming."""
        import paddle

        c = self.config
        # --amp on a CPU: the operator's convolutions in bf16 where the CPU has them (ops.bf16_training_note).
        self.execution = ExecutionPath(fast=c["fast"], device=c["device"], threads=c["threads"],
                                       channels_last=True, log=self.log, bf16=bool(c["amp"]))
        self.runtime = self.execution.setup()
        self.device = self.runtime["device"]
        self.train_set, self.valid_set, c["data_dir"] = build_datasets(c, self.run_dir, self.log)
        self._seed_everything(c["seed"])
        self.model = self._build_model()
        self.train_sampler = EpochBatchSampler(len(self.train_set), c["batch_size"], seed=c["seed"], shuffle=True,
                                               rank=self.rank, world_size=self.world_size)
        self.train_loader = self._loader(self.train_set, self.train_sampler)
        self.valid_loader = self._loader(self.valid_set, EpochBatchSampler(len(self.valid_set), c["batch_size"], shuffle=False))
        self.finetune = FineTuning.from_config(c, self.model)
        self.optimizer = build_optimizer(c, self.finetune.parameters() if self.finetune else self.model.parameters())
        self.schedule = LearningRateSchedule.from_config(c, steps_per_epoch=len(self.train_sampler))
        self.ema = ModelEMA(self.model, c["ema_decay"]) if c["ema"] else None
        self.amp_plan = _amp_plan(c, self.device)
        self.amp = self.amp_plan.dtype if self.amp_plan else None
        self.scaler = paddle.amp.GradScaler() if (self.amp_plan and self.amp_plan.loss_scaling) else None
        if self.resume:
            self._restore()
        self.net = paddle.DataParallel(self.model) if self.world_size > 1 else self.model
        self.execution.apply(self.model)
        # Paddle's auto-cast does nothing on a CPU place (it warns at every step): on the CPU the
        # operator's convolutions are bf16 instead (the execution path above), or it trains in float32.
        self.train_step = make_train_step(self.net, c["loss"], amp=self.amp if self.device != "cpu" else None,
                                          label_smoothing=c["label_smoothing"])
        self.recorder.open()

    def _seed_everything(self, seed):
        import paddle

        random.seed(seed)
        np.random.seed(seed)
        paddle.seed(seed)

    def _build_model(self):
        from paddle_palm.models import build_model

        c = self.config
        model = build_model(c["arch"], num_classes=c["num_classes"])
        if c.get("pretrained") and not self.resume:  # a resumed run takes every weight from its checkpoint
            from paddle_palm.models.pretrained import load_pretrained

            load_pretrained(model, c["arch"], c["pretrained"], c["num_classes"], log=self.log)
        return model

    def _loader(self, dataset, sampler):
        import paddle

        if self.config["num_workers"] == 0:
            return MainThreadLoader(dataset, sampler)
        compat.set_dataloader_pin_memory(devices.pin_memory(self.device, self.config["num_workers"]))
        return paddle.io.DataLoader(dataset, batch_sampler=sampler,
                                    num_workers=check_num_workers(self.config["num_workers"]),
                                    use_shared_memory=False, worker_init_fn=worker_init_function())

    # ---- checkpoints ---------------------------------------------------------------------------

    def _states(self, epoch):
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "arch": self.config["arch"],
            "best": dict(self.best),
            "epochs_without_improvement": self.epochs_without_improvement,
            "schedule": self.schedule.state_dict(),
            "rng": {
                # Every draw of epoch e uses generators seeded from (seed, e): the states of the
                # next epoch are fully given by these two numbers (see the module docstring).
                "seed": self.config["seed"],
                "next_epoch": epoch,
                "scheme": "per-epoch seeds: numpy SeedSequence([seed, epoch, stream])",
                "python": _python_rng_state(),
                "numpy": _numpy_rng_state(),
            },
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def save_latest(self, epoch):
        """Write ``latest.*`` (weights, optimizer, states, EMA) crash-safely."""
        extra = {".pdema": self.ema.state_dict()} if self.ema else None
        ckpt.save_checkpoint(self.run_dir, "latest", self.model, self.optimizer, self._states(epoch), extra=extra)

    def save_best(self, epoch):
        """Write ``best_model.pdparams`` (the EMA weights when ``--ema``) and its states."""
        states = {"epoch": epoch, "arch": self.config["arch"], "best": dict(self.best)}
        if self.ema:
            with self.ema.swapped_into(self.model):
                ckpt.save_checkpoint(self.run_dir, "best_model", self.model, None, states)
        else:
            ckpt.save_checkpoint(self.run_dir, "best_model", self.model, None, states)

    def _restore(self):
        states = ckpt.verify_checkpoint(self.run_dir, "latest", recover=self.is_writer)
        ckpt.require_states(states, ("epoch", "global_step", "best"), os.path.join(self.run_dir, "latest.pdstates"))
        if states.get("arch") not in (None, self.config["arch"]):
            raise ConfigError(f"{self.run_dir} holds a {states.get('arch')} run, not {self.config['arch']}")
        ckpt.load_weights(self.model, os.path.join(self.run_dir, "latest.pdparams"), arch=self.config["arch"])
        opt_path = os.path.join(self.run_dir, "latest.pdopt")
        opt_state = ckpt.load_state_file(opt_path, what="optimizer state")
        try:
            ckpt.restore_optimizer_state(self.model, self.optimizer, opt_state)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # content of another kind
            raise ckpt.CheckpointError(f"{opt_path} does not hold this optimizer's state ({type(exc).__name__})") from None
        if self.ema:
            ema_path = os.path.join(self.run_dir, "latest.pdema")
            if not os.path.isfile(ema_path):
                raise ConfigError(f"{self.run_dir} was trained without --ema; resume it without --ema")
            ema_state = ckpt.load_state_file(ema_path, what="EMA state")
            try:
                self.ema.set_state_dict(ema_state)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ckpt.CheckpointError(f"{ema_path} does not hold EMA weights ({type(exc).__name__})") from None
        self.start_epoch = int(states["epoch"])
        # A finished run resumed at its own length with --threshold-rule / --calibrate: nothing to
        # train, only the operating point of its best_model to choose (runs trained before it existed).
        only_operating_point = self.start_epoch == self.config["epochs"] and (
            self.config["threshold_rule"] is not None or self.config["calibrate"])
        if self.start_epoch >= self.config["epochs"] and not only_operating_point:
            raise ConfigError(f"{self.run_dir} has already trained {self.start_epoch} epochs; "
                              f"give --epochs N with N > {self.start_epoch} to continue it (or --epochs "
                              f"{self.start_epoch} with --threshold-rule to choose its operating point)")
        self.global_step = int(states["global_step"])
        self.best = dict(states["best"])
        if self.best.get("metric") != self.config["metric"]:
            self.log(f"best model now chosen by {self.config['metric']} (was {self.best.get('metric')}): "
                     "the next epoch starts a new best")
            self.best = {"metric": self.config["metric"], "value": None, "epoch": None, "val_loss": None}
        self.epochs_without_improvement = int(states.get("epochs_without_improvement", 0))
        self.schedule.set_state_dict(states.get("schedule", {}))
        rng = states.get("rng", {})
        _set_python_rng_state(rng.get("python"))
        _set_numpy_rng_state(rng.get("numpy"))
        self.recorder.resume(self.start_epoch, self.global_step)
        self.log(f"resuming {self.run_dir} after epoch {self.start_epoch} (global step {self.global_step}); "
                 f"training to epoch {self.config['epochs']}")

    # ---- the loop --------------------------------------------------------------------------------

    def fit(self):
        """Train every remaining epoch; return a summary dict (best metric, epochs run, run folder)."""
        c = self.config
        self._describe()
        stopped_early = False
        epoch = self.start_epoch
        for epoch in range(self.start_epoch + 1, c["epochs"] + 1):
            started = time.perf_counter()
            train_stats = self.train_one_epoch(epoch)
            self._check_weights_finite(epoch, train_stats["lr"])
            val = self.validate()
            self.schedule.end_epoch(val["loss"])
            improved = self._update_best(val, epoch)
            row = self._history_row(epoch, train_stats, val, time.perf_counter() - started, improved)
            self.recorder.add_epoch(row)
            if improved:
                self.best_validation = (val.get("labels"), val.get("probabilities"))
            if self.is_writer:
                if improved:
                    self.save_best(epoch)
                self.save_latest(epoch)
                if self.resume and epoch == self.start_epoch + 1:
                    cfg.save_run_config(self.config, self.run_dir)
                self.recorder.write()
            self._report_epoch(row, val)
            if c["early_stop"] and self.epochs_without_improvement >= c["early_stop"]:
                self.log(f"early stop: {c['metric']} has not improved for {c['early_stop']} epochs "
                         f"(best {self.best['value']:.4f} at epoch {self.best['epoch']})")
                stopped_early = True
                break
        return {
            "run_dir": self.run_dir,
            "epochs": epoch,
            "stopped_early": stopped_early,
            "best_metric": self.best["metric"],
            "best_value": self.best["value"],
            "best_epoch": self.best["epoch"],
            "history": self.history,
            "rank": self.rank,
        }

    def choose_operating_point(self):
        """Fit the decision threshold (and temperature) of ``best_model`` on the validation split.

        The rule is ``threshold_rule`` (or the fixed ``threshold``); the result goes into
        ``best_model.pdstates`` and ``config.yaml`` (:mod:`paddle_palm.operating_point`).  PALM
        runs only (two classes); returns the record, or None when there is nothing to fit.
        """
        c = self.config
        if not self.is_writer or c["dataset"] != "palm" or self.best["epoch"] is None:
            return None
        labels, probs = self.best_validation or self._validate_best_model()
        rule = c["threshold_rule"] or f"fixed:{c['threshold']}"
        try:
            record = operating_point_record(fit_operating_point(labels, probs, rule, calibrate=c["calibrate"]))
        except DataError as exc:
            self.log(f"operating point not chosen ({exc}); the threshold stays {c['threshold']:g}")
            return None
        ckpt.record_operating_point(self.run_dir, "best_model", record)
        self.config["operating_point"] = {key: record[key] for key in ("threshold", "temperature", "rule")}
        cfg.save_run_config(self.config, self.run_dir)
        self.log(describe_operating_point(record))
        return record

    def _validate_best_model(self):
        """Labels and PM probabilities of ``best_model`` (when a resumed run found it already written)."""
        ckpt.load_weights(self.model, os.path.join(self.run_dir, "best_model.pdparams"), arch=self.config["arch"])
        with recording_worker_errors() as failures:
            val = evaluate(self.model, iterate_batches(self.valid_loader, failures), loss=self.config["loss"])
        return val["labels"], val["probabilities"]

    def train_one_epoch(self, epoch):
        """One pass over this process's shard of the shuffled training set."""
        import paddle

        c = self.config
        self.model.train()
        if self.finetune:
            self.finetune.start_epoch(epoch, self.log)
        paddle.seed(epoch_seed(c["seed"], epoch - 1, 2))  # dropout and any other paddle draw of this epoch
        self.train_sampler.set_epoch(epoch - 1)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch - 1)  # the augmentation of item i is seeded by (seed, epoch, i)
        loss_sum, correct, seen, started = 0.0, 0, 0, time.perf_counter()
        with recording_worker_errors() as failures:
            bar = progress_bar(iterate_batches(self.train_loader, failures), total=len(self.train_sampler),
                       desc=f"epoch {epoch}/{c['epochs']}", disable=not (c["progress"] and self.is_writer),
                       leave=False, dynamic_ncols=True, file=sys.stderr)
            for batch_index, (images, labels) in enumerate(bar):
                lr = self.schedule.lr(self.global_step)
                value, right = self._train_batch(images, labels, lr, epoch, batch_index)
                n = int(labels.shape[0])
                correct += right
                loss_sum += value * n
                seen += n
                ips = seen * self.world_size / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", img_s=f"{ips:.1f}",
                                lr=f"{lr:.2e}")
            bar.close()
        seconds = time.perf_counter() - started
        if self.world_size > 1:
            correct, seen = self._sum_over_processes(correct, seen)
            seen_here = seen // self.world_size
        else:
            seen_here = seen
        return {"loss": loss_sum / max(seen_here, 1), "acc": correct / max(seen, 1),
                "images_per_second": seen / max(seconds, 1e-9), "lr": lr}

    def _train_batch(self, images, labels, lr, epoch, batch_index):
        """Update on one batch at learning rate ``lr``; return its loss (a float) and right answers."""
        self.optimizer.set_lr(lr)
        mix = None
        if self.config["mixup"]:
            mix = mixup_plan(self.config["mixup"], int(labels.shape[0]), self.config["seed"], self.global_step, self.rank)
        loss, logits = self._update(images, labels, mix)
        value = self._loss_value(loss)
        if not math.isfinite(value):
            raise TrainingError(
                f"the training loss became {value} at epoch {epoch}, iteration {batch_index + 1} "
                f"(learning rate {lr:g}); training stopped; {self._last_good()}; try a smaller --lr"
            )
        counted = labels.reshape([-1]).numpy()
        if mix is not None and mix[0] < 0.5:  # a mixed image counts as right for the label that dominates it
            counted = counted[mix[1]]
        right = count_correct(logits, counted, self.config["loss"])
        self.global_step += 1
        if self.global_step % self.config["log_interval"] == 0:
            self.recorder.add_loss(self.global_step, value, epoch)
        return value, right

    def _sum_over_processes(self, *counts):
        import paddle
        import paddle.distributed as dist

        total = paddle.to_tensor(np.array(counts, dtype=np.int64))
        dist.all_reduce(total)
        return [int(v) for v in total.numpy()]

    def _check_weights_finite(self, epoch, lr):
        """Stop before validating or saving when an update left NaN or inf in the weights."""
        import paddle

        for name, value in self.model.state_dict().items():
            if value.dtype in (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16):
                if not bool(paddle.isfinite(value).all()):
                    raise TrainingError(
                        f"training diverged at epoch {epoch}: the weights are no longer finite ({name}; learning "
                        f"rate {lr:g}); {self._last_good()}; try a smaller --lr"
                    )

    def _last_good(self):
        last = self.last_saved_epoch()
        path = os.path.join(self.run_dir, "latest.pdparams")
        return f"the last good checkpoint is {path} (epoch {last})" if last else "no checkpoint was saved yet"

    def last_saved_epoch(self):
        """The last epoch with a checkpoint on disk (0 when none)."""
        return self.recorder.last_epoch()

    def _update(self, images, labels, mix=None):
        """Forward, backward and the optimizer update of one batch (mixed when ``mix`` is given).

        Returns:
            (paddle.Tensor, paddle.Tensor): the loss and the batch's logits (detached).
        """
        loss, logits = self.train_step(images, labels, mix)
        if self.scaler is not None:
            scaled = self.scaler.scale(loss)
            scaled.backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        if self.ema:
            self.ema.update(self.model)
        return loss, logits.detach()

    def _loss_value(self, loss):
        """The batch loss as a float (averaged over the processes when distributed)."""
        if self.world_size > 1:
            import paddle.distributed as dist

            total = loss.detach().clone()
            dist.all_reduce(total)
            return float(total) / self.world_size
        return float(loss)

    def validate(self):
        """Validation metrics (with the EMA weights when ``--ema``)."""
        c = self.config
        with recording_worker_errors() as failures:
            batches = iterate_batches(self.valid_loader, failures)
            if self.ema:
                with self.ema.swapped_into(self.model):
                    return evaluate(self.model, batches, loss=c["loss"], threshold=c["threshold"])
            return evaluate(self.model, batches, loss=c["loss"], threshold=c["threshold"])

    def _update_best(self, val, epoch):
        """Record epoch ``epoch`` as the best when its ``--metric`` is better.

        Accuracy on a small validation set often ties (0.96 for many epochs); a tie
        then goes to the epoch with the lower validation loss, so ``best_model`` is
        not simply the first epoch that reached the plateau.  NaN never wins.
        """
        key = {"val_acc": "accuracy", "val_auc": "auc", "val_loss": "loss"}[self.config["metric"]]
        value, loss = float(val[key]), float(val["loss"])
        best, best_loss = self.best["value"], self.best.get("val_loss")
        sign = 1.0 if METRIC_MODES[self.config["metric"]] == "max" else -1.0
        if best is None or not math.isfinite(best):
            better = best is None or math.isfinite(value)
        elif not math.isfinite(value):
            better = False
        elif sign * (value - best) > 0:
            better = True
        else:
            tie_broken = (key != "loss" and value == best and math.isfinite(loss)
                          and (best_loss is None or loss < best_loss))
            better = tie_broken
        if better:
            self.best.update(value=value, epoch=epoch, val_loss=loss)
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return better

    def _history_row(self, epoch, train, val, seconds, improved):
        return {
            "epoch": epoch, "train_loss": _fmt(train["loss"]), "val_loss": _fmt(float(val["loss"])),
            "val_acc": _fmt(float(val["accuracy"])), "val_auc": _fmt(float(val["auc"])), "lr": _fmt(train["lr"]),
            "seconds": f"{seconds:.2f}", "train_acc": _fmt(train["acc"]),
            "val_sensitivity": _fmt(float(val["sensitivity"])), "val_specificity": _fmt(float(val["specificity"])),
            "images_per_second": f"{train['images_per_second']:.2f}", "best": int(bool(improved)),
        }

    def _describe(self):
        c = self.config
        n_params = sum(int(np.prod(p.shape)) for p in self.model.parameters())
        self.log(f"training {c['arch']} ({n_params:,} parameters, {c['num_classes']} output(s), loss {c['loss']}) "
                 f"on {len(self.train_set)} training / {len(self.valid_set)} validation images from {c['data_dir']}")
        sched = c["lr_schedule"] + (f" to {c['end_lr']:g}" if c["lr_schedule"] in ("polynomial", "cosine") else "")
        self.log(f"{c['optimizer']} lr {c['lr']:g} ({sched}), batch {c['batch_size']}, {c['epochs']} epoch{'s' if c['epochs'] > 1 else ''}, "
                 f"{c['image_size']} px, preprocessing {c['preprocess']}, augment {c['augment']}, seed {c['seed']}, "
                 f"device {self.device}{self._execution()}" + (f", {self.world_size} processes" if self.world_size > 1 else "")
                 + (f", amp {self.amp}" if self.amp else "") + (", EMA" if self.ema else "")
                 + (f", {self.finetune.describe()}" if self.finetune else ""))
        if self.amp and self.device == "cpu":
            self.log(ops.bf16_training_note(enabled=bool(self.runtime.get("bf16"))))
        self.log(f"outputs in {self.run_dir}")

    def _execution(self):
        """How the steps run, for the log: " (fast path: 2 threads, oneDNN convolutions)" or " (plain dygraph)"."""
        info = self.runtime
        if self.device != "cpu":
            return ""
        if not info.get("fast"):
            return " (plain dygraph)"
        conv = "Paddle convolutions"
        if info.get("conv") == "onednn":
            conv = "oneDNN bf16 convolutions" if info.get("bf16") else "oneDNN convolutions"
        threads = info.get("threads")
        return f" (fast path: {threads} thread{'s' if threads != 1 else ''}, {conv})"

    def _report_epoch(self, row, val):
        mark = " *best*" if row["best"] else ""
        self.log(f"epoch {row['epoch']}/{self.config['epochs']}: train loss {float(row['train_loss']):.4f} "
                 f"acc {float(row['train_acc']):.3f} | val loss {float(row['val_loss']):.4f} "
                 f"acc {float(row['val_acc']):.4f} auc {float(row['val_auc']):.4f} "
                 f"sens {float(row['val_sensitivity']):.3f} spec {float(row['val_specificity']):.3f} | "
                 f"lr {float(row['lr']):.3g} | {float(row['images_per_second']):.1f} img/s, {row['seconds']} s{mark}")

    def close(self):
        """Close the records and restore the execution path (threads, denormals, the model's layers)."""
        self.recorder.close()
        if self.execution is not None:
            self.execution.restore()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- entry point


def train(config, resume_dir=None, echo=True):
    """Run a training configuration end to end and return its summary.

    Args:
        config: a resolved configuration (:func:`paddle_palm.engine.config.resolve`).
        resume_dir: continue the run in this folder (its ``latest.*`` checkpoint).
        echo: print the log to the console as well as to ``train.log``.

    Returns:
        dict: ``run_dir``, ``epochs`` (the last epoch trained), ``stopped_early``,
        ``best_metric``, ``best_value``, ``best_epoch`` and ``history`` (rows of ``history.csv``).

    Raises:
        TrainingError: the folder is locked by another training, or the loss became NaN
            (the checkpoints of the last finished epoch are kept).
        ConfigError, DataError, MissingFileError, CheckpointError: bad settings or inputs.
    """
    config = dict(config)
    run_dir = os.fspath(resume_dir or config.get("output_dir") or default_output_dir(config["arch"]))
    config["output_dir"] = run_dir
    rank, world_size = _distributed_rank_and_size()
    with RunFolder(run_dir, writer=rank == 0, echo=echo, quiet=_PADDLE_NOISE) as folder:
        _prepare_run_folder(folder, bool(resume_dir), world_size)
        with Trainer(config, run_dir, folder.log, resume=bool(resume_dir)) as trainer:
            trainer.setup()
            if rank == 0 and not resume_dir:
                # A resumed run rewrites config.yaml together with its next checkpoint, so that a failed
                # resume leaves the folder as it was.
                cfg.save_run_config(trainer.config, run_dir)
            summary = trainer.fit()
            summary["operating_point"] = trainer.choose_operating_point()
            folder.log(f"done: best {summary['best_metric']} {summary['best_value']:.4f} at epoch "
                       f"{summary['best_epoch']}; weights in {os.path.join(run_dir, 'best_model.pdparams')}")
        return summary


def _prepare_run_folder(folder, resume, world_size):
    """Check a locked run folder before training in it, and clear what a killed run left half-written.

    Raises:
        ConfigError: a new run asked for in a folder that already holds one.
        CheckpointError: the checkpoint to resume is damaged.
    """
    if resume and folder.writer:
        # Under the lock: finishing an interrupted commit must not race a live training.
        ckpt.verify_checkpoint(folder.path, "latest")
    if world_size > 1:
        import paddle.distributed as dist

        dist.barrier()  # the other processes read the checkpoint only after rank 0 has checked it
    if not folder.writer:
        return
    if not resume and ckpt.checkpoint_exists(folder.path, "latest"):
        raise ConfigError(f"{folder.path} already holds a training run (latest.pdstates); "
                          "continue it with --resume DIR or choose another --output-dir")
    folder.remove_partial_writes()


# --------------------------------------------------------------------------- small helpers


def _distributed_rank_and_size():
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)
    if world <= 1:
        return 0, 1
    import paddle.distributed as dist

    if not dist.is_initialized():
        dist.init_parallel_env()
    return dist.get_rank(), dist.get_world_size()


def _amp_plan(config, device):
    """The run's mixed precision (:func:`paddle_palm.engine.device.amp_plan`), or None when off.

    On a GPU: float16 O1 with dynamic loss scaling (``paddle.amp.GradScaler``), or bfloat16
    on Ampere and newer with ``--amp-dtype bfloat16``.  On a CPU: bfloat16 auto-cast, where
    Paddle 3.3's O1 keeps convolutions in float32 (``docs/BENCHMARKS.md``): little changes.
    """
    capability = None
    if config["amp"] and devices.is_gpu(device):
        capability = compat.cuda_compute_capability(int(str(device).partition(":")[2] or 0))
    return devices.amp_plan(config["amp"], config.get("amp_dtype", "auto"), device, capability)


def _python_rng_state():
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]


def _set_python_rng_state(state):
    if state:
        random.setstate((state[0], tuple(state[1]), state[2]))


def _numpy_rng_state():
    import base64

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, base64.b64encode(keys.astype("<u4").tobytes()).decode("ascii"), int(pos), int(has_gauss), float(cached)]


def _set_numpy_rng_state(state):
    import base64

    if state:
        keys = np.frombuffer(base64.b64decode(state[1]), dtype="<u4").astype(np.uint32)
        np.random.set_state((state[0], keys, state[2], state[3], state[4]))
