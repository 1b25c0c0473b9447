"""The training losses on a batch of logits, shared by the training loop and evaluation.

``bce`` is sigmoid cross-entropy on one logit (the course's SENet18 and ResNet
recipes), ``ce`` softmax cross-entropy over two or more classes (SqueezeNet,
CIFAR-10, MNIST); :func:`paddle_palm.metrics.infer_loss` tells which one an
output width implies.  Paddle is imported inside :func:`compute_loss` (importing
it takes seconds; the tools install their signal handlers first).
"""

__all__ = ["compute_loss"]


def compute_loss(logits, labels, loss, reduction="mean"):
    """Training loss: sigmoid cross-entropy on one logit (``bce``) or softmax CE (``ce``).

    Args:
        logits: ``[N, 1]`` or ``[N, C]`` tensor.
        labels: int64 ``[N]`` tensor (or any shape with N elements).
        loss: ``"bce"`` or ``"ce"``.
        reduction: ``"mean"`` (per image, the training loss) or ``"sum"`` (for a mean over many batches).
    """
    import paddle.nn.functional as F

    labels = labels.reshape([-1])
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.reshape([-1, 1]).astype("float32"),
                                                  labels.astype("float32").reshape([-1, 1]), reduction=reduction)
    return F.cross_entropy(logits.astype("float32"), labels.astype("int64"), reduction=reduction)
