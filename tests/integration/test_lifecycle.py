"""``workbench app`` ends everything it started: on SIGTERM, SIGINT, SIGHUP and when it is killed (-9).

Each case runs the real command on a free port with a one-cell notebook whose kernel starts a child
process of its own (as a kernel's worker would), loads the page once (Voila starts the kernel), sends the
signal to the launcher and then checks, within 10 s: no process of the family (server, kernel, the
kernel's child) is left, the port is free again and the app's temporary folder is gone.
"""

from __future__ import annotations

import http.cookiejar
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest

from workbench.ports import free_port, port_is_free

#: The launcher, the server, the kernel and the kernel's own child must all be gone this soon.
DEADLINE_SECONDS = 10.0

NOTEBOOK_CELL = """import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("worker", worker.pid)
"""


@pytest.fixture
def notebook_dir(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    nbformat.write(nb, tmp_path / "workbench.ipynb")
    return tmp_path


def _start_app(notebook_dir: Path, out: Path) -> tuple[subprocess.Popen, str, int]:
    port = free_port()
    with open(out, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--port", str(port),
                                 "--notebook-dir", str(notebook_dir)], stdout=fo, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        match = re.search(r"http://\S+token=\w+", out.read_text())
        if match:
            return proc, match.group(0), port
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, f"no URL printed: {out.read_text()}"
        time.sleep(0.2)


def _runtime_dir(server: psutil.Process) -> Path:
    config = next(a for a in server.cmdline() if a.startswith("--config="))
    return Path(config.split("=", 1)[1]).parent


def _wait_for_family(launcher: psutil.Process, n: int, timeout: float = 60.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while True:
        family = launcher.children(recursive=True)
        if len(family) >= n or time.monotonic() > deadline:
            return family
        time.sleep(0.3)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"])
def test_app_leaves_nothing_behind(notebook_dir, tmp_path, how):
    proc, url, port = _start_app(notebook_dir, tmp_path / "out.txt")
    launcher = psutil.Process(proc.pid)
    family: list[psutil.Process] = []
    try:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(url, timeout=90) as r:  # Voila runs the notebook: a kernel and its worker
            page = r.read()
            assert r.status == 200 and "token=" not in r.geturl(), r.geturl()
        assert b"worker" in page
        family = _wait_for_family(launcher, 3)  # server, kernel, the kernel's worker
        assert len(family) >= 3, [p.cmdline() for p in family]
        runtime = _runtime_dir(family[0])
        assert runtime.is_dir()
        assert not port_is_free("127.0.0.1", port)

        t0 = time.monotonic()
        if how == "SIGKILL":
            proc.kill()
        else:
            proc.send_signal(getattr(signal, how))
        gone, alive = psutil.wait_procs([launcher, *family], timeout=DEADLINE_SECONDS)
        elapsed = time.monotonic() - t0
        assert not alive, f"left running {elapsed:.1f} s after {how}: {[p.cmdline() for p in alive]}"
        if how != "SIGKILL":
            assert proc.wait(1) == 0, (tmp_path / "out.txt").read_text()
        deadline = t0 + DEADLINE_SECONDS
        while (runtime.exists() or not port_is_free("127.0.0.1", port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert port_is_free("127.0.0.1", port), f"port {port} still taken after {how}"
        assert not runtime.exists(), f"{runtime} left after {how}"
    finally:
        for p in [launcher, *family]:
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_view_ends_and_frees_its_port(tmp_path, how):
    import numpy as np
    import tifffile

    src = tmp_path / "tiny.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    port = free_port()
    out = tmp_path / "view.txt"
    with open(out, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "view", str(src), "--port", str(port)],
                                stdout=fo, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "serving until" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        assert not port_is_free("127.0.0.1", port)
        proc.send_signal(getattr(signal, how))
        assert proc.wait(DEADLINE_SECONDS) == 0, out.read_text()
        assert port_is_free("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
