"""The app server's guard: a Jupyter server extension that leaves only the app reachable.

A Jupyter server is a general tool: with its token anyone can open JupyterLab, a terminal, the contents
API (read and write files) or start a kernel and run code in it. The app needs almost none of that. This
extension puts one rule in front of every other handler of the server:

* **allow-list of routes** (:data:`ALLOWED`, by method and path below the base URL): the app page
  (``/voila/render/<the app notebook>`` only), the static files the page loads, the login page, the
  websocket of a kernel the page was given, the session watchdog's look-up and shutdown of its kernel
  (``GET``/``DELETE /api/kernels/<id>``), the read-only kernel list (operators and tests count kernels),
  ``/api/status`` and the restricted viewer proxy. Everything else (``/lab``, ``/tree``, ``/terminals``,
  ``/api/contents``, ``POST /api/kernels``, ``/api/sessions``, ``/api/terminals``, ``/files``, ...) is
  answered 404 before Jupyter sees it, with or without the token.
* **clean URL**: a request for the app page carrying ``?token=`` is authenticated (Jupyter then sets its
  login cookie) and redirected to the same URL without the token, so it does not stay in the address bar,
  the history or a copied link.
* **parent-death watch**: when the process that started the server (``workbench app``) dies, even by
  ``kill -9``, the server stops itself (``prctl(PR_SET_PDEATHSIG)`` on Linux, and a thread that polls the
  parent's pid everywhere) and removes the app's temporary folder on exit.

What the page's kernels accept from the browser is limited in the server configuration
(``MappingKernelManager.allowed_message_types``: widget messages only, no code execution), see
:mod:`widgets.serve.config`. Jupyter and tornado are imported only when the server loads the extension.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import sys
import threading
import time
from urllib.parse import parse_qsl, urlencode

#: The module name the app server's configuration enables as a Jupyter server extension.
EXTENSION = "widgets.serve.guard"
#: Environment of the server process: the app notebook, the launcher's pid, the runtime folder to remove.
NOTEBOOK_ENV, PARENT_PID_ENV, RUNTIME_ENV = "WORKBENCH_APP_NOTEBOOK", "WORKBENCH_APP_PARENT_PID", "WORKBENCH_APP_RUNTIME"
#: ``1`` when the launcher started the server from its main thread (then the parent-death signal is safe:
#: Linux sends it when the *thread* that forked ends).
PDEATHSIG_ENV = "WORKBENCH_APP_PDEATHSIG"
#: Seconds between two looks at the parent's pid.
PARENT_POLL_SECONDS = 1.0

_KERNEL_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

#: ``(methods, path pattern)`` below the base URL that the app uses; ``{notebook}`` is the app notebook.
ALLOWED: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"GET"}), r"voila/render/{notebook}"),
    (frozenset({"GET", "HEAD"}), r"voila/(static|templates|labextensions|api/themes)/.*"),
    (frozenset({"POST"}), rf"voila/api/shutdown/{_KERNEL_ID}"),
    (frozenset({"GET", "HEAD"}), r"static/.*"),
    (frozenset({"GET", "HEAD"}), r"panel_dist/.*"),
    (frozenset({"GET", "HEAD"}), r"favicon\.ico"),
    (frozenset({"GET", "POST"}), r"login"),
    (frozenset({"GET"}), r"logout"),
    (frozenset({"GET"}), r"api/status"),
    (frozenset({"GET"}), r"api/kernels"),
    (frozenset({"GET", "DELETE"}), rf"api/kernels/{_KERNEL_ID}"),
    (frozenset({"GET"}), rf"api/kernels/{_KERNEL_ID}/channels"),
    (frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}), r"proxy/\d+(/.*)?"),
)


def allowed_patterns(notebook: str) -> list[tuple[frozenset[str], re.Pattern]]:
    """:data:`ALLOWED` compiled for the app notebook ``notebook`` (a path relative to the served folder)."""
    nb = "/".join(re.escape(part) for part in notebook.strip("/").split("/"))
    return [(methods, re.compile(pattern.replace("{notebook}", nb))) for methods, pattern in ALLOWED]


def is_allowed(method: str, path: str, base_url: str, patterns) -> bool:
    """True when ``method path`` (``path`` without the query) is one of the app's routes."""
    if not path.startswith(base_url):
        return False
    rest = path[len(base_url):]
    if "/../" in f"/{rest}/" or "/./" in f"/{rest}/" or "//" in rest:
        return False
    return any(method in methods and pattern.fullmatch(rest) for methods, pattern in patterns)


