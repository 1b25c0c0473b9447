"""The course's train / validate loops in 1.8 style (seeds 000 and 001).

``train(model, ...)`` opens its own ``fluid.dygraph.guard()`` (the model may have been
built in another one, as in seed 001), trains with ``Momentum(momentum=0.9)`` on a fixed
learning rate (seed 000: 0.001) or ``PolynomialDecay`` (seed 001), prints
``epoch: E, batch_id: B, loss is: [L]`` every ``log_every`` batches, runs
:func:`validate` after each epoch and saves the model and optimizer state with
``save_dygraph`` (``<prefix>.pdparams`` and ``<prefix>.pdopt``).

Validation follows the course: ``pred = sigmoid(logits)``, ``concat([1 - pred, pred], 1)``,
``accuracy`` against the ``int64`` label, mean of the batch accuracies and of the
element-wise losses.  Needs ``paddle.fluid`` (real 1.8.5, or ``legacy_fluid.install()``).
"""

import numpy as np
import paddle.fluid as fluid

__all__ = ["validate", "train"]


def validate(model, valid_loader):
    """Course validation: returns ``(mean accuracy, mean loss)`` over the batches of ``valid_loader()``."""
    model.eval()
    accuracies = []
    losses = []
    for batch_id, data in enumerate(valid_loader()):
        x_data, y_data = data
        img = fluid.dygraph.to_variable(x_data)
        label = fluid.dygraph.to_variable(y_data)
        logits = model(img)
        pred = fluid.layers.sigmoid(logits)
        loss = fluid.layers.sigmoid_cross_entropy_with_logits(logits, label)
        pred2 = pred * (-1.0) + 1.0
        pred = fluid.layers.concat([pred2, pred], axis=1)
        acc = fluid.layers.accuracy(pred, fluid.layers.cast(label, dtype="int64"))
        accuracies.append(acc.numpy())
        losses.append(loss.numpy())
    model.train()
    return np.mean(accuracies), np.mean(losses)


def train(model, train_loader, valid_loader=None, epoch_num=3, learning_rate=0.001, decay_steps=None,
          end_learning_rate=0.001, log_every=10, save_prefix=None, place=None):
    """Train ``model`` as the course did; returns ``{'losses': [...], 'lrs': [...], 'valid': [(acc, loss)]}``.

    Args:
        model: a ``fluid.dygraph.Layer`` with one logit per image.
        train_loader: a reader function yielding ``(images, float labels [N, 1])``.
        valid_loader: a reader function for :func:`validate` after each epoch, or None.
        epoch_num: epochs.
        learning_rate: the fixed rate, or the start of ``PolynomialDecay`` when
            ``decay_steps`` is given (seed 001: 0.005 over ``(400 // 10 + 1) * 2.5`` steps to 0.001).
        decay_steps: ``PolynomialDecay`` horizon, or None for a fixed rate.
        end_learning_rate: ``PolynomialDecay``'s final rate.
        log_every: print and record the loss every this many batches.
        save_prefix: ``save_dygraph`` prefix for the model and optimizer state, or None.
        place: ``fluid.CPUPlace()`` / ``fluid.CUDAPlace(0)`` or None.
    """
    history = {"losses": [], "lrs": [], "valid": []}
    with fluid.dygraph.guard(place):
        print("start training ... ")
        model.train()
        if decay_steps:
            lr = fluid.dygraph.PolynomialDecay(learning_rate, decay_steps, end_learning_rate)
        else:
            lr = learning_rate
        opt = fluid.optimizer.Momentum(learning_rate=lr, momentum=0.9, parameter_list=model.parameters())
        for epoch in range(epoch_num):
            for batch_id, data in enumerate(train_loader()):
                x_data, y_data = data
                img = fluid.dygraph.to_variable(x_data)
                label = fluid.dygraph.to_variable(y_data)
                logits = model(img)
                loss = fluid.layers.sigmoid_cross_entropy_with_logits(logits, label)
                avg_loss = fluid.layers.mean(loss)
                if batch_id % log_every == 0:
                    print("epoch: {}, batch_id: {}, loss is: {}".format(epoch, batch_id, avg_loss.numpy()))
                    history["losses"].append(float(avg_loss.numpy()[0]))
                avg_loss.backward()
                opt.minimize(avg_loss)
                model.clear_gradients()
                history["lrs"].append(float(opt.current_step_lr()))
            if valid_loader is not None:
                acc, vloss = validate(model, valid_loader)
                print("[validation] accuracy/loss: {}/{}".format(acc, vloss))
                history["valid"].append((float(acc), float(vloss)))
        if save_prefix:
            fluid.save_dygraph(model.state_dict(), save_prefix)
            fluid.save_dygraph(opt.state_dict(), save_prefix)
    return history
