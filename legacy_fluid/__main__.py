"""Run a PaddlePaddle 1.8 program unchanged on Paddle 3: ``python -m legacy_fluid program.py [args...]``.

Registers legacy_fluid as ``paddle.fluid`` (:func:`legacy_fluid.install`) and runs the
program as ``__main__`` with ``sys.argv`` set to the program and its arguments.
"""

import os
import runpy
import sys


def main(argv=None):
    """Install the 1.8 API and run the program named by ``argv[0]``; returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m legacy_fluid PROGRAM.py [ARGS...]\n\n"
              "Run a PaddlePaddle 1.8 fluid program unchanged on Paddle 3 (paddle.fluid is provided by legacy_fluid).")
        return 0 if argv else 2
    program = argv[0]
    if not os.path.isfile(program):
        print("error: program not found: {}".format(program), file=sys.stderr)
        return 2
    import legacy_fluid

    legacy_fluid.install()
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    runpy.run_path(program, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
