"""Optimizers, learning-rate schedules and the exponential moving average of the weights.

The learning rate is a pure function of the global step (and, for ``plateau``, of
a small state updated once per epoch), set on the optimizer before every update.
That keeps a resumed run on exactly the schedule of an uninterrupted one, lets a
student print the rate of any step, and reproduces the course's schedules:

* ``constant``   - seed 000 (SENet18, Momentum 1e-3), seed 004;
* ``polynomial`` - seed 001's ``PolynomialDecay(0.005, decay_steps=102.5, end_lr=0.001)``
  (SPEC 2.4), stepped once per batch like fluid's dygraph decays; ``decay_steps``
  may be fractional, as in the seed;
* ``plateau``    - seed 003's ``ReduceLROnPlateau(mode min, factor 0.94, patience 1,
  min_lr 1e-6)`` (SPEC 2.2), on the validation loss after every epoch;
* ``cosine``, ``multistep`` - the usual alternatives; ``warmup_epochs`` adds a
  linear warm-up in front of any of them.

Fine-tuning pretrained weights (:class:`FineTuning`): the backbone may learn at a
fraction of the rate (``backbone_lr_scale``, a Paddle parameter group whose rate is
that multiple of the schedule's) and may stay frozen for the first ``freeze_epochs``
epochs while the new classifier settles.  Both follow from the epoch number alone, so
a resumed run repeats them exactly.

Paddle is imported inside the functions: importing it takes seconds, and the tools
install their signal handlers first.
"""

import math

from paddle_palm.errors import ConfigError

SCHEDULES = ("constant", "polynomial", "cosine", "plateau", "multistep")


