"""The command-line programs, one module each, installed as console scripts by ``pip install``.

=====================  ======================================  =================================
console script         module                                  from a checkout
=====================  ======================================  =================================
``palm-prepare-data``  :mod:`paddle_palm.commands.prepare_data`  ``python tools/prepare_data.py``
``palm-train``         :mod:`paddle_palm.commands.train`         ``python tools/train.py``
``palm-eval``          :mod:`paddle_palm.commands.eval`          ``python tools/eval.py``
``palm-predict``       :mod:`paddle_palm.commands.predict`       ``python tools/predict.py``
``palm-export``        :mod:`paddle_palm.commands.export`        ``python tools/export.py``
``palm-summary``       :mod:`paddle_palm.commands.summary`       ``python tools/summary.py``
``palm-app``           :mod:`paddle_palm.commands.app`           ``python tools/app.py``
=====================  ======================================  =================================

Each module has ``build_parser()``, ``main(argv)`` (returns the exit code; raises our
errors) and ``entry()``, the console script, which prepares the process and turns errors
and signals into one line (:func:`paddle_palm.cli.start`); ``python -m
paddle_palm.commands.NAME`` runs it too.  The modules import Paddle inside ``main``, not
at their top: the signal handlers must be installed before the seconds Paddle takes to
import, so that Ctrl-C then is one line too.
"""

