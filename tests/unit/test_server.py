"""The app server (``widgets.serve``): its command line and environment, the viewer port registry
(``workbench.ports``), the packaged app notebook, and the restricted proxy."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from widgets.serve import config, jupyter
from widgets.serve.jupyter import AppServerOptions, start_app_server
from workbench import ports
from workbench.errors import WorkbenchError


def test_register_proxy_port_only_inside_the_app(tmp_path, monkeypatch):
    monkeypatch.delenv(ports.PROXY_PORTS_ENV, raising=False)
    assert ports.register_proxy_port(1234) is None
    assert not ports.proxy_port_allowed(1234)
    monkeypatch.setenv(ports.PROXY_PORTS_ENV, str(tmp_path / "ports"))
    path = ports.register_proxy_port(1234)
    assert path.read_text() == str(os.getpid())
    assert ports.proxy_port_allowed(1234) and ports.proxy_port_allowed("1234")
    assert not ports.proxy_port_allowed(1235) and not ports.proxy_port_allowed("x")
    ports._unregister_all()
    assert not path.exists()


def test_ports_of_dead_processes_are_refused(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "4321").write_text(str(dead.pid))
    assert not ports.proxy_port_allowed(4321, root=tmp_path)
    assert not (tmp_path / "4321").exists()


def test_port_helpers():
    port = ports.free_port()
    assert ports.port_is_free("127.0.0.1", port) and ports.port_is_free("127.0.0.1", 0)
    assert not ports.wait_for_port("127.0.0.1", port, timeout=0.3, interval=0.1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not ports.port_is_free("127.0.0.1", taken)
        assert ports.wait_for_port("127.0.0.1", taken, timeout=5)
    # port 0 means any free port (the server's URL needs the real one); a taken port is replaced
    assert jupyter._choose_port("127.0.0.1", 0, None) > 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        moved = []
        new = jupyter._choose_port("127.0.0.1", s.getsockname()[1], lambda a, b: moved.append((a, b)))
        assert moved == [(s.getsockname()[1], new)] and new != s.getsockname()[1]


def test_app_notebook_is_package_data():
    nb_dir = config.default_notebook_dir()
    assert nb_dir == Path(config.__file__).parent / "notebooks"
    nb = nbformat.read(nb_dir / config.APP_NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 1 and "WorkbenchApp.from_env().show()" in code[0], "the app notebook stays one thin cell"
    assert not nb.cells[0].outputs and nb.cells[0].execution_count is None
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"widgets.serve" = ["notebooks/*.ipynb"]' in pyproject, "the notebook must ship in the wheel"


def test_importing_the_serve_package_is_light():
    code = ("import sys, widgets.serve, widgets.serve.proxy; "
            "print(','.join(m for m in ('jupyter_server', 'tornado', 'ipywidgets', 'holoviews', 'voila') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing widgets.serve pulled in {out}"


def test_missing_app_extras_is_one_line(monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setattr(jupyter, "missing_app_modules", lambda: ["voila", "jupyter_server_proxy"])
    assert main(["app", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "em-workbench[app]" in err and "voila" in err, err
    monkeypatch.setitem(sys.modules, "widgets.serve", None)  # the app layer cannot be imported at all
    assert main(["app", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench app: error:") and err.count("\n") == 0 and "em-workbench[app]" in err, err


def test_command_line_and_config(tmp_path):
    cmd = config.build_command(8123, "127.0.0.1", "tok", tmp_path, tmp_path / "c.py")
    assert cmd[:3] == [sys.executable, "-m", "jupyter_server"]
    assert "--port=8123" in cmd and "--ServerApp.ip=127.0.0.1" in cmd and "--IdentityProvider.token=tok" in cmd
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    cfg = config.config_text()
    assert "'jupyter_server_proxy': False" in cfg and "'widgets.serve.proxy': True" in cfg and "'voila': True" in cfg
    assert "cull_idle_timeout" in cfg
    compile(cfg, "config", "exec")


def test_environment_for_kernels(tmp_path):
    env = config.app_environment(tmp_path, project=tmp_path / "proj", data=tmp_path, base={"PATH": "/bin"})
    assert env[config.PROJECT_ENV] == str((tmp_path / "proj").resolve())
    assert env[config.DATA_ROOT_ENV] == str(tmp_path.resolve())
    assert env[ports.PROXY_PORTS_ENV] == str(tmp_path / "viewer-ports")
    assert "mmap_threshold" in env["GLIBC_TUNABLES"] and env["PATH"] == "/bin"
    assert config.DATA_ROOT_ENV not in config.app_environment(tmp_path, base={})


def test_bad_input(tmp_path):
    with pytest.raises(WorkbenchError, match="not found"):
        start_app_server(AppServerOptions(notebook_dir=tmp_path, notebook="workbench.ipynb"))
    (tmp_path / "workbench.ipynb").write_text("{}")
    with pytest.raises(WorkbenchError, match="does not exist"):
        start_app_server(AppServerOptions(notebook_dir=tmp_path, data=tmp_path / "missing"))


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello viewer")

    def log_message(self, *args):
        pass


def test_app_server_proxies_registered_ports_only(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('hi')")]
    nbformat.write(nb, tmp_path / "workbench.ipynb")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    moved = []
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    app = start_app_server(AppServerOptions(port=busy.getsockname()[1], notebook_dir=tmp_path),
                           on_port_change=lambda old, new: moved.append((old, new)))
    try:
        assert moved and moved[0][1] == app.port != busy.getsockname()[1]
        assert app.url == f"http://127.0.0.1:{app.port}/voila/render/workbench.ipynb?token={app.token}"
        assert len(app.token) == 32
        backend_port = backend.server_address[1]
        url = f"{app.base_url}proxy/{backend_port}/?token={app.token}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 403
        # a viewer in a kernel registers its port; then the proxy lets it through
        ports = Path(app.runtime_dir) / "viewer-ports"
        (ports / str(backend_port)).write_text(str(os.getpid()))
        assert urllib.request.urlopen(url, timeout=10).read() == b"hello viewer"
        # without the token: sent to the login page, never to the viewer
        try:
            r = urllib.request.urlopen(f"{app.base_url}proxy/{backend_port}/", timeout=10)
            assert "/login" in r.geturl() and b"hello viewer" not in r.read()
        except urllib.error.HTTPError as err:
            assert err.code in (401, 403)
    finally:
        app.stop()
        backend.shutdown()
        busy.close()
    assert app.process.poll() is not None and not Path(app.runtime_dir).exists()


def test_cli_stops_server_and_kernels_on_sigterm(tmp_path):
    """``workbench app`` runs the server in its own session: SIGTERM (kill, timeout, systemd) must stop it too."""
    import psutil

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('hi')")]
    nbformat.write(nb, tmp_path / "workbench.ipynb")
    out = tmp_path / "out.txt"
    with open(out, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--port", "0", "--notebook-dir", str(tmp_path)],
                                stdout=fo, stderr=subprocess.STDOUT)
    family = []
    try:
        deadline = time.monotonic() + 60
        while "token=" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert family, "the Jupyter server should run as a child"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left running after SIGTERM: {[p.cmdline() for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in family:
            if child.is_running():
                child.kill()
