"""``paddle.fluid.layers.loss`` of 1.8: per-sample losses, no reduction (FLUID_1_8.md sections 0 and 3).

* ``cross_entropy`` takes **probabilities** (no softmax) and returns ``[N, 1]``;
  ``-log`` is clipped as 1.8 did (p = 0 gives 1e20) (#7);
* ``sigmoid_cross_entropy_with_logits`` is element-wise without reduction; labels equal
  to ``ignore_index`` (-100) give 0; ``normalize=True`` divides by the number of
  non-ignored elements (#8).
"""

import warnings

import paddle
import paddle.nn.functional as F

from legacy_fluid.fluid import _support

__all__ = [
    "cross_entropy", "softmax_with_cross_entropy", "sigmoid_cross_entropy_with_logits", "square_error_cost",
    "mse_loss", "log_loss", "huber_loss", "kldiv_loss", "smooth_l1",
]


def cross_entropy(input, label, soft_label=False, ignore_index=-100):
    """``-log(input[label])`` per row (``soft_label``: ``-sum(label * log(input))``), shape ``[N, 1]``.

    Args:
        input: probabilities ``[N, C]`` (already softmaxed).
        label: int64 ``[N, 1]`` class ids, or ``[N, C]`` probabilities with ``soft_label``.
        soft_label: whether ``label`` is a distribution.
        ignore_index: rows with this label give 0 (hard labels only).
    """
    return F.cross_entropy(input, label, soft_label=soft_label, ignore_index=ignore_index, reduction="none",
                           use_softmax=False)


def softmax_with_cross_entropy(logits, label, soft_label=False, ignore_index=-100, numeric_stable_mode=True,
                               return_softmax=False, axis=-1):
    """Softmax of ``logits`` then cross entropy, per sample (``[N, 1]``); optionally also the softmax."""
    with warnings.catch_warnings():
        # Paddle 2.0+ marks it deprecated (a warning 1.8 never printed); its numbers are 1.8's
        warnings.simplefilter("ignore")
        return F.softmax_with_cross_entropy(logits, label, soft_label=soft_label, ignore_index=ignore_index,
                                            numeric_stable_mode=numeric_stable_mode,
                                            return_softmax=return_softmax, axis=axis)


def sigmoid_cross_entropy_with_logits(x, label, ignore_index=-100, name=None, normalize=False):
    """Element-wise ``max(x, 0) - x * z + log(1 + exp(-|x|))``; no reduction (take ``fluid.layers.mean``)."""
    return paddle._C_ops.sigmoid_cross_entropy_with_logits(x, label, None, normalize, ignore_index)


def square_error_cost(input, label):
    """Element-wise ``(input - label) ** 2``."""
    return F.square_error_cost(input, label)


def mse_loss(input, label):
    """Mean of ``(input - label) ** 2``, shape ``[1]``."""
    return paddle.mean(F.square_error_cost(input, label)).reshape([1])


def log_loss(input, label, epsilon=0.0001, name=None):
    """``-label * log(input + eps) - (1 - label) * log(1 - input + eps)``, element-wise."""
    return F.log_loss(input, label, epsilon=epsilon)


def huber_loss(input, label, delta):
    """Element-wise Huber loss of ``label - input`` with threshold ``delta``."""
    diff = label - input
    abs_diff = paddle.abs(diff)
    return paddle.where(abs_diff <= delta, 0.5 * diff * diff, delta * (abs_diff - 0.5 * delta))


def kldiv_loss(x, target, reduction="mean", name=None):
    """KL divergence with ``x`` as log-probabilities (reductions of 1.8: none, batchmean, mean, sum)."""
    out = F.kl_div(x, target, reduction=reduction)
    return _support.no_0d(out)


def smooth_l1(x, y, inside_weight=None, outside_weight=None, sigma=None):
    """1.8 ``smooth_l1``: per-sample sum ``[N, 1]`` of the smooth-L1 of ``x - y`` with ``sigma`` (default 1)."""
    sigma2 = (1.0 if sigma is None else sigma) ** 2
    diff = x - y
    if inside_weight is not None:
        diff = diff * inside_weight
    abs_diff = paddle.abs(diff)
    loss = paddle.where(abs_diff < 1.0 / sigma2, 0.5 * sigma2 * diff * diff, abs_diff - 0.5 / sigma2)
    if outside_weight is not None:
        loss = loss * outside_weight
    return loss.reshape([loss.shape[0], -1]).sum(axis=1, keepdim=True)


__getattr__ = _support.module_getattr(__name__)
