"""What a training records about itself: per-epoch history, the loss curve, plots, VisualDL.

:class:`RunRecorder` keeps the rows in memory and writes them into the run folder
after every epoch (only the writing process, rank 0, writes):

====================  =====================================================================
``history.csv``       one row per epoch (:data:`HISTORY_FIELDS`)
``loss.csv``          the training loss every ``log_interval`` iterations, seed 001's record
``loss.png``          seed 001's plot of it ("train loss" against "iter")
``history.png``       loss, accuracy and AUC per epoch
``vdl/``              VisualDL logs, when asked for and ``visualdl`` is installed (else one
                      log line says how to install it)
====================  =====================================================================

A resumed run reads the files back and drops the rows written after its checkpoint,
so the records of a resumed run equal those of an uninterrupted one.
"""

import os

from paddle_palm.engine.run_folder import read_csv, write_csv
from paddle_palm.viz.plots import plot_history, plot_loss_curve

HISTORY_FIELDS = [
    "epoch", "train_loss", "val_loss", "val_acc", "val_auc", "lr", "seconds",
    "train_acc", "val_sensitivity", "val_specificity", "images_per_second", "best",
]

LOSS_FIELDS = ["iter", "loss", "epoch"]

#: The per-epoch values also sent to VisualDL (``epoch/<name>``).
_VISUALDL_EPOCH_FIELDS = ("val_loss", "val_acc", "val_auc", "train_loss", "lr")


class RunRecorder:
    """The history and loss records of one run, and where they are written.

    Args:
        run_dir: the run folder.
        writer: whether this process writes files (rank 0).
        visualdl: also log to VisualDL (``run_dir/vdl``) when it is installed.
        log: a callable taking one message (the trainer's log), for the one line saying
            VisualDL is asked for but not installed.

    Attributes:
        history: the rows of ``history.csv`` (dicts).
        loss_rows: the rows of ``loss.csv`` (dicts).
    """

    def __init__(self, run_dir, writer=True, visualdl=False, log=print):
        self.run_dir = run_dir
        self.writer = writer
        self.visualdl = visualdl
        self.log = log
        self.history = []
        self.loss_rows = []
        self.vdl = None

    def open(self):
        """Start the VisualDL log, when asked for and installed (optional: else one log line)."""
        if not (self.writer and self.visualdl) or self.vdl is not None:
            return
        try:
            from visualdl import LogWriter
        except Exception as exc:  # optional: the run goes on without it
            why = "visualdl is not installed" if isinstance(exc, ImportError) else f"visualdl failed to import ({exc})"
            self.log(f"VisualDL logs skipped: {why}; pip install visualdl to have them (--no-visualdl hides this line)")
            self.visualdl = False
            return
        self.vdl = LogWriter(logdir=os.path.join(self.run_dir, "vdl"))

    def resume(self, epoch, global_step):
        """Read the records of a run resumed after ``epoch`` (at ``global_step``).

        Rows written after the checkpoint (a crash mid-epoch) are dropped: they will be redone.
        """
        self.history = [r for r in read_csv(os.path.join(self.run_dir, "history.csv")) if int(r["epoch"]) <= epoch]
        self.loss_rows = [r for r in read_csv(os.path.join(self.run_dir, "loss.csv")) if int(r["iter"]) <= global_step]

    def add_loss(self, step, value, epoch):
        """Record the training loss ``value`` at iteration ``step``."""
        self.loss_rows.append({"iter": step, "loss": f"{value:.6g}", "epoch": epoch})
        if self.vdl:
            self.vdl.add_scalar("train/loss", value, step)

    def add_epoch(self, row):
        """Record one epoch's row of ``history.csv``."""
        self.history.append(row)

    def last_epoch(self):
        """The last epoch recorded (0 when none)."""
        return int(self.history[-1]["epoch"]) if self.history else 0

    def write(self):
        """Write the CSV files and plots (and the last epoch to VisualDL); the writer only."""
        if not self.writer:
            return
        write_csv(os.path.join(self.run_dir, "history.csv"), HISTORY_FIELDS, self.history)
        write_csv(os.path.join(self.run_dir, "loss.csv"), LOSS_FIELDS, self.loss_rows)
        iters = [int(r["iter"]) for r in self.loss_rows]
        losses = [float(r["loss"]) for r in self.loss_rows]
        plot_loss_curve(iters, losses, os.path.join(self.run_dir, "loss.png"))
        plot_history(self.history, os.path.join(self.run_dir, "history.png"))
        if self.vdl and self.history:
            last = self.history[-1]
            for key in _VISUALDL_EPOCH_FIELDS:
                self.vdl.add_scalar(f"epoch/{key}", float(last[key]), int(last["epoch"]))

    def close(self):
        """Close the VisualDL log."""
        if self.vdl:
            self.vdl.close()
            self.vdl = None
