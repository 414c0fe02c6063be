"""The single-port app server: Jupyter server + Voila (server extension) + a restricted proxy to viewers.

``workbench app`` runs ``python -m jupyter_server`` serving ``notebooks/`` with Voila as a server
extension, so the guided app is at ``/voila/render/workbench.ipynb`` and everything (page, kernels,
Neuroglancer) goes through one port: the Neuroglancer servers that kernels start on 127.0.0.1 are
reached at ``{base_url}proxy/{port}/v/{token}/``.

The proxy: jupyter-server-proxy 4.x lets any authenticated user reach *any* local port through
``/proxy/<port>/`` (its ``host_allowlist`` only filters other hosts; the local-port handler ignores it).
This module is itself a Jupyter server extension that registers the same handler but refuses every
port a workbench kernel did not register: a viewer writes its port to the directory named by
``WORKBENCH_PROXY_PORTS_DIR`` (set here for every kernel) and removes it when the process exits.
jupyter-server-proxy's own unrestricted extension is switched off in the app server.

This module imports nothing heavy at import time (it is imported by viewers to register ports).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError

#: Environment variable naming the directory of proxy-allowed ports (one empty file per port).
PROXY_PORTS_ENV = "WORKBENCH_PROXY_PORTS_DIR"
#: Environment variables passed to every kernel.
PROJECT_ENV, DATA_ROOT_ENV = "WORKBENCH_PROJECT", "WORKBENCH_DATA_ROOT"
#: The app notebook, relative to the notebook directory.
APP_NOTEBOOK = "workbench.ipynb"
#: A kernel idle (no execution, no output) this long is shut down; checked every CULL_INTERVAL s.
CULL_IDLE_SECONDS, CULL_INTERVAL_SECONDS = 3600, 300

#: Voila template of the app: Voila's "lab" template with Font Awesome served locally instead of from a CDN.
VOILA_TEMPLATE = "workbench"
_CDN_FONTAWESOME = "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/"
_TEMPLATE_J2 = (
    "{%- extends 'lab/index.html.j2' -%}\n"
    "{%- block notebook_css -%}\n"
    "{{ super() | replace('" + _CDN_FONTAWESOME + "', resources.base_url ~ 'panel_dist/bundled/font-awesome/css/') }}\n"
    "{%- endblock notebook_css -%}\n"
)

_registered: set[Path] = set()


# ----------------------------------------------------------------------------- proxy port registry
def register_proxy_port(port: int) -> Path | None:
    """Allow the app server's proxy to reach ``port`` (a Neuroglancer server this process started).

    Does nothing outside the app server (``WORKBENCH_PROXY_PORTS_DIR`` unset). The registration is
    removed when this process exits.
    """
    root = os.environ.get(PROXY_PORTS_ENV)
    if not root:
        return None
    path = Path(root) / str(int(port))
    if path in _registered:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(os.getpid()))
    except OSError:
        return None
    if not _registered:
        atexit.register(_unregister_all)
    _registered.add(path)
    return path


def _unregister_all() -> None:
    for path in list(_registered):
        try:
            path.unlink()
        except OSError:
            pass
        _registered.discard(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proxy_port_allowed(port: int | str, root: str | Path | None = None) -> bool:
    """True when ``port`` was registered by a live workbench process (see :func:`register_proxy_port`)."""
    root = root or os.environ.get(PROXY_PORTS_ENV)
    if not root:
        return False
    try:
        path = Path(root) / str(int(port))
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid and not _pid_alive(pid):  # a crashed kernel: its port may now belong to anything
        try:
            path.unlink()
        except OSError:
            pass
        return False
    return True


# ----------------------------------------------------------------------------- Jupyter server extension
def _jupyter_server_extension_points():
    return [{"module": "workbench.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Register ``/proxy/<port>/...`` for registered viewer ports only (HTTP and websockets)."""
    from jupyter_server.utils import url_path_join
    from jupyter_server_proxy.handlers import LocalProxyHandler
    from tornado import web

    class ViewerProxyHandler(LocalProxyHandler):
        """jupyter-server-proxy's local handler, limited to ports the workbench's viewers registered."""

        def _check(self, port) -> None:
            if not proxy_port_allowed(port):
                raise web.HTTPError(403, f"port {port} is not a workbench viewer")

        def proxy(self, port, proxied_path):
            self._check(port)
            return super().proxy(port, proxied_path)

        async def open(self, port, proxied_path):
            if not proxy_port_allowed(port):
                self.close(code=1008, reason="not a workbench viewer")
                return
            return await super().open(port, proxied_path)

    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*",
        [(url_path_join(base, r"/proxy/(\d+)(/.*|)"), ViewerProxyHandler, {"absolute_url": False})],
    )
    serverapp.log.info("workbench: viewer proxy at %sproxy/<port>/ (registered ports only)", base)


