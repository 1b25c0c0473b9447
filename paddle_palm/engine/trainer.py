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
"""

import math
import os
import random
import shutil
import sys
import time
import warnings

import numpy as np

from paddle_palm.engine import checkpoint as ckpt
from paddle_palm.engine import config as cfg
from paddle_palm.engine.loaders import (
    EpochBatchSampler,
    MainThreadLoader,
    build_datasets,
    check_num_workers,
    epoch_seed,
    iterate_batches,
    worker_init_function,
)
from paddle_palm.engine.optim import LearningRateSchedule, ModelEMA, build_optimizer
from paddle_palm.engine.run_folder import (
    OutputLock,
    RunLog,
    default_output_dir,
    read_csv,
    remove_stale_temporaries,
    write_csv,
)
from paddle_palm.errors import ConfigError, TrainingError

HISTORY_FIELDS = [
    "epoch", "train_loss", "val_loss", "val_acc", "val_auc", "lr", "seconds",
    "train_acc", "val_sensitivity", "val_specificity", "images_per_second", "best",
]

#: Which way each ``--metric`` improves.
METRIC_MODES = {"val_acc": "max", "val_auc": "max", "val_loss": "min"}


# --------------------------------------------------------------------------- loss and the train step


def compute_loss(logits, labels, loss):
    """Mean training loss: sigmoid cross-entropy on one logit (``bce``) or softmax CE (``ce``).

    Args:
        logits: ``[N, 1]`` or ``[N, C]``.
        labels: int64 ``[N]`` (or any shape with N elements).
        loss: ``"bce"`` or ``"ce"``.
    """
    import paddle.nn.functional as F

    labels = labels.reshape([-1])
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.reshape([-1, 1]).astype("float32"),
                                                  labels.astype("float32").reshape([-1, 1]))
    return F.cross_entropy(logits.astype("float32"), labels.astype("int64"))


def count_correct(logits, labels, loss):
    """Number of right answers in a batch (threshold 0.5 on the sigmoid, or the arg-max)."""
    out = logits.numpy()
    y = labels.numpy().reshape(-1)
    pred = (out.reshape(-1) > 0).astype(np.int64) if loss == "bce" else out.argmax(axis=1)
    return int((pred == y).sum())


def make_train_step(model, loss, amp=None):
    """The forward pass and loss of one batch: ``step(images, labels) -> (loss, logits)``.

    Kept as one small function so an execution path (``paddle.jit.to_static``,
    mixed precision) can wrap it (:func:`paddle_palm.runtime` may provide
    ``compile_train_step(step, model)``).

    Args:
        model: the network (in train mode).
        loss: ``"bce"`` or ``"ce"``.
        amp: None, or ``"bfloat16"`` / ``"float16"`` for mixed precision (O1 auto-cast).
    """
    import paddle

    def step(images, labels):
        if amp:
            with paddle.amp.auto_cast(enable=True, dtype=amp, level="O1"):
                logits = model(images)
        else:
            logits = model(images)
        return compute_loss(logits, labels, loss), logits

    return step


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One training run of a resolved configuration.

    Use :func:`train` (which also takes the lock and closes the log); the methods
    below are the steps of :meth:`fit`, each small enough to read on its own.

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
        self.history = []
        self.loss_rows = []
        self.start_epoch = 0
        self.global_step = 0
        self.best = {"metric": config["metric"], "value": None, "epoch": None, "val_loss": None}
        self.epochs_without_improvement = 0
        self.vdl = None
        self._last_logits = None

    # ---- setup -------------------------------------------------------------------------------

    def setup(self):
        """Runtime, data, network, optimizer, schedule, EMA; then the saved state when resuming."""
        import paddle

        from paddle_palm import runtime

        c = self.config
        self.runtime = runtime.setup_runtime(device=c["device"], fast=c["fast"], threads=c["threads"])
        self.device = self.runtime.get("device", "cpu") if isinstance(self.runtime, dict) else "cpu"
        self.train_set, self.valid_set, c["data_dir"] = build_datasets(c, self.run_dir, self.log)
        self._seed_everything(c["seed"])
        self.model = self._build_model()
        self.train_sampler = EpochBatchSampler(len(self.train_set), c["batch_size"], seed=c["seed"], shuffle=True,
                                               rank=self.rank, world_size=self.world_size)
        self.train_loader = self._loader(self.train_set, self.train_sampler)
        self.valid_loader = self._loader(self.valid_set, EpochBatchSampler(len(self.valid_set), c["batch_size"], shuffle=False))
        self.optimizer = build_optimizer(c, self.model.parameters())
        self.schedule = LearningRateSchedule.from_config(c, steps_per_epoch=len(self.train_sampler))
        self.ema = ModelEMA(self.model, c["ema_decay"]) if c["ema"] else None
        self.amp_plan = _amp_plan(c, self.device)
        self.amp = self.amp_plan.dtype if self.amp_plan else None
        self.scaler = paddle.amp.GradScaler() if (self.amp_plan and self.amp_plan.loss_scaling) else None
        if self.resume:
            self._restore()
        if self.world_size > 1:
            self.net = paddle.DataParallel(self.model)
        else:
            self.net = self.model
        if c["fast"]:
            self.runtime["conv"] = runtime.accelerate_model(self.model, threads=self.runtime.get("threads"),
                                                            log=self.log, channels_last=True)
        # Paddle's auto-cast does nothing on a CPU place (it warns at every step): the CPU trains in
        # float32, and the log says why (ops.bf16_training_note).
        step = make_train_step(self.net, c["loss"], amp=self.amp if self.device != "cpu" else None)
        compile_step = getattr(runtime, "compile_train_step", None)
        self.train_step = compile_step(step, self.net) if (compile_step and c["fast"]) else step
        self._open_visualdl()

    def _seed_everything(self, seed):
        import paddle

        random.seed(seed)
        np.random.seed(seed)
        paddle.seed(seed)

    def _build_model(self):
        from paddle_palm.models import build_model

        c = self.config
        return build_model(c["arch"], num_classes=c["num_classes"])

    def _loader(self, dataset, sampler):
        import paddle

        if self.config["num_workers"] == 0:
            return MainThreadLoader(dataset, sampler)
        from paddle_palm import compat
        from paddle_palm.engine.device import pin_memory

        compat.set_dataloader_pin_memory(pin_memory(self.device, self.config["num_workers"]))
        return paddle.io.DataLoader(dataset, batch_sampler=sampler,
                                    num_workers=check_num_workers(self.config["num_workers"]),
                                    use_shared_memory=False, worker_init_fn=worker_init_function())

    def _open_visualdl(self):
        if not (self.is_writer and self.config["visualdl"]):
            return
        try:
            from visualdl import LogWriter
        except Exception:  # not installed (optional)
            return
        self.vdl = LogWriter(logdir=os.path.join(self.run_dir, "vdl"))

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
        if self.start_epoch >= self.config["epochs"]:
            raise ConfigError(f"{self.run_dir} has already trained {self.start_epoch} epochs; "
                              f"give --epochs N with N > {self.start_epoch} to continue it")
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
        # Rows written after the checkpoint (a crash mid-epoch) are dropped: they will be redone.
        self.history = [r for r in read_csv(os.path.join(self.run_dir, "history.csv")) if int(r["epoch"]) <= self.start_epoch]
        self.loss_rows = [r for r in read_csv(os.path.join(self.run_dir, "loss.csv")) if int(r["iter"]) <= self.global_step]
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
            self.history.append(row)
            if self.is_writer:
                if improved:
                    self.save_best(epoch)
                self.save_latest(epoch)
                if self.resume and epoch == self.start_epoch + 1:
                    cfg.save_run_config(self.config, self.run_dir)
                self._write_records()
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

    def train_one_epoch(self, epoch):
        """One pass over this process's shard of the shuffled training set."""
        import paddle
        from tqdm import tqdm

        c = self.config
        self.model.train()
        paddle.seed(epoch_seed(c["seed"], epoch - 1, 2))  # dropout and any other paddle draw of this epoch
        self.train_sampler.set_epoch(epoch - 1)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch - 1)  # the augmentation of item i is seeded by (seed, epoch, i)
        loss_sum, correct, seen, started = 0.0, 0, 0, time.perf_counter()
        bar = tqdm(iterate_batches(self.train_loader), total=len(self.train_sampler), desc=f"epoch {epoch}/{c['epochs']}",
                   disable=not (c["progress"] and self.is_writer), leave=False, dynamic_ncols=True, file=sys.stderr)
        for batch_index, (images, labels) in enumerate(bar):
            lr = self.schedule.lr(self.global_step)
            self.optimizer.set_lr(lr)
            loss = self._update(images, labels)
            value = self._loss_value(loss)
            if not math.isfinite(value):
                raise TrainingError(
                    f"the training loss became {value} at epoch {epoch}, iteration {batch_index + 1} "
                    f"(learning rate {lr:g}); training stopped; {self._last_good()}; try a smaller --lr"
                )
            n = int(labels.shape[0])
            correct += count_correct(self._last_logits, labels, c["loss"])
            loss_sum += value * n
            seen += n
            self.global_step += 1
            if self.global_step % c["log_interval"] == 0:
                self.loss_rows.append({"iter": self.global_step, "loss": f"{value:.6g}", "epoch": epoch})
                if self.vdl:
                    self.vdl.add_scalar("train/loss", value, self.global_step)
            ips = seen * self.world_size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", img_s=f"{ips:.1f}", lr=f"{lr:.2e}")
        bar.close()
        seconds = time.perf_counter() - started
        if self.world_size > 1:
            correct, seen = self._sum_over_processes(correct, seen)
            seen_here = seen // self.world_size
        else:
            seen_here = seen
        return {"loss": loss_sum / max(seen_here, 1), "acc": correct / max(seen, 1),
                "images_per_second": seen / max(seconds, 1e-9), "lr": lr}

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
        return int(self.history[-1]["epoch"]) if self.history else 0

    def _update(self, images, labels):
        """Forward, backward and the optimizer update of one batch; returns the loss tensor."""
        loss, logits = self.train_step(images, labels)
        self._last_logits = logits.detach()
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
        return loss

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
        from paddle_palm.engine.evaluate import evaluate

        c = self.config
        if self.ema:
            with self.ema.swapped_into(self.model):
                return evaluate(self.model, iterate_batches(self.valid_loader), loss=c["loss"], threshold=c["threshold"])
        return evaluate(self.model, iterate_batches(self.valid_loader), loss=c["loss"], threshold=c["threshold"])

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

    def _write_records(self):
        from paddle_palm.viz.plots import plot_history, plot_loss_curve

        write_csv(os.path.join(self.run_dir, "history.csv"), HISTORY_FIELDS, self.history)
        write_csv(os.path.join(self.run_dir, "loss.csv"), ["iter", "loss", "epoch"], self.loss_rows)
        iters = [int(r["iter"]) for r in self.loss_rows]
        losses = [float(r["loss"]) for r in self.loss_rows]
        plot_loss_curve(iters, losses, os.path.join(self.run_dir, "loss.png"))
        plot_history(self.history, os.path.join(self.run_dir, "history.png"))
        if self.vdl:
            last = self.history[-1]
            for key in ("val_loss", "val_acc", "val_auc", "train_loss", "lr"):
                self.vdl.add_scalar(f"epoch/{key}", float(last[key]), int(last["epoch"]))

    def _describe(self):
        c = self.config
        n_params = sum(int(np.prod(p.shape)) for p in self.model.parameters())
        self.log(f"training {c['arch']} ({n_params:,} parameters, {c['num_classes']} output(s), loss {c['loss']}) "
                 f"on {len(self.train_set)} training / {len(self.valid_set)} validation images from {c['data_dir']}")
        sched = c["lr_schedule"] + (f" to {c['end_lr']:g}" if c["lr_schedule"] in ("polynomial", "cosine") else "")
        self.log(f"{c['optimizer']} lr {c['lr']:g} ({sched}), batch {c['batch_size']}, {c['epochs']} epoch{'s' if c['epochs'] > 1 else ''}, "
                 f"{c['image_size']} px, preprocessing {c['preprocess']}, augment {c['augment']}, seed {c['seed']}, "
                 f"device {self.device}{self._execution()}" + (f", {self.world_size} processes" if self.world_size > 1 else "")
                 + (f", amp {self.amp}" if self.amp else "") + (", EMA" if self.ema else ""))
        if self.amp and self.device == "cpu":
            from paddle_palm import ops

            self.log(ops.bf16_training_note())
        self.log(f"outputs in {self.run_dir}")

    def _execution(self):
        """How the steps run, for the log: " (fast path: 2 threads, oneDNN convolutions)" or " (plain dygraph)"."""
        info = self.runtime if isinstance(self.runtime, dict) else {}
        if self.device != "cpu":
            return ""
        if not info.get("fast"):
            return " (plain dygraph)"
        conv = "oneDNN convolutions" if info.get("conv") == "onednn" else "Paddle convolutions"
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
        if self.vdl:
            self.vdl.close()
            self.vdl = None


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
    created = rank == 0 and not os.path.exists(run_dir)
    if rank == 0:
        try:
            os.makedirs(run_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder {run_dir}: {exc.strerror}") from None
        if not os.access(run_dir, os.W_OK):
            raise ConfigError(f"output folder {run_dir} is not writable")
    lock = OutputLock(run_dir) if rank == 0 else None
    if lock:
        try:
            lock.acquire()
        except BaseException:
            if created:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    log = RunLog(os.path.join(run_dir, "train.log") if rank == 0 else None, echo=echo and rank == 0)
    trainer = None
    failed = None
    quiet = warnings.catch_warnings()
    quiet.__enter__()
    # Paddle warns at every BatchNorm layer's first training call that it tracks running statistics.
    warnings.filterwarnings("ignore", message="When training, we now always track global mean")
    try:
        if resume_dir and rank == 0:
            # Under the lock: finishing an interrupted commit must not race a live training.
            ckpt.verify_checkpoint(run_dir, "latest")
        if world_size > 1:
            import paddle.distributed as dist

            dist.barrier()  # the other processes read the checkpoint only after rank 0 has checked it
        if rank == 0 and not resume_dir and ckpt.checkpoint_exists(run_dir, "latest"):
            raise ConfigError(f"{run_dir} already holds a training run (latest.pdstates); "
                              "continue it with --resume DIR or choose another --output-dir")
        if rank == 0:
            remove_stale_temporaries(run_dir)
        trainer = Trainer(config, run_dir, log, resume=bool(resume_dir))
        trainer.setup()
        if rank == 0 and not resume_dir:
            # A resumed run rewrites config.yaml together with its next checkpoint, so that a failed
            # resume leaves the folder as it was.
            cfg.save_run_config(trainer.config, run_dir)
        summary = trainer.fit()
        log(f"done: best {summary['best_metric']} {summary['best_value']:.4f} at epoch {summary['best_epoch']}; "
            f"weights in {os.path.join(run_dir, 'best_model.pdparams')}")
        return summary
    except BaseException as exc:
        failed = exc
        raise
    finally:
        if trainer is not None:
            trainer.close()
        nothing_saved = not ckpt.checkpoint_exists(run_dir, "latest")
        if failed is not None and not (created and nothing_saved) and rank == 0:
            log.echo = False
            log(f"stopped: {' '.join(str(failed).split()) or type(failed).__name__}")
        log.close()
        if lock:
            lock.release()
        quiet.__exit__(None, None, None)
        if failed is not None and created and nothing_saved:
            # This call made the folder and nothing worth keeping was written: leave no trace.
            shutil.rmtree(run_dir, ignore_errors=True)


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
    from paddle_palm.engine import device as devices

    capability = None
    if config["amp"] and devices.is_gpu(device):
        from paddle_palm import compat

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
