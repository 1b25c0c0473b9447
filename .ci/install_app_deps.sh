#!/usr/bin/env bash
# Install what the screening app's tests need on a fresh Debian machine, into the active Python
# environment: the `app` extra (Gradio, with FastAPI and uvicorn) and Selenium from PyPI, and
# Chromium with ChromeDriver from Debian's packages (the browser tests drive the page with them),
# and a CJK font (fonts-wqy-microhei) so the plots' Chinese class names are drawn and checked.
# Idempotent: when everything is there it only checks, in about a second.  Without them the app's
# server and browser tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if ! "$PYTHON" - <<'PY' >/dev/null 2>&1
import importlib.util, sys
sys.exit(0 if all(importlib.util.find_spec(n) for n in ("gradio", "fastapi", "uvicorn", "selenium")) else 1)
PY
then
  echo "== installing paddle_palm[app] and selenium"
  "$PYTHON" -m pip install --quiet -e ".[app]" selenium
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (Debian)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  echo "== installing a CJK font (fonts-wqy-microhei, Debian) for the Chinese class names in plots"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if $SUDO apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 \
     || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1; }; then
    # matplotlib keeps its font list in a cache that does not notice new system fonts.
    rm -f "$("$PYTHON" -c 'import matplotlib; print(matplotlib.get_cachedir())')"/fontlist-*.json
  else
    echo "(no CJK font installed: the plots fall back to English class names; the Chinese-glyph test skips)"
  fi
fi
echo "app test dependencies: $("$PYTHON" -c 'import importlib.metadata as m; print("gradio", m.version("gradio"), "| selenium", m.version("selenium"))'); $(chromium --version 2>/dev/null | head -1); $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
