"""End a page's kernel, and everything it started, soon after the page is gone.

Each Voila page load is a new kernel; closing the tab does not end it (the shutdown beacon is refused
without an ``_xsrf`` cookie) and idle culling never ends a kernel that keeps reporting training progress.
So the kernel watches for its page itself:

* **connections**: the Jupyter server reports how many websockets are open to this kernel
  (``GET {server}/api/kernels/{id}``). A hidden or backgrounded tab keeps its websocket, so this is the
  main signal and is immune to browsers throttling timers in hidden tabs.
* **heartbeat**: a hidden ``ipywidgets.Play`` ticks every few seconds from the page's own JS timer; used
  when the server's API cannot be reached.

When neither has been seen for ``timeout`` seconds the watchdog runs the cleanup callbacks (stop training
and prediction, close the Neuroglancer server) and asks the server to shut the kernel down, falling back to
exiting the process. Nothing is lost: everything the user made is already in the project folder.

When the kernel itself is shut down (the app server stops on SIGTERM, or its launcher died) the same
cleanups run at interpreter exit, within :data:`EXIT_BUDGET_SECONDS`: training stops at an iteration
boundary and writes its checkpoint, prediction stops at a block boundary (the blocks written are kept and
the next prediction resumes from them).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable

import ipywidgets as W

#: Seconds without any sign of the page before the kernel ends (``WORKBENCH_SESSION_TIMEOUT``).
DEFAULT_TIMEOUT = 30.0
#: Seconds a new kernel waits for its page to connect at all (a loaded machine takes long to load the page).
FIRST_CONNECT_TIMEOUT = 180.0
#: Seconds the cleanups get when the kernel exits (the server kills a kernel 6 s after asking it to stop).
EXIT_BUDGET_SECONDS = 2.5


def _kernel_id() -> str | None:
    try:
        from ipykernel.connect import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:  # not in a kernel
        return None
    if name.startswith("kernel-") and name.endswith(".json"):
        return name[len("kernel-") : -len(".json")]
    return None


def _server_base() -> str | None:
    """http://host:port/base/ of the Jupyter server hosting this Voila kernel, if known."""
    port = os.environ.get("VOILA_APP_PORT")
    if not port:
        return None
    ip = os.environ.get("VOILA_APP_IP") or "127.0.0.1"
    if ip in ("0.0.0.0", "", "::"):
        ip = "127.0.0.1"
    base = os.environ.get("VOILA_BASE_URL") or "/"
    if not base.endswith("/"):
        base += "/"
    return f"http://{ip}:{port}{base}"


def in_voila() -> bool:
    return bool(os.environ.get("VOILA_APP_PORT") or os.environ.get("VOILA_BASE_URL"))