# ----------------------------------------------------------------------------- launching
def free_port(bind: str = "127.0.0.1") -> int:
    """A port free on ``bind`` right now."""
    with socket.socket() as s:
        s.bind((bind, 0))
        return int(s.getsockname()[1])


def default_notebook_dir() -> Path:
    """``notebooks/`` of the source tree (the app and tutorials)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


@dataclass
class AppServer:
    """A running ``jupyter server`` with Voila, serving the workbench notebooks.

    Attributes:
        url: the app page with its token (``http://127.0.0.1:PORT/voila/render/workbench.ipynb?token=...``).
        base_url: ``http://HOST:PORT/``.
        token: the random access token.
        process: the server process.
    """

    port: int
    bind: str
    token: str
    notebook: str
    process: subprocess.Popen
    runtime_dir: Path
    log_path: Path
    env: dict = field(repr=False, default_factory=dict)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "") else self.bind
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def page_url(self, notebook: str | None = None, query: str = "") -> str:
        """URL of ``/voila/render/<notebook>`` with the token (and extra ``query`` parameters)."""
        q = f"token={self.token}" + (f"&{query}" if query else "")
        return f"{self.base_url}voila/render/{notebook or self.notebook}?{q}"

    @property
    def url(self) -> str:
        return self.page_url()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the server to answer; raises WorkbenchError (with the log's tail) if it does not."""
        deadline = time.monotonic() + timeout
        status = f"{self.base_url}api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise WorkbenchError(f"the Jupyter server exited with code {self.process.returncode}: {_tail(self.log_text())}")
            try:
                with urllib.request.urlopen(status, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise WorkbenchError(f"the Jupyter server did not answer within {timeout:g} s: {_tail(self.log_text())}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and its kernels (SIGTERM, then SIGKILL), and clean up its runtime files."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._close_log()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def _close_log(self) -> None:
        fh = self.env.pop("_log_handle", None)
        if fh is not None:
            fh.close()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _tail(text: str, n: int = 400) -> str:
    return " ".join(text.strip().splitlines()[-6:])[-n:]


def _config_text() -> str:
    return "\n".join(
        [
            "# written by workbench.server for one app run",
            "c = get_config()  # noqa: F821",
            "c.ServerApp.jpserver_extensions = {",
            "    'voila': True,",
            "    'workbench.server': True,",
            "    'jupyter_server_proxy': False,   # unrestricted /proxy/<any port>: replaced by workbench.server",
            "    'jupyter_server_terminals': False,",
            "}",
            "c.ServerApp.terminals_enabled = False",
            "c.ServerApp.open_browser = False",
            "c.ServerApp.port_retries = 0",
            f"c.MappingKernelManager.cull_idle_timeout = {CULL_IDLE_SECONDS}",
            f"c.MappingKernelManager.cull_interval = {CULL_INTERVAL_SECONDS}",
            "c.MappingKernelManager.cull_connected = False",
            "c.VoilaConfiguration.show_tracebacks = False",
            f"c.VoilaConfiguration.template = {VOILA_TEMPLATE!r}",
            "# no CDN: the math renderer bundled with the page is used; the legacy MathJax URL loads nothing",
            "c.ServerApp.tornado_settings = {'mathjax_url': 'data:text/javascript,'}",
            "# labextensions meant for JupyterLab only (they fail to load in a Voila page)",
            "c.VoilaConfiguration.extension_denylist = ['@jupyterhub/jupyter-server-proxy', '@jupyter-lsp/jupyterlab-lsp']",
            "",
        ]
    )


def write_voila_template(data_dir: Path) -> Path:
    """Write the app's Voila template under ``data_dir/voila/templates/`` (a Jupyter data path).

    Voila's lab template links Font Awesome from a CDN (nothing loads offline and the page waits on
    it); this one links the copy that Panel ships and serves at ``{base_url}panel_dist/``.
    """
    tdir = Path(data_dir) / "voila" / "templates" / VOILA_TEMPLATE
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "conf.json").write_text('{"base_template": "lab"}\n')
    (tdir / "index.html.j2").write_text(_TEMPLATE_J2)
    return tdir


def build_command(port: int, bind: str, token: str, notebook_dir: Path, config_file: Path) -> list[str]:
    """The ``jupyter server`` command line (as this Python)."""
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--config={config_file}",
        "--no-browser",
        f"--port={int(port)}",
        f"--ServerApp.ip={bind}",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.password=",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def app_environment(runtime: Path, project=None, data=None, base=None) -> dict:
    """Environment of the Jupyter server and so of every kernel it starts.

    Sets ``WORKBENCH_PROJECT`` / ``WORKBENCH_DATA_ROOT`` (absolute paths) when given, the viewer port
    registry (``WORKBENCH_PROXY_PORTS_DIR``), a private Jupyter runtime dir and the glibc malloc tuning.
    """
    from workbench.tuning import tuned_env

    env = tuned_env(os.environ if base is None else base)
    data_dir = str(Path(runtime) / "jupyter-data")
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (data_dir, env.get("JUPYTER_PATH", "")) if p)
    env[PROXY_PORTS_ENV] = str(Path(runtime) / "viewer-ports")
    env["JUPYTER_RUNTIME_DIR"] = str(Path(runtime) / "jupyter-runtime")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    if project is not None:
        env[PROJECT_ENV] = str(Path(project).resolve())
    if data is not None:
        env[DATA_ROOT_ENV] = str(Path(data).resolve())
    return env


def start_app_server(
    port: int = 8866,
    bind: str = "127.0.0.1",
    notebook_dir: str | Path | None = None,
    notebook: str = APP_NOTEBOOK,
    project: str | Path | None = None,
    data: str | Path | None = None,
    token: str | None = None,
    extra_env: dict | None = None,
    on_port_change=None,
) -> AppServer:
    """Start the app server in the background and wait until it answers.

    Args:
        port: listening port; if it is in use a free one is chosen (``on_port_change(old, new)`` is called).
        bind: listening address (``127.0.0.1``: this machine only; use an SSH tunnel or a proxy to share).
        notebook_dir: the served folder (default ``notebooks/``); ``notebook`` must be in it.
        project, data: passed to kernels as ``WORKBENCH_PROJECT`` / ``WORKBENCH_DATA_ROOT``.
        token: access token (default: 32 random hex characters).
    Raises:
        WorkbenchError: the notebook is missing, a path does not exist, or the server fails to start.
    """
    nb_dir = Path(notebook_dir) if notebook_dir else default_notebook_dir()
    nb_dir = nb_dir.resolve()
    if not (nb_dir / notebook).is_file():
        raise WorkbenchError(f"app notebook {notebook} not found in {nb_dir}", nb_dir / notebook)
    if data is not None and not Path(data).exists():
        raise WorkbenchError("data path does not exist", data)
    from workbench.viewer.live import port_is_free

    if not port_is_free(bind, port):
        new = free_port(bind)
        if on_port_change:
            on_port_change(port, new)
        port = new
    token = token or secrets.token_hex(16)
    runtime = Path(tempfile.mkdtemp(prefix="workbench-app-"))
    ports_dir = runtime / "viewer-ports"
    ports_dir.mkdir()
    config_file = runtime / "workbench_app_config.py"
    config_file.write_text(_config_text())
    write_voila_template(runtime / "jupyter-data")
    env = app_environment(runtime, project=project, data=data, base=os.environ)
    env.update(extra_env or {})
    log_path = runtime / "server.log"
    log_fh = open(log_path, "wb")  # closed in AppServer.stop
    proc = subprocess.Popen(
        build_command(port, bind, token, nb_dir, config_file),
        cwd=str(nb_dir),
        env=env,
        stdout=log_fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = AppServer(port=port, bind=bind, token=token, notebook=notebook, process=proc, runtime_dir=runtime, log_path=log_path)
    server.env["_log_handle"] = log_fh
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def serve_forever(server: AppServer, out=sys.stdout) -> int:
    """Print the app's URL and wait until Ctrl+C or the server exits; then stop it."""
    print(f"EM Workbench is running. Open this URL in a browser (Ctrl+C to stop):\n\n    {server.url}\n", file=out, flush=True)
    if server.bind not in ("127.0.0.1", "localhost", "::1"):
        print(f"(listening on {server.bind}:{server.port}; anyone with the token can run code as this user)", file=out)
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
        print(f"the Jupyter server stopped (code {server.process.returncode}): {_tail(server.log_text())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the server and its kernels ...", file=sys.stderr)
        return 0
    finally:
        server.stop()
