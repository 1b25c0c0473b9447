"""``paddle.fluid.layers.accuracy`` of 1.8 (FLUID_1_8.md section 3).

``accuracy(input, label, k=1)`` takes scores or probabilities ``[N, C]`` and a label that
**must be int64 of shape** ``[N, 1]``; it returns float32 ``[1]`` = fraction of rows whose
label is among the top-k indices (ties go to the lower index).  The course uses it as
``accuracy(concat([1 - p, p], 1), cast(label, 'int64'))``.
"""

import paddle

from legacy_fluid.fluid import _support

__all__ = ["accuracy"]


def accuracy(input, label, k=1, correct=None, total=None):
    """Top-``k`` accuracy, float32 ``[1]``.

    Raises:
        ValueError: ``label`` is not 2-D (1.8: "label's dimensions ... must be 2") or not int64.
    """
    if len(label.shape) != 2:
        raise ValueError("ShapeError: label's dimensions of AccuracyOp must be 2. But received label's "
                         "dimensions = {}, label's shape = {}".format(len(label.shape), list(label.shape)))
    if label.dtype != paddle.int64:
        raise ValueError("The Tensor in the accuracy Op's Input Variable Label(label) holds {}, but desires to "
                         "be int64.".format(paddle.base.data_feeder.convert_dtype(label.dtype)))
    if label.shape[1] != 1:
        raise ValueError("ShapeError: label's second dimension of AccuracyOp must be 1. But received {}".format(
            label.shape[1]))
    _, indices = paddle.topk(input, k=k)
    hits = paddle.any(paddle.equal(indices, label), axis=1).astype("float32")
    num = label.shape[0]
    result = (paddle.sum(hits) / float(num)).reshape([1]).astype("float32")
    if correct is not None:
        correct.set_value(paddle.sum(hits).astype("int32").reshape([1]))
    if total is not None:
        total.set_value(paddle.to_tensor([num], dtype="int32"))
    return result


def auc(input, label, curve="ROC", num_thresholds=4095, topk=1, slide_steps=1):
    """Not provided: 1.8's stateful AUC op; use ``paddle.metric.Auc``."""
    raise _support.not_provided("paddle.fluid.layers.auc", "use paddle.metric.Auc")


__getattr__ = _support.module_getattr(__name__)
