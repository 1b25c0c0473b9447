"""Remove outputs from the course notebooks before they are committed.

The notebooks in ``notebooks/`` are kept in git without outputs, execution
counts or per-run metadata, so a diff shows only what a person changed and the
repository does not grow with every run.  Run this after working in Jupyter or
AI Studio:

    python tools/strip_notebooks.py                  # strip every notebooks/*.ipynb in place
    python tools/strip_notebooks.py --check          # exit 1 and list the notebooks that have outputs
    python tools/strip_notebooks.py path/to/x.ipynb  # strip only these files

Cell tags (such as the ``parameters`` tag of the first cell) are kept.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paddle_palm.cli import ArgumentParser, run  # noqa: E402
from paddle_palm.errors import DataError, MissingFileError  # noqa: E402
from paddle_palm.fileio import write_text_atomic  # noqa: E402

#: Cell metadata kept when stripping; everything else (collapsed, scrolled, execution timings) goes.
KEPT_CELL_METADATA = ("tags",)
#: Notebook metadata kept when stripping.
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")


def strip_notebook(nb):
    """Return ``nb`` (a notebook as a JSON dict) without outputs and run metadata.

    Args:
        nb: the parsed ``.ipynb`` content; it is modified in place.

    Returns:
        dict: the same object, stripped.
    """
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEPT_NOTEBOOK_METADATA}
    if "language_info" in nb["metadata"]:
        nb["metadata"]["language_info"] = {"name": nb["metadata"]["language_info"].get("name", "python")}
    for cell in nb.get("cells", []):
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEPT_CELL_METADATA}
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def _load(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"notebook not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not a notebook (invalid JSON: {exc})") from None


def _dump(nb):
    # The layout Jupyter itself writes (indent 1, non-ASCII kept), so files do not churn.
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None):
    parser = ArgumentParser(
        prog="strip_notebooks.py",
        description="Remove outputs, execution counts and run metadata from .ipynb files (kept: cell tags).",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="notebooks to strip (default: every notebooks/*.ipynb of the project)"
    )
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if any notebook needs stripping")
    args = parser.parse_args(argv)

    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = _load(path)
        text = Path(path).read_text(encoding="utf-8")
        stripped = _dump(strip_notebook(nb))
        if stripped != text:
            dirty.append(path)
            if not args.check:
                write_text_atomic(path, stripped)
    verb = "need stripping" if args.check else "stripped"
    for path in dirty:
        print(f"{verb}: {path}")
    if not dirty:
        print(f"{len(paths)} notebook(s) already clean")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    run(main)
