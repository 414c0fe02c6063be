"""Every notebook runs top to bottom (nbclient), tutorials in their fast mode (smaller data, same code)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.notebook

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TUTORIALS = sorted((NOTEBOOKS / "tutorials").glob("*.ipynb"))
APP_NOTEBOOK = Path(__file__).resolve().parents[2] / "widgets" / "serve" / "notebooks" / "workbench.ipynb"


def _run(path: Path, cwd: Path, env: dict, timeout: int = 600) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the test's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_notebooks_are_committed_without_outputs():
    for path in [APP_NOTEBOOK, *TUTORIALS]:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def test_tutorial_list():
    assert [p.stem for p in TUTORIALS] == ["01_em_data", "02_architectures", "03_sparse_annotations",
                                         "04_instances_and_metrics", "05_large_volumes"]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    nb = _run(path, tmp_path, {"WORKBENCH_TUTORIAL_FAST": "1"})
    outs = _outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]
    # every tutorial shows at least one plot (a HoloViews/Bokeh output)
    assert any("application/vnd.holoviews_exec.v0+json" in o.get("data", {}) or
               "text/html" in o.get("data", {}) for o in outs), f"{path.name} displayed no plot"
    assert not list(Path.cwd().glob("*.zarr")), "a tutorial wrote into the working directory"


def test_app_notebook_builds_the_app(tmp_path):
    from workbench.project import Project, ProjectOptions

    project = Project.create(tmp_path / "projects" / "sample", raw=None,
                             options=ProjectOptions(sample_shape=(4, 64, 64)))
    nb = _run(APP_NOTEBOOK, tmp_path,
              {"WORKBENCH_PROJECT": str(project.root), "WORKBENCH_WATCHDOG": "0"})
    outs = _outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"], [o.get("evalue") for o in outs]
    views = [o for o in outs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, "the app notebook should display exactly one widget (the app)"
    assert json.loads((project.root / "project.json").read_text())["state"].get("step", "data") == "data"
