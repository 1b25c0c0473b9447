#!/usr/bin/env bash
# Regenerate the fluid 1.8 golden files with a real PaddlePaddle 1.8.5 and compare them
# with the committed tests/golden/fluid (SPEC 3, 4); then check that checkpoints written by
# legacy_fluid on today's Paddle resume on the real 1.8.5 (.ci/fluid_checkpoints.sh).
#
# Needs pyenv's Python 3.7 (~/.pyenv/versions/3.7.*/bin/python).  A virtual environment
# with paddlepaddle==1.8.5 is created once in a cache folder (FLUID18_VENV, default
# ~/.cache/paddle_palm/fluid18) and reused.  FLUID18_PYTHON=/path/to/python skips the
# set-up and uses that interpreter.
#
# Exit status: 0 when the regenerated files equal the committed ones byte for byte (and the
# checkpoint interchange passes), or
# when the check cannot run here (no Python 3.7, or the install failed, e.g. no network:
# the reason is printed); 1 when they differ.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOLDEN="$ROOT/tests/golden/fluid"
VENV="${FLUID18_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/paddle_palm/fluid18}"
PACKAGES=(paddlepaddle==1.8.5 numpy==1.19.5 opencv-python-headless==4.2.0.34 protobuf==3.20.3 pillow==8.4.0)

skip() {
    echo "fluid golden check skipped: $*"
    exit 0
}

is_paddle_185() {
    "$1" -c "import paddle, sys; sys.exit(0 if paddle.__version__ == '1.8.5' else 1)" >/dev/null 2>&1
}

# a venv made before Pillow was in PACKAGES gets it added (the MNIST programs read a PNG)
has_packages() {
    "$1" -c "import PIL, cv2" >/dev/null 2>&1 || \
        timeout 600 "$(dirname "$1")/pip" install --disable-pip-version-check -q "${PACKAGES[@]}" >/dev/null 2>&1
}

PY="${FLUID18_PYTHON:-}"
if [ -n "$PY" ]; then
    is_paddle_185 "$PY" || skip "FLUID18_PYTHON=$PY does not import paddle 1.8.5"
elif [ -x "$VENV/bin/python" ] && is_paddle_185 "$VENV/bin/python" && has_packages "$VENV/bin/python"; then
    PY="$VENV/bin/python"
else
    PY37=""
    for candidate in "$HOME"/.pyenv/versions/3.7.*/bin/python; do
        [ -x "$candidate" ] && PY37="$candidate"
    done
    [ -n "$PY37" ] || skip "no pyenv Python 3.7 (~/.pyenv/versions/3.7.*/bin/python) on this machine"
    echo "creating $VENV with ${PACKAGES[*]}"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$PY37" -m venv "$VENV" >/tmp/fluid18_venv.log 2>&1; then
        skip "could not create a Python 3.7 venv: $(tail -n 1 /tmp/fluid18_venv.log)"
    fi
    if ! timeout 1200 "$VENV/bin/pip" install --disable-pip-version-check -q "${PACKAGES[@]}" \
            >/tmp/fluid18_pip.log 2>&1; then
        reason="$(grep -m1 -iE 'error|could not|no matching' /tmp/fluid18_pip.log || tail -n 1 /tmp/fluid18_pip.log)"
        rm -rf "$VENV"
        skip "pip could not install paddlepaddle 1.8.5 (no network or package index?): $reason"
    fi
    is_paddle_185 "$VENV/bin/python" || skip "paddle 1.8.5 installed but does not import"
    PY="$VENV/bin/python"
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT" "$OUT.diff"' EXIT
echo "regenerating fluid golden files with $("$PY" -c 'import paddle, sys; print("paddle", paddle.__version__, "python", sys.version.split()[0])')"
start=$SECONDS

generate() {
    rm -rf "${OUT:?}"/*
    if ! (cd "$ROOT" && "$PY" tools/make_fluid_golden.py --out "$OUT" >"$OUT.log" 2>&1); then
        tail -n 30 "$OUT.log"
        echo "fluid golden check FAILED: tools/make_fluid_golden.py did not run on paddle 1.8.5"
        exit 1
    fi
    rm -f "$OUT.log"
}

checkpoints() {
    FLUID18_PYTHON="$PY" "$ROOT/.ci/fluid_checkpoints.sh"
}

generate
if diff -r "$GOLDEN" "$OUT" >"$OUT.diff" 2>&1; then
    echo "fluid golden check passed: paddle 1.8.5 reproduces tests/golden/fluid byte for byte ($((SECONDS - start)) s)"
    checkpoints
    exit $?
fi
# 1.8.5's vectorised CPU reductions can round the last bit differently when a buffer lands
# on another alignment; one rerun tells such a flake from a real change.
echo "first regeneration differs from tests/golden/fluid; regenerating once more:"
head -n 6 "$OUT.diff"
generate
if diff -r "$GOLDEN" "$OUT" >"$OUT.diff" 2>&1; then
    echo "fluid golden check passed on the second run: byte for byte ($((SECONDS - start)) s)"
    checkpoints
    exit $?
fi
head -n 40 "$OUT.diff"
echo "fluid golden check FAILED: tests/golden/fluid differs from what paddle 1.8.5 produces now"
echo "(regenerate with: <python3.7 with paddle 1.8.5> tools/make_fluid_golden.py)"
exit 1
