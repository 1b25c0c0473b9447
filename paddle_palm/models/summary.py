"""Parameter counts and the ``paddle.summary`` table of a network (what ``tools/summary.py`` prints).

Paddle stores a BatchNorm layer's running mean and variance as non-trainable
parameters, so ``paddle.summary`` counts ``4 * C`` for a BatchNorm of ``C``
channels in its "Param #" column and in "Total params", where PyTorch's
``torchsummary`` (seed 003's table) counts ``2 * C``.  The trainable counts
agree: compare "Trainable params" with the seeds' totals (SPEC 2.2: 11,260,354
for ``senet18_cifar``).
"""

import contextlib
import io
import math

import paddle

__all__ = ["count_parameters", "summary_text"]


def count_parameters(model):
    """Count a network's parameters.

    Args:
        model: a ``paddle.nn.Layer``.

    Returns:
        dict: ``trainable`` (weights the optimizer updates), ``non_trainable``
        (BatchNorm running statistics and anything frozen) and ``total``.
    """
    trainable = non_trainable = 0
    for param in model.parameters():
        size = int(math.prod(param.shape))
        if param.trainable and not param.stop_gradient:
            trainable += size
        else:
            non_trainable += size
    return {"trainable": trainable, "non_trainable": non_trainable, "total": trainable + non_trainable}


def summary_text(model, input_shape, title=None):
    """The ``paddle.summary`` table of ``model`` for one input shape, ending with the parameter count.

    The model runs once in eval mode on a random input of ``input_shape``.

    Args:
        model: a ``paddle.nn.Layer``.
        input_shape: ``(N, C, H, W)``.
        title: a first line (e.g. the architecture's name); None for none.

    Returns:
        str: the title and input/output shapes, the table as ``paddle.summary``
        prints it, and a last line
        ``Total params: T (trainable A, non-trainable B)``.
    """
    input_shape = tuple(int(d) for d in input_shape)
    outputs = []
    hook = model.register_forward_post_hook(lambda layer, inputs, output: outputs.append(list(output.shape)))
    was_training = model.training
    model.eval()
    table = io.StringIO()
    try:
        with paddle.no_grad(), contextlib.redirect_stdout(table):
            paddle.summary(model, input_shape)
    finally:
        hook.remove()
        if was_training:
            model.train()
    table = table.getvalue()
    counts = count_parameters(model)
    lines = []
    if title:
        lines.append(title)
    lines.append(f"input {list(input_shape)} -> output {outputs[-1] if outputs else '?'}")
    lines.append(table.rstrip("\n"))
    lines.append(
        f"Total params: {counts['total']:,} (trainable {counts['trainable']:,}, "
        f"non-trainable {counts['non_trainable']:,})"
    )
    return "\n".join(lines) + "\n"
