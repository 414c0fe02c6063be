"""Starting, waiting for and stopping the app server (a ``jupyter server`` with Voila and the viewer proxy).

:func:`start_app_server` runs ``python -m jupyter_server`` serving the folder of the app notebook with Voila
as a server extension, so the guided app is at ``/voila/render/workbench.ipynb`` and everything (page,
kernels, Neuroglancer) goes through one port: the Neuroglancer servers that kernels start on 127.0.0.1
are reached at ``{base_url}proxy/{port}/v/{token}/`` (:mod:`widgets.serve.proxy`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from widgets.serve import guard
from widgets.serve.config import (
    APP_NOTEBOOK,
    app_environment,
    build_command,
    config_text,
    default_notebook_dir,
    kernel_environment,
    missing_app_modules,
    token_environment,
    write_kernel_spec,
    write_voila_template,
)
from workbench.errors import WorkbenchError
from workbench.ports import free_port, port_is_free
from workbench.stopping import STOP_SIGNALS, raise_keyboard_interrupt

#: Seconds the server gets to stop its kernels after SIGTERM before it (and what is left) is killed.
STOP_SECONDS = 8.0


@dataclass
class AppServerOptions:
    """What :func:`start_app_server` serves, where, and for whom.

    Attributes:
        port: listening port; 0 picks a free one; a port in use is replaced by a free one.
        bind: listening address (``127.0.0.1``: this machine only; use an SSH tunnel or a proxy to share).
        notebook_dir: the served folder (default: the app notebook shipped with the package);
            ``notebook`` must be in it.
        notebook: the page's notebook, relative to ``notebook_dir``.
        project, data: passed to kernels as ``WORKBENCH_PROJECT`` / ``WORKBENCH_DATA_ROOT``.
        token: access token (default: 32 random hex characters).
        public: no token at all (whoever reaches the port uses the app); ignored when ``token`` is given.
        extra_env: more environment variables for the server and its kernels.
    """

    port: int = 8866
    bind: str = "127.0.0.1"
    notebook_dir: str | Path | None = None
    notebook: str = APP_NOTEBOOK
    project: str | Path | None = None
    data: str | Path | None = None
    token: str | None = None
    public: bool = False
    extra_env: dict = field(default_factory=dict)


@dataclass
class AppServer:
    """A running ``jupyter server`` with Voila, serving the workbench app notebook.

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
        q = "&".join(part for part in (f"token={self.token}" if self.token else "", query) if part)
        return f"{self.base_url}voila/render/{notebook or self.notebook}" + (f"?{q}" if q else "")

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
        status = f"{self.base_url}api/status" + (f"?token={self.token}" if self.token else "")
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

    def descendants(self) -> list:
        """The server's processes below it (kernels and what they started), as ``psutil.Process`` objects."""
        import psutil

        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return []

    def kernel_ids(self) -> list[str]:
        """Ids of the kernels running now, from their connection files (no HTTP, no token needed)."""
        runtime = Path(self.env.get("JUPYTER_RUNTIME_DIR") or self.runtime_dir / "jupyter-runtime")
        return sorted(p.name[len("kernel-"):-len(".json")] for p in runtime.glob("kernel-*.json"))

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop the server and its kernels, then remove its runtime folder.

        SIGTERM first (Jupyter asks every kernel to shut down: training writes a last checkpoint); after
        ``timeout`` s the server and every process left below it are killed. Ends within ``timeout + 2`` s.
        """
        import psutil

        family = self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        family = [p for p in family + self.descendants() if p.pid != self.process.pid]
        _, alive = psutil.wait_procs(family, timeout=1.0)
        for proc in alive:  # orphans (a kernel whose shutdown did not finish, a child a kernel started)
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=1.0)
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


def _checked_notebook_dir(options: AppServerOptions) -> Path:
    """The served folder, after checking the extras, the notebook and the data path exist."""
    missing = missing_app_modules()
    if missing:
        raise WorkbenchError(f"the app needs the app extras: pip install 'em-workbench[app]' (missing: {', '.join(missing)})")
    nb_dir = (Path(options.notebook_dir) if options.notebook_dir else default_notebook_dir()).resolve()
    if not (nb_dir / options.notebook).is_file():
        raise WorkbenchError(f"app notebook {options.notebook} not found in {nb_dir}", nb_dir / options.notebook)
    if options.data is not None and not Path(options.data).exists():
        raise WorkbenchError("data path does not exist", options.data)
    return nb_dir


def _choose_port(bind: str, port: int, on_port_change: Callable[[int, int], None] | None) -> int:
    """``port`` if it is free, else a free one (``on_port_change(old, new)`` is called); 0: a free one."""
    if int(port) == 0:
        return free_port(bind)
    if port_is_free(bind, port):
        return int(port)
    new = free_port(bind)
    if on_port_change:
        on_port_change(port, new)
    return new


def _prepare_runtime(options: AppServerOptions) -> tuple[Path, Path, dict]:
    """A private runtime folder (config, Voila template, viewer-port registry, log); returns
    ``(runtime, config_file, env)``."""
    runtime = Path(tempfile.mkdtemp(prefix="workbench-app-"))
    (runtime / "viewer-ports").mkdir()
    config_file = runtime / "workbench_app_config.py"
    config_file.write_text(config_text())
    write_voila_template(runtime / "jupyter-data")
    write_kernel_spec(runtime / "jupyter-data", kernel_environment(os.environ))
    env = app_environment(runtime, project=options.project, data=options.data, base=os.environ)
    env.update(options.extra_env or {})
    env[guard.NOTEBOOK_ENV] = options.notebook
    env[guard.RUNTIME_ENV] = str(runtime)
    env[guard.PARENT_PID_ENV] = str(os.getpid())
    # Linux sends the parent-death signal when the thread that forked ends: only safe from the main thread
    env[guard.PDEATHSIG_ENV] = "1" if threading.current_thread() is threading.main_thread() else "0"
    return runtime, config_file, env


def start_app_server(
    options: AppServerOptions | None = None,
    on_port_change: Callable[[int, int], None] | None = None,
) -> AppServer:
    """Start the app server in the background and wait until it answers.

    Args:
        options: what to serve and where (default: the app on port 8866 of 127.0.0.1).
        on_port_change: called as ``on_port_change(old, new)`` when the port was in use and another is used.
    Raises:
        WorkbenchError: the app extras are missing, the notebook is missing, a path does not exist, or the
            server fails to start.
    """
    options = options or AppServerOptions()
    nb_dir = _checked_notebook_dir(options)
    port = _choose_port(options.bind, options.port, on_port_change)
    token = options.token or ("" if options.public else secrets.token_hex(16))
    runtime, config_file, env = _prepare_runtime(options)
    env.pop("JUPYTER_TOKEN", None)
    env.update(token_environment(token))
    log_path = runtime / "server.log"
    log_fh = open(log_path, "wb")  # closed in AppServer.stop
    proc = subprocess.Popen(
        build_command(port, options.bind, token, nb_dir, config_file),
        cwd=str(nb_dir),
        env=env,
        stdout=log_fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = AppServer(port=port, bind=options.bind, token=token, notebook=options.notebook, process=proc,
                       runtime_dir=runtime, log_path=log_path)
    server.env["JUPYTER_RUNTIME_DIR"] = env["JUPYTER_RUNTIME_DIR"]
    server.env["_log_handle"] = log_fh
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def serve_forever(server: AppServer, out=sys.stdout) -> int:
    """Print the app's URL and wait until Ctrl+C, SIGTERM or SIGHUP, or the server exits; then stop it.

    The server runs in its own session (a Ctrl+C in the terminal reaches this process only), so every
    stop signal is handled like Ctrl+C here; should this process be killed (``kill -9``), the server
    notices its parent is gone and stops itself (:mod:`widgets.serve.guard`).
    """
    print(f"EM Workbench is running. Open this URL in a browser (Ctrl+C to stop):\n\n    {server.url}\n", file=out, flush=True)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, raise_keyboard_interrupt) for sig in STOP_SIGNALS} if main_thread else {}
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
        print(f"the Jupyter server stopped (code {server.process.returncode}): {_tail(server.log_text())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the server and its kernels ...", file=sys.stderr)
        return 0
    finally:
        for sig in STOP_SIGNALS:  # a second signal while stopping must not cut the clean-up short
            if main_thread:
                signal.signal(sig, signal.SIG_IGN)
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
