"""``paddle.fluid.io`` of 1.8, the dygraph part: reader decorators and ``DataLoader.from_generator``.

``batch`` and ``shuffle`` are the classic reader decorators; ``DataLoader.from_generator``
(with ``return_list=True``, as dygraph requires) feeds batches from a generator set with
``set_batch_generator``, ``set_sample_list_generator`` or ``set_sample_generator``.  The
static-graph savers (``save_inference_model``, ``save_persistables`` ...) are not provided.
"""

import random

import numpy as np
import paddle

from legacy_fluid.fluid import _support

__all__ = ["batch", "shuffle", "DataLoader"]


def batch(reader, batch_size, drop_last=False):
    """Group the samples of ``reader`` into lists of ``batch_size`` (the last shorter one unless ``drop_last``)."""
    batch_size = int(batch_size)
    if batch_size <= 0:
        raise ValueError("batch_size should be a positive integeral value, but got batch_size={}".format(batch_size))

    def batch_reader():
        group = []
        for sample in reader():
            group.append(sample)
            if len(group) == batch_size:
                yield group
                group = []
        if group and not drop_last:
            yield group

    return batch_reader


def shuffle(reader, buf_size):
    """Shuffle the samples of ``reader`` within buffers of ``buf_size`` (Python's ``random``)."""

    def shuffled():
        buf = []
        for sample in reader():
            buf.append(sample)
            if len(buf) >= buf_size:
                random.shuffle(buf)
                for item in buf:
                    yield item
                buf = []
        if buf:
            random.shuffle(buf)
            for item in buf:
                yield item

    return shuffled


def _to_tensors(fields):
    return [paddle.to_tensor(np.asarray(field)) for field in fields]


class _GeneratorLoader(object):
    """The loader returned by ``DataLoader.from_generator``: iterate it for lists of tensors."""

    def __init__(self, feed_list, capacity, return_list):
        if not return_list:
            raise _support.not_provided("DataLoader.from_generator(return_list=False)",
                                        "dygraph loaders need return_list=True")
        self._make = None

    def set_batch_generator(self, reader, places=None):
        """``reader()`` yields batches: tuples/lists of numpy arrays."""
        self._make = lambda: (_to_tensors(batch) for batch in reader())
        return self

    def set_sample_list_generator(self, reader, places=None):
        """``reader()`` yields lists of samples (e.g. ``fluid.io.batch``); fields are stacked."""
        def make():
            for samples in reader():
                fields = list(zip(*samples))
                yield _to_tensors([np.stack([np.asarray(v) for v in field]) for field in fields])
        self._make = make
        return self

    def set_sample_generator(self, reader, batch_size, drop_last=True, places=None):
        """``reader()`` yields single samples; they are batched by ``batch_size``."""
        return self.set_sample_list_generator(batch(reader, batch_size, drop_last), places)

    def __iter__(self):
        if self._make is None:
            raise RuntimeError("Data source of DataLoader has not set yet")
        return iter(self._make())

    def __call__(self):
        return self.__iter__()


class DataLoader(object):
    """1.8 ``fluid.io.DataLoader``: only ``from_generator`` is provided."""

    @staticmethod
    def from_generator(feed_list=None, capacity=None, use_double_buffer=True, iterable=True, return_list=False,
                       use_multiprocess=False, drop_last=True):
        """A loader fed by a Python generator; dygraph programs pass ``return_list=True``."""
        return _GeneratorLoader(feed_list, capacity, return_list)


__getattr__ = _support.module_getattr(__name__)
