"""The training losses on a batch of logits, shared by the training loop and evaluation.

``bce`` is sigmoid cross-entropy on one logit (the course's SENet18 and ResNet
recipes), ``ce`` softmax cross-entropy over two or more classes (SqueezeNet,
CIFAR-10, MNIST); :func:`paddle_palm.metrics.infer_loss` tells which one an
output width implies.  Label smoothing (training only) moves the targets towards the
uniform answer: 1 and 0 become 1 - e/2 and e/2 for ``bce``, and a class's one-hot row
``(1 - e) * onehot + e / C`` for ``ce`` (PaddleClas's ``epsilon``).  Mixup (Zhang et al.,
2018; PaddleClas's ``MixupOperator``) trains on ``lam * x + (1 - lam) * x[perm]`` against the
same mixture of the two images' losses; :func:`mixup_plan` draws ``lam`` and ``perm`` from the
seed and the step number, so a resumed run mixes exactly as an uninterrupted one.

Paddle is imported inside :func:`compute_loss` (importing it takes seconds; the tools
install their signal handlers first).
"""

import numpy as np

__all__ = ["compute_loss", "mixup_plan"]


def compute_loss(logits, labels, loss, reduction="mean", label_smoothing=0.0):
    """Training loss: sigmoid cross-entropy on one logit (``bce``) or softmax CE (``ce``).

    Args:
        logits: ``[N, 1]`` or ``[N, C]`` tensor.
        labels: int64 ``[N]`` tensor (or any shape with N elements).
        loss: ``"bce"`` or ``"ce"``.
        reduction: ``"mean"`` (per image, the training loss) or ``"sum"`` (for a mean over many batches).
        label_smoothing: e in [0, 1): the weight moved from the true class to the uniform answer.
    """
    import paddle.nn.functional as F

    labels = labels.reshape([-1])
    if loss == "bce":
        targets = labels.astype("float32").reshape([-1, 1])
        if label_smoothing:
            targets = targets * (1.0 - label_smoothing) + label_smoothing / 2.0
        return F.binary_cross_entropy_with_logits(logits.reshape([-1, 1]).astype("float32"), targets, reduction=reduction)
    return F.cross_entropy(logits.astype("float32"), labels.astype("int64"), reduction=reduction,
                           label_smoothing=float(label_smoothing))


def mixup_plan(alpha, batch, seed, step, rank=0):
    """The mixing weight and partner order of one training batch: ``(lam, perm)``.

    Args:
        alpha: the Beta(alpha, alpha) distribution ``lam`` is drawn from (0.2 is usual: most
            batches stay close to one of their two images).
        batch: the number of images in the batch.
        seed, step, rank: the run's seed, the global step and the process (a data-parallel
            run mixes each process's shard differently).

    Returns:
        (float, numpy.ndarray): ``lam`` in [0, 1] and a permutation of ``range(batch)``.
    """
    rng = np.random.default_rng([int(seed), int(rank), int(step), 0x6D6978])  # the last word: "mix"
    return float(rng.beta(alpha, alpha)), rng.permutation(int(batch))
