"""Reference models and course loops written against the PaddlePaddle 1.8 ``fluid`` API (SPEC 2.1, 2.4, 3, 4).

* :mod:`.senet_fluid` - the PALM SENet18 (SPEC 2.1) in pure 1.8 style: runs on a real
  PaddlePaddle 1.8.5 and on Paddle 3 under :func:`legacy_fluid.install`;
* :mod:`.senet_mixed` - the same network in the seed's mixed style (``paddle.nn`` layers
  plus a fluid ``Linear`` head), which needs Paddle 3 and ``install()``;
* :mod:`.resnet_fluid` - ResNet-50/101/152 of the course (SPEC 2.4) in 1.8 style;
* :mod:`.readers` - the course's generator readers (SPEC 1.3);
* :mod:`.training` - the course's train / validate loops (seeds 000 and 001);
* :mod:`.mapping` - the documented name mapping between these models and
  ``paddle_palm.models`` (SPEC 4).

The model modules do ``import paddle.fluid as fluid``: on Paddle 3 call
``legacy_fluid.install()`` before importing them.  This package itself imports nothing
heavy, and every file here is Python 3.7 compatible.
"""