def clean_query(query: str) -> str:
    """``query`` without its ``token`` parameter (the other parameters in order)."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"]
    return urlencode(kept)


# ----------------------------------------------------------------------------- parent-death watch
def _set_pdeathsig(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


class ParentWatch:
    """Stop this server when its launcher (pid ``parent_pid``) is gone, and leave nothing behind.

    A daemon thread looks at the parent's pid every ``interval`` s and keeps a list of this process's
    descendants (a kernel's children are re-parented away from the server when the kernel ends, so they
    must be known before). When the parent is gone it sends SIGTERM to this process (Jupyter then shuts
    its kernels down); at exit, without the launcher, the descendants still running are killed and the
    runtime folder is removed (the launcher does both itself when it stops the server).
    """

    def __init__(self, parent_pid: int, runtime: str | None = None, interval: float = PARENT_POLL_SECONDS):
        self.parent_pid = int(parent_pid)
        self.runtime = runtime
        self.interval = float(interval)
        self.family: list = []
        self.thread: threading.Thread | None = None

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def start(self) -> ParentWatch:
        atexit.register(self.at_exit)
        self.thread = threading.Thread(target=self._watch, name="workbench-parent-watch", daemon=True)
        self.thread.start()
        return self

    def _remember_family(self) -> None:
        import psutil

        try:
            known = {p.pid: p for p in self.family if p.is_running()}
            known.update({p.pid: p for p in psutil.Process().children(recursive=True)})
            self.family = list(known.values())
        except psutil.Error:
            pass

    def _watch(self) -> None:
        while self.parent_alive():
            self._remember_family()
            time.sleep(self.interval)
        self._remember_family()
        os.kill(os.getpid(), signal.SIGTERM)

    def at_exit(self) -> None:
        if self.parent_alive():
            return
        import psutil

        self._remember_family()
        for proc in self.family:
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.Error:
                pass
        if self.runtime:
            shutil.rmtree(self.runtime, ignore_errors=True)


def start_parent_watch() -> ParentWatch | None:
    """Watch the launcher named by :data:`PARENT_PID_ENV` (None without it); with :data:`PDEATHSIG_ENV`
    ``=1`` Linux also sends SIGTERM at once when the launcher dies."""
    parent = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
    if parent <= 1:
        return None
    if os.environ.get(PDEATHSIG_ENV) == "1":
        _set_pdeathsig(signal.SIGTERM)
    return ParentWatch(parent, os.environ.get(RUNTIME_ENV)).start()


# ----------------------------------------------------------------------------- the extension
def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Put the allow-list and the clean-URL redirect in front of every handler; watch the launcher."""
    from jupyter_server.base.handlers import JupyterHandler
    from tornado import web
    from tornado.routing import Matcher, Rule

    settings = serverapp.web_app.settings
    base = settings["base_url"]
    notebook = os.environ.get(NOTEBOOK_ENV, "workbench.ipynb")
    patterns = allowed_patterns(notebook)
    render_path = f"{base}voila/render/{notebook.strip('/')}"

    class Refused(Matcher):
        def match(self, request):
            if is_allowed(request.method, request.path, base, patterns):
                return None
            return {"path_args": [], "path_kwargs": {}}

    class TokenInPageUrl(Matcher):
        def match(self, request):
            if request.method == "GET" and request.path == render_path and "token" in request.query_arguments:
                return {"path_args": [], "path_kwargs": {}}
            return None

    class NotPartOfTheApp(web.RequestHandler):
        """404 for every route the app does not use (same answer with or without the token)."""

        def set_default_headers(self) -> None:
            for name, value in settings.get("headers", {}).items():
                self.set_header(name, value)

        def check_xsrf_cookie(self) -> None:  # refused anyway: a POST gets the same 404 as a GET
            return None

        def prepare(self):
            serverapp.log.info("workbench: refused %s %s", self.request.method, self.request.path)
            raise web.HTTPError(404)

    class CleanPageUrl(JupyterHandler):
        """Authenticate the token (Jupyter sets its login cookie), then redirect to the URL without it."""

        @web.authenticated
        def get(self):
            _ = self.xsrf_token  # sets the _xsrf cookie: Voila's shutdown beacon (tab closed) needs it
            query = clean_query(self.request.query)
            self.redirect(self.request.path + (f"?{query}" if query else ""))

    rules = serverapp.web_app.default_router.rules
    rules.insert(0, Rule(TokenInPageUrl(), CleanPageUrl))
    rules.insert(0, Rule(Refused(), NotPartOfTheApp))
    watch = start_parent_watch()
    serverapp.log.info("workbench: only the app is served (%s); launcher watch: %s", render_path, watch is not None)
