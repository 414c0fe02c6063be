"""The project's own contracts: dependencies in sync, import direction, a light core, the CLI surface."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
UI_MODULES = {"ipywidgets", "IPython", "holoviews", "panel", "bokeh", "voila", "jupyter_bokeh", "widgets"}
# the app server's own packages: only widgets.serve (the app layer) imports them
SERVER_MODULES = {"jupyter_server", "jupyter_server_proxy", "jupyter_core", "nbformat", "nbclient", "tornado"}
# pip names whose conda-forge names differ
CONDA_NAMES = {"torch": "pytorch"}


def _requirement_names(reqs: list[str]) -> set[str]:
    names = set()
    for r in reqs:
        name = re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower().replace("_", "-").replace(".", "-")
        if name and name != "em-workbench":
            names.add(CONDA_NAMES.get(name, name))
    return names


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"])
    for extra in ("app", "test", "export"):
        wanted |= _requirement_names(project["optional-dependencies"][extra])
    env_lines = (REPO / "environment.yml").read_text().splitlines()
    deps = env_lines[env_lines.index("dependencies:") + 1 :]
    conda = set()
    for line in deps:
        m = re.match(r"  - ([A-Za-z0-9_.\-]+)", line) or re.match(r"      - ([A-Za-z][A-Za-z0-9_.\-]*)", line)
        if m and m.group(1) not in {"python", "pip"}:
            conda.add(m.group(1).lower().replace("_", "-").replace(".", "-"))
    assert wanted - conda == set(), f"in pyproject but not environment.yml: {sorted(wanted - conda)}"
    assert conda - wanted == set(), f"in environment.yml but not pyproject: {sorted(conda - wanted)}"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


def _top_level_modules(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported (module level, not inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    mods = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                mods |= {a.name.split(".")[0] for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                mods.add(sub.module.split(".")[0])
    return mods


COMMANDS = REPO / "workbench" / "commands"


@pytest.mark.parametrize("path", sorted((REPO / "workbench").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_core_never_imports_ui(path):
    """The core library never imports UI packages (nor ``widgets``). Commands are the top layer: they may
    import the app layer (``widgets``) lazily, inside a function, and never a UI package directly."""
    mods = _imported_modules(path)
    if COMMANDS in path.parents:
        bad = (mods & UI_MODULES - {"widgets"}) | (_top_level_modules(path) & UI_MODULES)
    else:
        bad = mods & (UI_MODULES | SERVER_MODULES)
    assert not bad, f"{path.relative_to(REPO)} imports UI modules {sorted(bad)}: the core must stay UI-free"


def test_core_keeps_nothing_about_app_hosting():
    assert not (REPO / "workbench" / "server.py").exists(), "app hosting lives in widgets/serve/"
    for path in (REPO / "workbench").rglob("*.py"):
        if COMMANDS not in path.parents:
            text = path.read_text()
            assert "jupyter_server" not in text and "voila/render" not in text, f"{path.relative_to(REPO)} hosts the app"


def test_import_workbench_is_light():
    code = (
        "import sys, workbench, workbench.io, workbench.cli; "
        "heavy = [m for m in ('torch', 'neuroglancer', 'distributed', 'sklearn', 'holoviews') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"`import workbench` pulled in heavy packages: {out}"


DESIGN_COMMANDS = ["app", "sample", "import", "datasets", "train", "predict", "segment", "evaluate", "view", "export"]


def test_cli_offers_every_command_of_the_contract():
    out = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, check=True)
    for cmd in DESIGN_COMMANDS:
        assert re.search(rf"^\s+{cmd}\s", out.stdout, re.M), f"`workbench {cmd}` missing from --help:\n{out.stdout}"


@pytest.mark.parametrize("cmd", DESIGN_COMMANDS)
def test_each_command_has_help(cmd):
    out = subprocess.run([sys.executable, "-m", "workbench", cmd, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: workbench " + cmd in out.stdout


def test_cli_without_command_prints_help():
    out = subprocess.run([sys.executable, "-m", "workbench"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMMAND" in out.stdout
