#!/usr/bin/env bash
# Checkpoints written by legacy_fluid on today's Paddle resume on a real PaddlePaddle 1.8.5.
#
# tests/fluid_programs/checkpoint_interchange.py writes model and optimizer state (SGD,
# SGD + NaturalExpDecay, Momentum + PolynomialDecay, Adam, Adam + PiecewiseDecay,
# Adagrad + ExponentialDecay) under `python -m legacy_fluid`; the real 1.8.5 then loads
# each with load_dygraph, set_dict's model and optimizer and trains two more steps.  What it
# prints must equal what 1.8.5 printed when resuming its own files
# (tests/golden/fluid/checkpoint_resume.txt), to float32 rounding.  The other direction
# (1.8.5's files under legacy_fluid) is a test: tests/test_fluid_course_programs.py.
#
# FLUID18_PYTHON: a Python 3.7 with paddlepaddle 1.8.5 (.ci/fluid_golden.sh sets it).
# FLUID_MODERN_PYTHON: the Python with today's Paddle (default: python, the CI venv's).
# Exit status: 0 when they agree (or the check cannot run here: the reason is printed), 1 otherwise.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY18="${FLUID18_PYTHON:-}"
MODERN="${FLUID_MODERN_PYTHON:-python}"
PROGRAM="$ROOT/tests/fluid_programs/checkpoint_interchange.py"

[ -n "$PY18" ] || { echo "fluid checkpoint interchange skipped: FLUID18_PYTHON is not set"; exit 0; }
if ! PYTHONPATH="$ROOT" "$MODERN" -c "import paddle, legacy_fluid" >/dev/null 2>&1; then
    echo "fluid checkpoint interchange skipped: $MODERN does not import paddle and legacy_fluid"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
if ! PYTHONPATH="$ROOT" "$MODERN" -m legacy_fluid "$PROGRAM" write "$WORK/files" >"$WORK/write.log" 2>&1; then
    tail -n 20 "$WORK/write.log"
    echo "fluid checkpoint interchange FAILED: legacy_fluid could not write the checkpoints"
    exit 1
fi
if ! "$PY18" "$PROGRAM" resume "$WORK/files" >"$WORK/resume.txt" 2>"$WORK/resume.err"; then
    tail -n 20 "$WORK/resume.err"
    echo "fluid checkpoint interchange FAILED: paddle 1.8.5 could not resume from legacy_fluid's checkpoints"
    exit 1
fi
if ! PYTHONPATH="$ROOT" "$MODERN" "$ROOT/tools/make_fluid_golden.py" --compare "$WORK/resume.txt" \
        "$ROOT/tests/golden/fluid/checkpoint_resume.txt"; then
    echo "fluid checkpoint interchange FAILED: paddle 1.8.5 resumed legacy_fluid's checkpoints to other numbers"
    exit 1
fi
echo "fluid checkpoint interchange passed: paddle 1.8.5 resumed $(ls "$WORK/files" | wc -l) files written by legacy_fluid ($(wc -l <"$WORK/resume.txt") steps as from its own)"
exit 0
