"""The course notebooks run top to bottom in smoke mode.

Every ``notebooks/*.ipynb`` is executed with nbclient, the way a student runs it
on AI Studio (one fresh Python kernel, working directory ``notebooks/``), with a
papermill-style cell injected after the ``parameters`` cell: ``SMOKE = True``
(tiny synthetic or standard-format data, tiny image sizes, one epoch) and
``OUTPUT_DIR`` inside pytest's temporary folder, so nothing is written into the
source tree.  Any cell error fails the test and shows the cell's traceback.

The kernel is the Python running the tests (a kernel spec written to a
temporary folder points at ``sys.executable``), so a fresh
``pip install -e .[cpu,test]`` is all it needs.  Budget: about 20-30 s a notebook.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: The parameters every notebook declares in its first cell (issue: notebooks; papermill style).
REQUIRED_PARAMETERS = ("SMOKE", "DATA_DIR", "EPOCHS")
#: Seconds one cell may take in smoke mode before the run is declared hung.
CELL_TIMEOUT = 240


@pytest.fixture(scope="session")
def kernel_manager_factory(tmp_path_factory):
    """Build kernel managers whose kernel is ``sys.executable -m ipykernel_launcher``.

    A user's own ``python3`` kernel spec may point at another Python; writing a
    spec into a private folder makes the run use exactly this interpreter.
    """
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    prefix = tmp_path_factory.mktemp("kernels")
    install(kernel_name="paddle-palm-test", prefix=str(prefix))
    kernel_dirs = [str(prefix / "share" / "jupyter" / "kernels")]

    def make():
        ksm = KernelSpecManager(kernel_dirs=kernel_dirs)
        return KernelManager(kernel_name="paddle-palm-test", kernel_spec_manager=ksm)

    return make


def _parameters_index(nb):
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def _inject_parameters(nb, values):
    """Insert a cell assigning ``values`` after the ``parameters`` cell (what papermill does)."""
    source = "# Parameters injected by tests/test_notebooks.py\n" + "".join(
        f"{name} = {value!r}\n" for name, value in values.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(_parameters_index(nb) + 1, cell)
    return nb


def test_there_is_a_notebook_per_seed_and_topic():
    names = [p.stem for p in NOTEBOOKS]
    assert names == [
        "00_data_tour",
        "01_senet18_palm",
        "02_resnet50_palm",
        "03_squeezenet_palm",
        "04_se_resnet_mnist",
        "05_senet_cifar10",
        "06_legacy_fluid",
        "07_screening_report",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_holds_the_parameters(path):
    nb = nbformat.read(path, as_version=4)
    assert _parameters_index(nb) == 0, f"{path.name}: the first cell must be tagged 'parameters'"
    source = nb.cells[0].source
    for name in REQUIRED_PARAMETERS:
        assert f"\n{name} = " in "\n" + source, f"{path.name}: the parameters cell does not set {name}"
    assert "\nSMOKE = True" in "\n" + source, f"{path.name}: SMOKE must default to True"


def test_notebooks_are_committed_without_outputs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "strip_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        "notebooks have outputs or run metadata; run `python tools/strip_notebooks.py`:\n" + result.stdout
    )


def test_strip_notebooks_removes_outputs_and_keeps_tags(tmp_path):
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    cell.execution_count = 3
    cell.metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00.000000Z"}
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    tool = [sys.executable, str(ROOT / "tools" / "strip_notebooks.py")]

    assert subprocess.run(tool + ["--check", str(path)], capture_output=True, timeout=120).returncode == 1
    assert subprocess.run(tool + [str(path)], capture_output=True, timeout=120).returncode == 0
    clean = nbformat.read(path, as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in clean.cells if c.cell_type == "code")
    assert all("execution" not in c.metadata for c in clean.cells)
    assert clean.cells[0].metadata["tags"] == ["parameters"]
    assert subprocess.run(tool + ["--check", str(path)], capture_output=True, timeout=120).returncode == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, kernel_manager_factory):
    nb = nbformat.read(path, as_version=4)
    _inject_parameters(nb, {"SMOKE": True, "OUTPUT_DIR": str(tmp_path / "output")})

    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONWARNINGS="ignore")
    client = nbclient.NotebookClient(
        nb,
        km=kernel_manager_factory(),
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute(env=env)
    seconds = time.perf_counter() - start
    print(f"{path.name}: executed in {seconds:.1f} s")

    # The run really produced something: every code cell ran, and the figures were drawn.
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    images = sum(1 for c in code_cells for o in c.outputs if "image/png" in o.get("data", {}))
    assert images >= 1, f"{path.name} drew no figure"
    # No output is a traceback shown as text (an error caught and printed would hide a failure).
    for cell in code_cells:
        for out in cell.outputs:
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            assert "Traceback (most recent call last)" not in text, f"{path.name}: {json.dumps(cell.source)[:200]}"
