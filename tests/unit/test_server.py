"""The app server (``widgets.serve``): its command line and environment, the viewer port registry
(``workbench.ports``), the packaged app notebook, and the restricted proxy."""

from __future__ import annotations

import http.server
import json
import os
import re
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
    assert "--port=8123" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert not any("tok" in part for part in cmd), "the token must not be on the command line (ps shows it)"
    assert config.token_environment("tok") == {"JUPYTER_TOKEN": "tok"}
    assert "--IdentityProvider.token=" in config.build_command(8123, "127.0.0.1", "", tmp_path, tmp_path / "c.py")
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    cfg = config.config_text()
    assert "'jupyter_server_proxy': False" in cfg and "'widgets.serve.proxy': True" in cfg and "'voila': True" in cfg
    assert "cull_idle_timeout" in cfg
    compile(cfg, "config", "exec")


def test_closed_pages_keep_no_kernel_streams(tmp_path):
    """A page's kernel is never reconnected: its zmq streams close with its websocket (no offline buffer)."""
    from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
    from traitlets.config import PyFileConfigLoader

    (tmp_path / "c.py").write_text(config.config_text())
    manager = MappingKernelManager(config=PyFileConfigLoader("c.py", str(tmp_path)).load_config())
    assert manager.buffer_offline_messages is False

    class Stream:
        closed = False

        def close(self):
            self.closed = True

    streams = {"iopub": Stream(), "shell": Stream(), "control": Stream(), "stdin": Stream()}
    manager.start_buffering("kernel", "session", streams)
    assert all(s.closed for s in streams.values()) and not manager._kernel_buffers


def test_environment_for_kernels(tmp_path):
    env = config.app_environment(tmp_path, project=tmp_path / "proj", data=tmp_path, base={"PATH": "/bin"})
    assert env[config.PROJECT_ENV] == str((tmp_path / "proj").resolve())
    assert env[config.DATA_ROOT_ENV] == str(tmp_path.resolve())
    assert env[ports.PROXY_PORTS_ENV] == str(tmp_path / "viewer-ports")
    assert "GLIBC_TUNABLES" not in env and env["PATH"] == "/bin"
    assert config.DATA_ROOT_ENV not in config.app_environment(tmp_path, base={})


def test_malloc_tuning_goes_to_kernels_not_to_the_server(tmp_path):
    from workbench.tuning import GLIBC_TUNABLES

    server = config.app_environment(tmp_path, base={"GLIBC_TUNABLES": GLIBC_TUNABLES})
    assert "GLIBC_TUNABLES" not in server
    own = "glibc.malloc.arena_max=2"
    assert config.app_environment(tmp_path, base={"GLIBC_TUNABLES": own})["GLIBC_TUNABLES"] == own
    assert server["PYTHONMALLOC"] == "malloc"
    assert config.app_environment(tmp_path, base={"PYTHONMALLOC": "debug"})["PYTHONMALLOC"] == "debug"
    kernel = {"GLIBC_TUNABLES": GLIBC_TUNABLES, "PYTHONMALLOC": "pymalloc"}
    assert config.kernel_environment({}) == kernel
    assert config.kernel_environment(server) == kernel  # the server's allocator is not the kernels'
    assert config.kernel_environment({"GLIBC_TUNABLES": own}) == {**kernel, "GLIBC_TUNABLES": own}
    assert config.kernel_environment({"PYTHONMALLOC": "debug"})["PYTHONMALLOC"] == "debug"
    kdir = config.write_kernel_spec(tmp_path / "jupyter-data", config.kernel_environment({}))
    spec = json.loads((kdir / "kernel.json").read_text())
    assert kdir == tmp_path / "jupyter-data" / "kernels" / "python3"
    assert spec["env"] == kernel and "ipykernel_launcher" in spec["argv"]
    assert "{connection_file}" in spec["argv"] and spec["language"] == "python"


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