class LearningRateSchedule:
    """The learning rate of every step of a run.

    Args:
        kind: one of :data:`SCHEDULES`.
        base_lr: the initial rate.
        steps_per_epoch: optimizer updates per epoch.
        epochs: total epochs of the run (for ``polynomial`` / ``cosine`` lengths).
        end_lr: final rate of ``polynomial`` and ``cosine``.
        decay_steps: ``polynomial`` length in steps (None: the whole run).
        power: ``polynomial`` exponent.
        milestones: ``multistep`` epochs (1-based count of finished epochs) after
            which the rate is multiplied by ``gamma``.
        gamma: ``multistep`` factor.
        plateau_factor, plateau_patience, min_lr: ``plateau`` settings (the rate is
            multiplied by ``plateau_factor`` when the validation loss has not
            improved for more than ``plateau_patience`` epochs, never below ``min_lr``).
        warmup_epochs: linear warm-up length.
    """

    def __init__(self, kind, base_lr, steps_per_epoch, epochs, end_lr=0.0, decay_steps=None, power=1.0,
                 milestones=(), gamma=0.1, plateau_factor=0.1, plateau_patience=1, min_lr=0.0, warmup_epochs=0):
        if kind not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
        self.kind = kind
        self.base_lr = float(base_lr)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = self.steps_per_epoch * int(epochs)
        self.end_lr = float(end_lr)
        self.decay_steps = float(decay_steps) if decay_steps else float(self.total_steps)
        self.power = float(power)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.plateau_factor = float(plateau_factor)
        self.plateau_patience = int(plateau_patience)
        self.min_lr = float(min_lr)
        self.warmup_steps = int(warmup_epochs) * self.steps_per_epoch
        # Plateau state (the only state: everything else follows from the step).
        self.plateau_lr = self.base_lr
        self.best_loss = None
        self.bad_epochs = 0

    @classmethod
    def from_config(cls, config, steps_per_epoch):
        """Build the schedule a resolved configuration asks for."""
        return cls(
            config["lr_schedule"], config["lr"], steps_per_epoch, config["epochs"], end_lr=config["end_lr"],
            decay_steps=config["decay_steps"], power=config["power"], milestones=config["milestones"],
            gamma=config["gamma"], plateau_factor=config["plateau_factor"],
            plateau_patience=config["plateau_patience"], min_lr=config["min_lr"],
            warmup_epochs=config["warmup_epochs"],
        )

    def lr(self, step):
        """The rate of the update with 0-based global index ``step``."""
        step = int(step)
        if self.kind == "constant":
            value = self.base_lr
        elif self.kind == "polynomial":
            t = min(float(step), self.decay_steps)
            value = (self.base_lr - self.end_lr) * (1.0 - t / self.decay_steps) ** self.power + self.end_lr
        elif self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(max(step - self.warmup_steps, 0), span)
            value = self.end_lr + (self.base_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * t / span))
        elif self.kind == "multistep":
            finished_epochs = step // self.steps_per_epoch
            value = self.base_lr * self.gamma ** sum(1 for m in self.milestones if m <= finished_epochs)
        else:  # plateau
            value = self.plateau_lr
        if step < self.warmup_steps:
            value *= (step + 1) / self.warmup_steps
        return value

    def end_epoch(self, val_loss):
        """Tell the schedule an epoch ended with validation loss ``val_loss`` (``plateau`` only)."""
        if self.kind != "plateau" or val_loss is None or not math.isfinite(val_loss):
            return
        # Paddle's ReduceOnPlateau, mode "min", relative threshold 1e-4, no cooldown.
        if self.best_loss is None or val_loss < self.best_loss * (1.0 - 1e-4):
            self.best_loss = float(val_loss)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.plateau_patience:
            new_lr = max(self.plateau_lr * self.plateau_factor, self.min_lr)
            if self.plateau_lr - new_lr > 1e-8:
                self.plateau_lr = new_lr
            self.bad_epochs = 0

    def state_dict(self):
        """The plateau state (JSON-serialisable)."""
        return {"plateau_lr": self.plateau_lr, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def set_state_dict(self, state):
        """Restore :meth:`state_dict`."""
        self.plateau_lr = float(state.get("plateau_lr", self.base_lr))
        self.best_loss = state.get("best_loss")
        self.bad_epochs = int(state.get("bad_epochs", 0))


def build_optimizer(config, parameters):
    """The optimizer of a resolved configuration (``momentum``, ``sgd``, ``adam`` or ``adamw``).

    The rate given here is only the initial value: the trainer sets the rate of
    every step from :class:`LearningRateSchedule`.  ``weight_decay`` is L2
    regularisation added to the gradient (the fluid ``regularization`` of the seeds),
    except for ``adamw``, where it is decoupled from Adam's update (Loshchilov and Hutter:
    every step also takes ``rate * weight_decay * weight`` off each weight, as PaddleClas's
    ``AdamW`` does).
    ``parameters`` is a list of parameters or of Paddle parameter groups
    (:meth:`FineTuning.parameters`): a group's ``learning_rate`` multiplies the rate of every step.
    """
    import paddle

    lr = float(config["lr"])
    decay = float(config["weight_decay"]) or None
    clip = paddle.nn.ClipGradByGlobalNorm(float(config["grad_clip"])) if config.get("grad_clip") else None
    kind = config["optimizer"]
    if kind == "momentum":
        return paddle.optimizer.Momentum(learning_rate=lr, momentum=float(config["momentum"]), parameters=parameters,
                                         weight_decay=decay, grad_clip=clip)
    if kind == "sgd":
        return paddle.optimizer.SGD(learning_rate=lr, parameters=parameters, weight_decay=decay, grad_clip=clip)
    if kind == "adam":
        return paddle.optimizer.Adam(learning_rate=lr, parameters=parameters, weight_decay=decay, grad_clip=clip)
    if kind == "adamw":  # a number, never None: None would be AdamW's own default decay, 0.01
        return paddle.optimizer.AdamW(learning_rate=lr, parameters=parameters, weight_decay=float(config["weight_decay"]),
                                      grad_clip=clip)
    raise ConfigError(f"optimizer must be momentum, sgd, adam or adamw, got {kind!r}")


class FineTuning:
    """How the backbone of a pretrained network trains: at a fraction of the rate, frozen at first.

    The backbone is frozen by giving its parameter group the rate 0, not by stopping its
    gradients: every parameter then has its optimizer state (momentum, Adam's moments)
    from the first step on, so the state saved after a frozen epoch is complete and a
    resumed run goes on exactly as an uninterrupted one, and ``paddle.DataParallel``
    reduces the same parameters at every step.  The backward pass through the backbone
    is still computed, and BatchNorm's running statistics still follow the new images.

    Args:
        model: the network.
        classifier: the structured names of its classifier's parameters
            (:func:`paddle_palm.models.convert.classifier_names`); the rest is the backbone.
        lr_scale: the backbone's rate as a multiple of the schedule's (the classifier keeps 1).
        freeze_epochs: the backbone is not updated during epochs ``1..freeze_epochs``.
    """

    def __init__(self, model, classifier, lr_scale=1.0, freeze_epochs=0):
        names = set(classifier)
        named = list(model.named_parameters())
        missing = names - {n for n, _ in named}
        if missing:
            raise ConfigError(f"the network has no classifier parameter {sorted(missing)[0]!r}")
        self.head = [p for n, p in named if n in names]
        self.backbone = [p for n, p in named if n not in names and not p.stop_gradient]
        self.lr_scale = float(lr_scale)
        self.freeze_epochs = int(freeze_epochs)
        self.frozen = False

    @classmethod
    def from_config(cls, config, model):
        """The fine-tuning of a resolved configuration, or None when it trains every weight alike."""
        scale, epochs = float(config.get("backbone_lr_scale", 1.0)), int(config.get("freeze_epochs", 0))
        if scale == 1.0 and epochs == 0:
            return None
        from paddle_palm.models.convert import classifier_names

        return cls(model, classifier_names(config["arch"]), scale, epochs)

    def parameters(self):
        """What to give the optimizer: two parameter groups (backbone at ``lr_scale``, classifier at 1)."""
        return [{"params": self.backbone, "learning_rate": self.lr_scale}, {"params": self.head}]

    def start_epoch(self, epoch, log=None):
        """Freeze or release the backbone for epoch ``epoch`` (1-based); say so when it changes."""
        frozen = epoch <= self.freeze_epochs
        if frozen == self.frozen:
            return
        for param in self.backbone:
            # The group's rate lives on each parameter (Paddle's Optimizer._add_param_group sets it there).
            param.optimize_attr["learning_rate"] = 0.0 if frozen else self.lr_scale
        self.frozen = frozen
        if log:
            log(f"epoch {epoch}: backbone frozen (training the classifier only) until epoch {self.freeze_epochs}"
                if frozen else f"epoch {epoch}: backbone released (learning rate x {self.lr_scale:g})")

    def describe(self):
        """For the log: "backbone lr x 0.1, backbone frozen for 2 epochs"."""
        parts = [f"backbone lr x {self.lr_scale:g}"] if self.lr_scale != 1.0 else []
        if self.freeze_epochs:
            parts.append(f"backbone frozen for {self.freeze_epochs} epoch{'s' if self.freeze_epochs > 1 else ''}")
        return ", ".join(parts)


class ModelEMA:
    """Exponential moving average of a network's weights (evaluated and saved as ``best_model``).

    ``shadow = d * shadow + (1 - d) * weight`` after every update, with
    ``d = min(decay, (1 + n) / (10 + n))`` so the average follows the weights
    closely during the first updates; BatchNorm statistics are copied.

    Args:
        model: the network (its ``state_dict`` keys name the shadow entries).
        decay: the long-run decay, e.g. 0.999.
    """

    def __init__(self, model, decay=0.999):
        import paddle

        self.decay = float(decay)
        self.updates = 0
        self.trainable = {n for n, p in model.named_parameters() if not p.stop_gradient}
        with paddle.no_grad():
            self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model):
        """Move the average one step towards ``model``'s current weights."""
        import paddle

        from paddle_palm import ops

        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        state = model.state_dict()
        averaged = [k for k, v in state.items() if k in self.trainable and v.dtype in (paddle.float32, paddle.float64)]
        # One in-place pass with the operators (about 10x faster than Paddle's three passes
        # per tensor, which took a tenth of se_resnet18's step); the same values.
        if not ops.ema_update([self.shadow[k] for k in averaged], [state[k] for k in averaged], d):
            with paddle.no_grad():
                for key in averaged:
                    self.shadow[key] = self.shadow[key] * d + state[key].detach() * (1.0 - d)
        with paddle.no_grad():
            for key, value in state.items():
                if key not in averaged:
                    self.shadow[key] = value.detach().clone()

    def state_dict(self):
        """What to save (the shadow weights and the update count)."""
        return {"shadow": self.shadow, "updates": self.updates}

    def set_state_dict(self, state):
        """Restore :meth:`state_dict` (each shadow becomes a tensor of its own: updates are in place)."""
        import paddle

        self.shadow = {k: v.detach().clone() if isinstance(v, paddle.Tensor) else paddle.to_tensor(v)
                       for k, v in dict(state["shadow"]).items()}
        self.updates = int(state["updates"])

    def swapped_into(self, model):
        """Context manager: ``model`` holds the averaged weights inside the ``with`` block."""
        import contextlib

        @contextlib.contextmanager
        def swap():
            import paddle

            with paddle.no_grad():
                saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.set_state_dict(self.shadow)
            try:
                yield model
            finally:
                model.set_state_dict(saved)

        return swap()