class SessionWatchdog:
    """Watches for the page of this kernel and ends the kernel when the page is gone.

    Args:
        timeout: seconds without a connection or heartbeat before shutting down.
        interval: seconds between checks (and between heartbeats).
        enabled: None = only under Voila (``WORKBENCH_WATCHDOG=0`` switches it off, ``=1`` forces it on).
        exit_process: end the kernel process when the page is gone (tests pass False).
        first_timeout: seconds to wait for the page's first sign of life (default
            :data:`FIRST_CONNECT_TIMEOUT`, at least ``timeout``).
    """

    def __init__(self, timeout: float | None = None, interval: float = 3.0, enabled: bool | None = None,
                 exit_process: bool = True, first_timeout: float | None = None):
        env_t = os.environ.get("WORKBENCH_SESSION_TIMEOUT")
        self.timeout = float(timeout if timeout is not None else (env_t or DEFAULT_TIMEOUT))
        self.interval = float(interval)
        flag = os.environ.get("WORKBENCH_WATCHDOG")
        if enabled is None:
            enabled = flag == "1" or (flag != "0" and in_voila())
        self.enabled = bool(enabled)
        self.exit_process = exit_process
        self.first_timeout = max(self.timeout, FIRST_CONNECT_TIMEOUT if first_timeout is None else float(first_timeout))
        self.kernel_id = _kernel_id()
        self.server = _server_base()
        self.started = time.monotonic()
        self.last_seen = time.monotonic()
        #: False until the page has connected once: until then FIRST_CONNECT_TIMEOUT applies
        self.page_seen = False
        self.last_beat: float | None = None
        self.beats = 0
        self.ended = False
        self.reason = ""
        self._cleanups: list[Callable[[], None]] = []
        self._server_token: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._at_exit_registered = False
        self.heartbeat = W.Play(value=0, min=0, max=10**9, step=1, interval=int(self.interval * 1000),
                                repeat=True, playing=False, show_repeat=False)
        self.heartbeat.layout.display = "none"
        self.heartbeat.add_class("wb-heartbeat")
        self.heartbeat.observe(self._on_beat, "value")

    # ---- signals
    def _on_beat(self, _change=None) -> None:
        self.beats += 1
        self.last_beat = time.monotonic()
        self.last_seen = self.last_beat
        self.page_seen = True

    def connections(self) -> int | None:
        """Open websockets to this kernel as the server reports them; None when it cannot be asked."""
        if not (self.server and self.kernel_id):
            return None
        req = urllib.request.Request(f"{self.server}api/kernels/{self.kernel_id}", headers=self._auth())
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return int(json.load(r).get("connections", 0))
        except Exception:  # server unreachable or auth required: fall back to the heartbeat
            return None

    def _auth(self) -> dict[str, str]:
        token = self._token()
        return {"Authorization": f"token {token}"} if token else {}

    def _token(self) -> str | None:
        """The server's token: from the environment, else from its runtime file (``jpserver-PID.json``)."""
        if self._server_token is None:
            token = os.environ.get("JUPYTER_TOKEN") or ""
            if not token:
                try:
                    from jupyter_server.serverapp import list_running_servers

                    port = int(os.environ.get("VOILA_APP_PORT", "0"))
                    for info in list_running_servers():
                        if int(info.get("port", -1)) == port:
                            token = info.get("token") or ""
                            break
                except Exception:  # no runtime files: try without a token
                    token = ""
            self._server_token = token
        return self._server_token or None

    # ---- lifecycle
    def on_end(self, fn: Callable[[], None]) -> None:
        """Register a cleanup run before the kernel ends (stop training, close servers...)."""
        self._cleanups.append(fn)

    def start(self) -> SessionWatchdog:
        if not self._at_exit_registered:
            atexit.register(self.at_exit)
            self._at_exit_registered = True
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="workbench-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """One check; True when the page is still there. (Re)starts the heartbeat if it stalled."""
        now = time.monotonic()
        if self.last_beat is None or now - self.last_beat > 3 * self.interval:
            # the Play widget only starts ticking on a change seen by the page: toggle it
            self.heartbeat.playing = False
            self.heartbeat.playing = True
        n = self.connections()
        if n is not None and n > 0:
            self.last_seen = now
            self.page_seen = True
        limit = self.timeout if self.page_seen else self.first_timeout
        return now - self.last_seen < limit

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                alive = self.check()
            except Exception:
                traceback.print_exc()
                continue
            if not alive:
                self.end(f"no page connected for {self.timeout:.0f} s")
                return

    def _run_cleanups(self) -> None:
        for fn in self._cleanups:
            try:
                fn()
            except Exception:  # best effort: the kernel is ending anyway
                traceback.print_exc()

    def at_exit(self, budget: float = EXIT_BUDGET_SECONDS) -> bool:
        """The kernel process is exiting: run the cleanups (once) for at most ``budget`` s.

        Returns True when they finished in time (work still running after that is cut off by the exit;
        checkpoints and prediction blocks are written atomically, so what is on disk stays readable).
        """
        if self.ended:
            return True
        self.ended = True
        self.reason = "kernel shutdown"
        self._stop.set()
        worker = threading.Thread(target=self._run_cleanups, name="workbench-exit-cleanup", daemon=True)
        worker.start()
        worker.join(budget)
        return not worker.is_alive()

    def end(self, reason: str = "ended") -> None:
        """Run the cleanups, then shut this kernel down."""
        if self.ended:
            return
        self.ended = True
        self.reason = reason
        self._run_cleanups()
        if not self.exit_process:
            return
        if not self._ask_server_to_shutdown():
            time.sleep(1.0)
            os._exit(0)
        # the server stops the kernel within a few seconds; make sure it ends even if it does not
        threading.Timer(15.0, lambda: os._exit(0)).start()

    def _ask_server_to_shutdown(self) -> bool:
        """DELETE /api/kernels/{id}: a clean shutdown that the kernel restarter does not undo."""
        if not (self.server and self.kernel_id):
            return False
        xsrf = secrets.token_hex(16)  # double-submit cookie: the server compares header and cookie
        headers = {"X-XSRFToken": xsrf, "Cookie": f"_xsrf={xsrf}", **self._auth()}
        req = urllib.request.Request(f"{self.server}api/kernels/{self.kernel_id}", method="DELETE", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status in (200, 202, 204)
        except Exception:
            return False
