"""The read-only dashboard: a plain threaded HTTP server over the static shares of the projects in a folder.

Why a plain server and not Voila: a viewer needs nothing that runs code. Voila (even standalone) starts a
kernel per page, holds ~225 MB per viewer and answers websocket and kernel requests; the static export
already holds every view (plots, slices, Neuroglancer over HTTP), so serving files is enough, serves many
viewers from one process, and leaves no code path to run anything.

What it answers: ``GET``/``HEAD`` of ``/`` (the projects list) and of ``/p/<project>/<file>`` (that
project's share, written into the cache folder when first asked for and again when the project changed);
with a ``live`` callable also ``/p/<project>/live.json`` (a Neuroglancer state of the project as it is now)
and the files of the project's ``data.zarr`` under ``/p/<project>/project-data/`` (full resolution, live).
Everything else is refused: other methods (405), paths outside a share or the projects folder, hidden files
(but zarr metadata) and unknown projects (404). There is no Jupyter, no kernel, no file browser and no terminal here.
With a token, every request must carry it (``?token=`` once, then a cookie, or ``Authorization: token T``).

Standard library only (the pages and the live state come in as callables).
"""

from __future__ import annotations

import gzip
import hmac
import mimetypes
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.share.neuroglancer import LIVE_DATA

COOKIE = "workbench_dashboard_token"
TYPES = {".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".css": "text/css", ".html": "text/html; charset=utf-8", ".jpg": "image/jpeg", ".png": "image/png"}
#: a project is looked at again (has it changed?) at most this often
RECHECK_SECONDS = 2.0
#: the share's parts that never change between two builds may be cached by browsers for this long
STATIC_MAX_AGE = 300
#: files of these kinds go out gzip-compressed to browsers that accept it (BokehJS: 1.6 MB -> about 0.45 MB)
COMPRESSIBLE = {".js", ".json", ".css", ".html", ".svg", ".txt"}
#: compressed bodies kept in memory, keyed by (path, modification time, size)
GZIP_CACHE_ENTRIES = 64
#: a project folder's signature files: a change in any of them makes the share be written again
SIGNATURE_GLOBS = ("project.json", "annotations.jsonl", "runs/*/metrics.jsonl", "runs/*/checkpoint.pt",
                   "data.zarr/predictions/*/.zattrs", "data.zarr/segmentation/*/.zattrs")


@dataclass(frozen=True)
class DashboardConfig:
    """What the dashboard serves.

    Attributes:
        projects: the folder whose sub-folders are projects.
        cache: where the shares are written (never inside ``projects``).
        build: ``build(project_dir, out_dir)`` writes a project's share.
        front_page: ``front_page(entries) -> html`` for the projects list (``{"name", "href", "runs", "shape"}``).
        token: required on every request when set.
        live: ``live(project_dir) -> state | None``, the Neuroglancer state of the project as it is now
            (``/p/<project>/live.json``); with it the project's ``data.zarr`` is served, read-only, under
            ``/p/<project>/project-data/``. None: neither.
    """

    projects: Path
    cache: Path
    build: Callable[[Path, Path], None]
    front_page: Callable[[list[dict]], str]
    token: str | None = None
    live: Callable[[Path], dict | None] | None = None


def project_signature(root: Path) -> tuple:
    """Modification times and sizes of the files that change when a project's results change."""
    out = []
    for pattern in SIGNATURE_GLOBS:
        for p in sorted(root.glob(pattern)):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p.relative_to(root)), st.st_mtime_ns, st.st_size))
    return tuple(out)