# ----------------------------------------------------------------------------- only the app is served
KERNEL_ID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Routes of a Jupyter server the app does not use: each must be refused, with and without the token.
REFUSED = [("GET", "lab"), ("GET", "lab/tree/workbench.ipynb"), ("GET", "tree"), ("GET", "notebooks/workbench.ipynb"),
           ("GET", "terminals/1"), ("GET", "edit/workbench.ipynb"), ("GET", "files/workbench.ipynb"),
           ("GET", "view/workbench.ipynb"), ("GET", "voila"), ("GET", "voila/tree"),
           ("GET", "voila/render/other.ipynb"), ("GET", "voila/files/workbench.ipynb"),
           ("GET", "voila/api/contents"), ("GET", "api/contents"), ("GET", "api/contents/workbench.ipynb"),
           ("PUT", "api/contents/new.py"), ("POST", "api/contents"), ("GET", "api/sessions"),
           ("POST", "api/sessions"), ("POST", "api/kernels"), ("GET", "api/terminals"), ("POST", "api/terminals"),
           ("GET", "api/kernelspecs"), ("GET", "api/config/notebook"), ("POST", "api/shutdown"),
           ("GET", "api/me"), ("GET", "nbconvert/html/workbench.ipynb"),
           ("POST", "api/kernels/00000000-0000-0000-0000-000000000000/restart"),
           ("GET", "static/../api/contents"), ("GET", "voila/render/../../api/contents")]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _call(server, method: str, path: str, token: bool, cookie: str | None = None):
    """``(status, headers)`` of one request (redirects not followed)."""
    sep = "&" if "?" in path else "?"
    url = server.base_url + path + (f"{sep}token={server.token}" if token else "")
    headers = {"Cookie": cookie} if cookie else {}
    data = b"{}" if method in ("POST", "PUT", "PATCH") else None
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=60) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guarded")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import ipywidgets as W\nW.IntSlider(7)")]
    nbformat.write(nb, folder / "workbench.ipynb")
    (folder / "other.ipynb").write_text(nbformat.writes(nb))
    app = start_app_server(AppServerOptions(port=0, notebook_dir=folder))
    yield app
    app.stop()


def _open_page(app) -> tuple[str, bytes]:
    """Load the app page with the token as a browser does; returns ``(login cookie, page html)``."""
    status, headers = _call(app, "GET", f"voila/render/{app.notebook}", token=True)
    assert status == 302, "the page URL with a token must redirect to the clean URL"
    assert headers["Location"] == f"/voila/render/{app.notebook}", headers["Location"]
    cookies = {c.split("=", 1)[0]: c for c in headers.get_all("Set-Cookie")}
    login = next(c for name, c in cookies.items() if name.startswith("username-"))
    assert "HttpOnly" in login and "SameSite=Lax" in login
    assert "_xsrf" in cookies, "Voila's shutdown beacon needs the _xsrf cookie"
    cookie = "; ".join(c.split(";", 1)[0] for c in cookies.values())
    req = urllib.request.Request(app.base_url + headers["Location"].lstrip("/"), headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=120) as r:
        return cookie, r.read()


@pytest.mark.parametrize("method, path", REFUSED)
def test_only_the_app_is_served(guarded_app, method, path):
    for token in (False, True):
        status, headers = _call(guarded_app, method, path, token)
        assert status == 404, f"{method} /{path} (token: {token}) answered {status}"
        assert headers["X-Frame-Options"] == "SAMEORIGIN"


def test_page_url_loses_its_token_and_headers_are_set(guarded_app):
    cookie, page = _open_page(guarded_app)
    assert b"IntSlider" in page or b"application/vnd.jupyter.widget-view+json" in page
    assert guarded_app.token.encode() not in page, "the page must not repeat the token"
    status, headers = _call(guarded_app, "GET", f"voila/render/{guarded_app.notebook}", token=False, cookie=cookie)
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp and "object-src 'none'" in csp and "default-src 'self'" in csp
    assert headers["X-Frame-Options"] == "SAMEORIGIN" and headers["X-Content-Type-Options"] == "nosniff"
    # without the token or the cookie: the login page, never the app
    status, headers = _call(guarded_app, "GET", f"voila/render/{guarded_app.notebook}", token=False)
    assert status == 302 and "/login" in headers["Location"]
    # a wrong token is no token
    status, headers = _call(guarded_app, "GET", f"voila/render/{guarded_app.notebook}?token=wrong", token=False)
    assert status == 302 and "/login" in headers["Location"]


def _kernel_socket(app, kernel_id: str, cookie: str | None):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = app.base_url.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
    return websocket_connect(HTTPRequest(url, headers={"Cookie": cookie} if cookie else {}))


def _message(msg_type: str, content: dict) -> str:
    import json
    import uuid

    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": uuid.uuid4().hex, "username": "",
              "version": "5.3", "date": "2026-01-01T00:00:00Z"}
    return json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                       "channel": "shell", "buffers": []})


