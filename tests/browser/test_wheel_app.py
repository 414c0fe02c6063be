"""A wheel install, not the checkout, serves a working app: ``pip wheel`` the project, install the wheel into
a fresh venv, run its ``workbench app --port 0`` from a folder outside the repository and render the app
in headless chromium.

Offline and without reinstalling torch: the fresh venv gets a ``.pth`` line naming the test venv's
site-packages for the dependencies (a plain path line: the test venv's editable-install finder is not
loaded, so the checkout is not importable), and links to the test venv's ``share/jupyter`` and
``etc/jupyter`` (the Voila templates, widget JavaScript and server-extension configuration that
``pip install 'em-workbench[app]'`` would put in the venv). The wheel itself is installed with
``--no-deps --no-index``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: What the wheel is built from (copied, so the build writes nothing into the checkout).
SOURCES = ("pyproject.toml", "README.md", "workbench", "widgets")
URL_RE = re.compile(r"http://\S+/voila/render/workbench\.ipynb\?token=\w+")
#: Boxes of the plot canvases under a selector (Bokeh draws inside shadow roots).
CANVASES = """(sel) => { const root = document.querySelector(sel); if (!root) return [];
  const c = []; const walk = (r) => { r.querySelectorAll('*').forEach(e => { if (e.tagName === 'CANVAS') c.push(e);
  if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(root);
  return c.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }).filter(r => r[2] > 100); }"""


def _run(cmd: list, **kwargs) -> str:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out.stdout


def _build_wheel(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", root / "dist", src])
    (wheel,) = (root / "dist").glob("em_workbench-*.whl")
    return wheel


def _fresh_venv(root: Path, wheel: Path) -> Path:
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_em_workbench_test_deps.pth").write_text("\n".join(deps) + "\n")
    for sub in ("share", "etc"):
        (venv / sub).mkdir(exist_ok=True)
        (venv / sub / "jupyter").symlink_to(Path(sys.prefix) / sub / "jupyter")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel])
    return venv


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with the project installed from its wheel (dependencies from the test venv)."""
    root = tmp_path_factory.mktemp("wheel")
    t = time.monotonic()
    wheel = _build_wheel(root)
    names = zipfile.ZipFile(wheel).namelist()
    assert "widgets/serve/notebooks/workbench.ipynb" in names, "the app notebook is not in the wheel"
    assert "workbench/ports.py" in names and not any(n.startswith("notebooks/") for n in names)
    venv = _fresh_venv(root, wheel)
    print(f"wheel built and installed in {time.monotonic() - t:.1f} s")
    return venv


def _clean_env() -> dict:
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "WORKBENCH_PROXY_PORTS_DIR"):
        env.pop(key, None)
    return env


def _imported_from(venv: Path, cwd: Path) -> dict:
    code = ("import json, sys, workbench, widgets, widgets.serve as s; "
            "print(json.dumps({'workbench': workbench.__file__, 'widgets': widgets.__file__, "
            "'notebooks': str(s.default_notebook_dir()), 'path': sys.path}))")
    return json.loads(_run([venv / "bin" / "python", "-c", code], cwd=cwd, env=_clean_env()))


def _wait_for_url(proc: subprocess.Popen, out: Path, err: Path, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = URL_RE.search(out.read_text())
        if m:
            return m.group(0)
        assert proc.poll() is None, f"workbench app exited ({proc.returncode}): {err.read_text()[-1500:]}"
        time.sleep(0.3)
    raise AssertionError(f"workbench app printed no URL within {timeout:g} s: {err.read_text()[-1500:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl+C, as a person stops it (the server and kernels stop with it); kill what is left after 30 s."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for child in family:
        if child.is_running():
            child.kill()


def _kernel_commands(base_url: str, token: str) -> list[list[str]]:
    import psutil

    with urllib.request.urlopen(f"{base_url}api/kernels?token={token}", timeout=10) as r:
        ids = [k["id"] for k in json.load(r)]
    return [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if any(f"kernel-{kid}" in part for kid in ids for part in (p.info["cmdline"] or []))]


def test_wheel_install_serves_the_app(wheel_venv, tmp_path, page, shoot, pixels):
    from workbench.project import Project, ProjectOptions

    site = wheel_venv / "lib"
    nb_dir = Path(_imported_from(wheel_venv, tmp_path)["notebooks"])
    info = _imported_from(wheel_venv, nb_dir)  # where the kernels run
    for key in ("workbench", "widgets", "notebooks"):
        assert Path(info[key]).is_relative_to(site), f"{key} comes from {info[key]}, not the installed wheel"
    assert not [p for p in info["path"] if p and Path(p).resolve() == REPO], "the checkout is importable"

    project = Project.create(tmp_path / "projects" / "sample", raw=None,
                             options=ProjectOptions(sample_shape=(16, 128, 128)))
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    out, err = run_dir / "stdout.txt", run_dir / "stderr.txt"
    t0 = time.monotonic()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([wheel_venv / "bin" / "workbench", "app", "--port", "0", "--project", project.root],
                                cwd=run_dir, stdout=fo, stderr=fe, env=_clean_env())
    try:
        url = _wait_for_url(proc, out, err)
        t_url = time.monotonic() - t0
        page.goto(url, timeout=240_000)
        page.wait_for_selector(".wb-step-data", timeout=240_000)
        assert "16 × 128 × 128" in page.inner_text(".wb-data-shape")
        page.wait_for_function(f"() => ({CANVASES})('.wb-data-preview').length > 0", timeout=120_000)
        box = page.evaluate(CANVASES, ".wb-data-preview")[0]
        deadline = time.monotonic() + 60
        while True:  # the plot draws a little after its canvas appears
            crop = pixels.crop(pixels.load(shoot(page, "wheel-app")), box)
            if pixels.std(crop) > 8 or time.monotonic() > deadline:
                break
            page.wait_for_timeout(1000)
        pixels.assert_not_uniform(crop, what="data slice preview (app served from the wheel)")
        print(f"wheel app: URL after {t_url:.1f} s, first render after {time.monotonic() - t0:.1f} s")
        base, token = url.split("voila/render/")[0], url.rsplit("token=", 1)[1]
        kernels = _kernel_commands(base, token)
        assert kernels and all(cmd[0].startswith(str(wheel_venv)) for cmd in kernels), kernels
        # the restricted viewer proxy (widgets.serve.proxy, from the wheel) is loaded: unregistered port -> 403
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}proxy/9/?token={token}", timeout=10)
        assert refused.value.code == 403
    finally:
        _stop(proc)
    assert proc.returncode == 0, err.read_text()[-1500:]