class ShareCache:
    """The projects of a folder and their shares, each written once and again only when the project changed."""

    def __init__(self, config: DashboardConfig):
        self.config = config
        self.projects = Path(config.projects).resolve()
        self.cache = Path(config.cache).resolve()
        if not self.projects.is_dir():
            raise WorkbenchError("no such projects folder", self.projects)
        if self.cache == self.projects or self.projects in self.cache.parents:
            raise WorkbenchError("the dashboard's cache must be outside the projects folder", self.cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._built: dict[str, tuple] = {}
        self._checked: dict[str, float] = {}
        #: gzip-compressed file bodies (see DashboardHandler._file_body) and the lock that guards them
        self.gzipped: dict[tuple, bytes] = {}
        self.guard = threading.Lock()

    def names(self) -> list[str]:
        """The project folders (direct sub-folders holding a ``project.json``), sorted."""
        return sorted(p.name for p in self.projects.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "project.json").is_file())

    def project_dir(self, name: str) -> Path | None:
        """The folder of project ``name``, or None when there is no such project (or it lies outside)."""
        if name not in self.names():
            return None
        root = (self.projects / name).resolve()
        return root if root.parent == self.projects else None

    def site(self, name: str) -> Path | None:
        """The share of project ``name`` (written now if missing or stale), or None when there is no such project."""
        root = self.project_dir(name)
        if root is None:
            return None
        out = self.cache / name
        checked = self._checked.get(name)
        if checked is not None and time.monotonic() - checked < RECHECK_SECONDS:
            return out  # looked at moments ago: a page's many requests do not each look again
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            sig = project_signature(root)
            if self._built.get(name) != sig or not (out / "index.html").exists():
                self.config.build(root, out)
                self._built[name] = sig
            self._checked[name] = time.monotonic()
            return out

    def entries(self) -> list[dict]:
        import json

        out = []
        for name in self.names():
            meta = {}
            try:
                meta = json.loads((self.projects / name / "project.json").read_text())
            except (OSError, ValueError):
                pass
            runs_dir = self.projects / name / "runs"
            runs = sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
            out.append({"name": meta.get("name", name), "href": f"/p/{urllib.parse.quote(name)}/",
                        "runs": runs, "shape": (meta.get("raw") or {}).get("shape")})
        return out


#: the only hidden names served: zarr (v2) metadata, which Neuroglancer reads
ZARR_METADATA = frozenset({".zattrs", ".zarray", ".zgroup", ".zmetadata"})


def bad_part(part: str) -> bool:
    """True for a path segment that must not be followed: empty, ``.``/``..``, hidden (except zarr metadata),
    or holding a backslash or NUL."""
    return (part in ("", ".", "..") or (part.startswith(".") and part not in ZARR_METADATA)
            or "\\" in part or "\x00" in part)


def safe_file(root: Path, parts: list[str]) -> Path | None:
    """``root/parts...`` when it is a file inside ``root`` (no ``..``, no hidden names but zarr metadata, no
    links out), else None."""
    if any(bad_part(p) for p in parts):
        return None
    path = root.joinpath(*parts)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    root = root.resolve()
    if real != root and root not in real.parents:
        return None
    return real if real.is_file() else None


