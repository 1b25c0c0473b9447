"""Run a PaddlePaddle 1.8 program unchanged on Paddle 3: ``python -m legacy_fluid [--plain] program.py [args...]``.

Gives the program the environment of 2020 (:mod:`legacy_fluid.env2020`: numpy and
Pillow names removed since, numpy 1.x printing, shapes printed as lists, no warnings
1.8 did not print), registers legacy_fluid as ``paddle.fluid``
(:func:`legacy_fluid.install`) and runs the program as ``__main__`` with ``sys.argv`` set
to the program and its arguments.  ``--plain`` leaves numpy, Pillow, printing and
warnings as they are today (except Paddle's note on import that ccache, a C++ compiler
cache, is missing: it concerns Paddle's extension builds, never the program).  A checkpoint refused by the restricted unpickler ends the
program with one line ``error: <file>: refused to load the global ...``.
"""

import os
import runpy
import sys
import warnings

USAGE = ("usage: python -m legacy_fluid [--plain] PROGRAM.py [ARGS...]\n\n"
         "Run a PaddlePaddle 1.8 fluid program unchanged on Paddle 3 (paddle.fluid is provided by legacy_fluid).\n"
         "  --plain  do not restore the numpy/Pillow names, printing and warnings of 2020")


def main(argv=None):
    """Set up the 2020 environment, install the 1.8 API and run the program ``argv[0]``; returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plain = False
    if argv and argv[0] == "--plain":
        plain = True
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    program = argv[0]
    if not os.path.isfile(program):
        print("error: program not found: {}".format(program), file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message=".*No ccache found.*")
    import legacy_fluid
    from legacy_fluid import env2020

    if not plain:
        # before Paddle is imported: its import-time notes are warnings too
        env2020.apply(numpy_names=False, pillow_names=False, numpy_printing=False, shape_lists=False)
    legacy_fluid.install()
    if not plain:
        env2020.apply(quiet=False)
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    try:
        runpy.run_path(program, run_name="__main__")
    except legacy_fluid.UnsafeCheckpointError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
