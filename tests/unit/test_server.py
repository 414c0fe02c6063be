"""The app server: its command line and environment, the viewer port registry, and the restricted proxy."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from workbench import server
from workbench.errors import WorkbenchError


def test_register_proxy_port_only_inside_the_app(tmp_path, monkeypatch):
    monkeypatch.delenv(server.PROXY_PORTS_ENV, raising=False)
    assert server.register_proxy_port(1234) is None
    assert not server.proxy_port_allowed(1234)
    monkeypatch.setenv(server.PROXY_PORTS_ENV, str(tmp_path / "ports"))
    path = server.register_proxy_port(1234)
    assert path.read_text() == str(os.getpid())
    assert server.proxy_port_allowed(1234) and server.proxy_port_allowed("1234")
    assert not server.proxy_port_allowed(1235) and not server.proxy_port_allowed("x")
    server._unregister_all()
    assert not path.exists()


def test_ports_of_dead_processes_are_refused(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "4321").write_text(str(dead.pid))
    assert not server.proxy_port_allowed(4321, root=tmp_path)
    assert not (tmp_path / "4321").exists()


def test_command_line_and_config(tmp_path):
    cmd = server.build_command(8123, "127.0.0.1", "tok", tmp_path, tmp_path / "c.py")
    assert cmd[:3] == [sys.executable, "-m", "jupyter_server"]
    assert "--port=8123" in cmd and "--ServerApp.ip=127.0.0.1" in cmd and "--IdentityProvider.token=tok" in cmd
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    cfg = server._config_text()
    assert "'jupyter_server_proxy': False" in cfg and "'workbench.server': True" in cfg and "'voila': True" in cfg
    assert "cull_idle_timeout" in cfg
    compile(cfg, "config", "exec")


def test_environment_for_kernels(tmp_path):
    env = server.app_environment(tmp_path, project=tmp_path / "proj", data=tmp_path, base={"PATH": "/bin"})
    assert env[server.PROJECT_ENV] == str((tmp_path / "proj").resolve())
    assert env[server.DATA_ROOT_ENV] == str(tmp_path.resolve())
    assert env[server.PROXY_PORTS_ENV] == str(tmp_path / "viewer-ports")
    assert "mmap_threshold" in env["GLIBC_TUNABLES"] and env["PATH"] == "/bin"
    assert server.DATA_ROOT_ENV not in server.app_environment(tmp_path, base={})


def test_bad_input(tmp_path):
    with pytest.raises(WorkbenchError, match="not found"):
        server.start_app_server(notebook_dir=tmp_path, notebook="workbench.ipynb")
    (tmp_path / "workbench.ipynb").write_text("{}")
    with pytest.raises(WorkbenchError, match="does not exist"):
        server.start_app_server(notebook_dir=tmp_path, data=tmp_path / "missing")


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
    app = server.start_app_server(port=busy.getsockname()[1], notebook_dir=tmp_path,
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