class DashboardHandler(BaseHTTPRequestHandler):
    """GET/HEAD of the projects list and of the shares' files; every other request is refused."""

    server_version = "WorkbenchDashboard"
    sys_version = ""
    cache: ShareCache  # set on the subclass made by make_server
    token: str | None = None

    def log_message(self, format, *args):
        pass

    def _refuse(self, status: HTTPStatus, text: str) -> None:
        body = f"{status.value} {status.phrase}: {text}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_allowed(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "this dashboard is read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _authorised(self, query: dict) -> tuple[bool, bool]:
        """(allowed, set the cookie)."""
        if not self.token:
            return True, False
        given = (query.get("token") or [None])[0]
        if given and hmac.compare_digest(given, self.token):
            return True, True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("token ") and hmac.compare_digest(auth[6:].strip(), self.token):
            return True, False
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and hmac.compare_digest(v, self.token):
                return True, False
        return False, False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        allowed, set_cookie = self._authorised(urllib.parse.parse_qs(url.query))
        if not allowed:
            return self._refuse(HTTPStatus.FORBIDDEN, "a valid token is required")
        raw_parts = url.path.split("/")[1:]
        parts = [urllib.parse.unquote(p) for p in raw_parts]
        if parts in ([""], []):
            body = self.cache.config.front_page(self.cache.entries()).encode()
            return self._send(body, "text/html; charset=utf-8", set_cookie)
        if parts[0] != "p" or len(parts) < 2:
            return self._refuse(HTTPStatus.NOT_FOUND, "no such page")
        if len(parts) == 2:  # /p/name -> /p/name/
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", url.path + "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        name, rest = parts[1], parts[2:]
        if rest == [""]:
            rest = ["index.html"]
        if any(bad_part(p) for p in [name, *rest]):
            return self._refuse(HTTPStatus.NOT_FOUND, "no such file")
        live = self.cache.config.live
        if live is not None and rest[0] in ("live.json", LIVE_DATA):
            return self._live(name, rest, live, set_cookie)
        try:
            site = self.cache.site(name)
        except WorkbenchError as err:
            return self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, f"the share of {name} failed: {err}")
        path = safe_file(site, rest) if site is not None else None
        if path is None:
            return self._refuse(HTTPStatus.NOT_FOUND, "no such file")
        ctype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        cache = f"max-age={STATIC_MAX_AGE}" if rest[0] in ("static", "neuroglancer") else "no-cache"
        body, encoding = self._file_body(path)
        return self._send(body, ctype, set_cookie, cache, encoding)

    def _file_body(self, path: Path) -> tuple[bytes, str | None]:
        """The file's bytes, gzip-compressed (from the server's cache) when the browser accepts it and the
        kind compresses; returns ``(body, content encoding or None)``."""
        st = path.stat()
        if (path.suffix not in COMPRESSIBLE or st.st_size < 1024
                or "gzip" not in self.headers.get("Accept-Encoding", "")):
            return path.read_bytes(), None
        key = (str(path), st.st_mtime_ns, st.st_size)
        compressed = self.cache.gzipped.get(key)  # cached: the file is not read again
        if compressed is None:
            compressed = gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)
            with self.cache.guard:
                while len(self.cache.gzipped) >= GZIP_CACHE_ENTRIES:
                    self.cache.gzipped.pop(next(iter(self.cache.gzipped)))
                self.cache.gzipped[key] = compressed
        return compressed, "gzip"

    def _live(self, name: str, rest: list[str], live, set_cookie: bool) -> None:
        """``live.json`` (the project's live Neuroglancer state) or a file of its ``data.zarr``."""
        import json

        root = self.cache.project_dir(name)
        if root is None:
            return self._refuse(HTTPStatus.NOT_FOUND, "no such project")
        if rest == ["live.json"]:
            try:
                state = live(root)
            except WorkbenchError as err:
                return self._refuse(HTTPStatus.NOT_FOUND, f"no live view: {err}")
            if state is None:
                return self._refuse(HTTPStatus.NOT_FOUND, "no live view of this project")
            return self._send(json.dumps(state).encode(), "application/json", set_cookie)
        path = safe_file(root / "data.zarr", rest[1:]) if len(rest) > 1 else None
        if path is None:
            return self._refuse(HTTPStatus.NOT_FOUND, "no such file")
        return self._send(path.read_bytes(), "application/octet-stream", set_cookie)

    def _send(self, body: bytes, ctype: str, set_cookie: bool, cache: str = "no-cache",
              encoding: str | None = None) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        if set_cookie:
            self.send_header("Set-Cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class DashboardHTTPServer(ThreadingHTTPServer):
    """A thread per connection, and a listen queue long enough for many viewers' browsers opening their
    connections at the same moment (the standard library's 5 drops the rest, which then retry after 1 s)."""

    request_queue_size = 128
    daemon_threads = True


def make_server(config: DashboardConfig, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threaded HTTP server for the dashboard (not yet serving: call ``serve_forever``).

    Raises:
        WorkbenchError: the projects folder is missing, or the address cannot be bound.
    """
    cache = ShareCache(config)
    handler = type("BoundDashboardHandler", (DashboardHandler,), {"cache": cache, "token": config.token})
    try:
        server = DashboardHTTPServer((host, int(port)), handler)
    except OSError as err:
        raise WorkbenchError(f"cannot listen on {host}:{port} ({err})") from err
    server.share_cache = cache
    return server