def _run_async(coro):
    """Run ``coro`` on a fresh event loop in its own thread (a browser test's loop may be running in this one)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_kernels_run_no_code_from_the_browser(guarded_app, tmp_path):
    """The page's kernel answers widget messages but drops ``execute_request``; other kernel ids are refused."""
    import asyncio
    import json

    cookie, page = _open_page(guarded_app)
    ids = {m.decode() for m in KERNEL_ID_RE.findall(page)}
    running = set(guarded_app.kernel_ids())
    kernel_id = next(iter(ids & running))
    marker = tmp_path / "ran.txt"

    async def talk() -> list[str]:
        ws = await _kernel_socket(guarded_app, kernel_id, cookie)
        ws.write_message(_message("execute_request", {"code": f"open({str(marker)!r}, 'w').write('x')",
                                                      "silent": False, "store_history": False,
                                                      "user_expressions": {}, "allow_stdin": False}))
        ws.write_message(_message("comm_info_request", {}))
        seen = []
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline:
            try:
                raw = await asyncio.wait_for(ws.read_message(), 2)
            except asyncio.TimeoutError:
                if "comm_info_reply" in seen:
                    break
                continue
            if raw is None:
                break
            if isinstance(raw, str):
                seen.append(json.loads(raw)["header"]["msg_type"])
        ws.close()
        return seen

    seen = _run_async(talk())
    assert "comm_info_reply" in seen, f"the page's kernel did not answer a widget message: {seen}"
    assert "execute_reply" not in seen and "execute_input" not in seen, seen
    assert not marker.exists(), "code sent by the browser ran in the kernel"

    async def foreign(cookie_or_none) -> int:
        from tornado.httpclient import HTTPClientError

        try:
            ws = await _kernel_socket(guarded_app, "12345678-1234-4234-8234-123456789abc", cookie_or_none)
        except HTTPClientError as err:
            return err.code
        ws.close()
        return 101

    assert _run_async(foreign(cookie)) == 404, "a kernel the page was not given must not be reachable"
    assert _run_async(foreign(None)) in (401, 403, 404)
    async def anonymous() -> int:
        from tornado.httpclient import HTTPClientError

        try:
            ws = await _kernel_socket(guarded_app, kernel_id, None)
        except HTTPClientError as err:
            return err.code
        ws.close()
        return 101

    assert _run_async(anonymous()) in (401, 403), "the page's kernel without the cookie or token"


def test_guard_routes_and_clean_query():
    from widgets.serve import guard

    patterns = guard.allowed_patterns("workbench.ipynb")

    def ok(method, path):
        return guard.is_allowed(method, path, "/", patterns)

    assert ok("GET", "/voila/render/workbench.ipynb") and not ok("GET", "/voila/render/other.ipynb")
    assert ok("GET", "/api/kernels/12345678-1234-4234-8234-123456789abc/channels")
    assert not ok("POST", "/api/kernels") and not ok("GET", "/api/contents") and not ok("GET", "/lab")
    assert not ok("POST", "/api/kernels/12345678-1234-4234-8234-123456789abc/interrupt")
    assert not ok("GET", "/static/../api/contents") and not ok("GET", "//api/contents")
    assert ok("GET", "/proxy/8123/v/abc/") and not ok("GET", "/proxy/x/")
    assert guard.is_allowed("GET", "/user/a/voila/render/workbench.ipynb", "/user/a/", patterns)
    assert not guard.is_allowed("GET", "/voila/render/workbench.ipynb", "/user/a/", patterns)
    assert guard.clean_query("token=abc") == "" and guard.clean_query("a=1&token=abc&b=2") == "a=1&b=2"
    cfg = config.config_text()
    assert "'widgets.serve.guard': True" in cfg and "'jupyterlab': False" in cfg
    assert "allowed_message_types" in cfg and "execute_request" not in cfg


def test_public_server_urls_have_no_token(tmp_path):
    server = jupyter.AppServer(port=8123, bind="127.0.0.1", token="", notebook="workbench.ipynb", process=None,
                               runtime_dir=tmp_path, log_path=tmp_path / "log")
    assert server.url == "http://127.0.0.1:8123/voila/render/workbench.ipynb"
    assert server.page_url(query="a=1").endswith("workbench.ipynb?a=1")
    (tmp_path / "jupyter-runtime").mkdir()
    (tmp_path / "jupyter-runtime" / "kernel-12345678-1234-4234-8234-123456789abc.json").write_text("{}")
    assert server.kernel_ids() == ["12345678-1234-4234-8234-123456789abc"]
