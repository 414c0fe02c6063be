"""Local TCP ports: is one free, pick a free one, wait for one to listen, and the viewer-port registry.

The registry is how a process that serves a viewer (``workbench.viewer.live``) tells an app server's
proxy (``widgets.serve.proxy``) that its port may be reached: the app server names a directory in
``WORKBENCH_PROXY_PORTS_DIR`` for every kernel; a viewer writes a file named after its port there
(holding its pid) and removes it when the process exits. Outside an app server the variable is
unset and registering does nothing.

Standard library (and :mod:`workbench.atomic`'s ``pid_alive``) only: imported by viewers and by the app server alike.
"""

from __future__ import annotations

import atexit
import os
import socket
import time
from pathlib import Path

from workbench.atomic import pid_alive

#: Environment variable naming the directory of proxy-allowed ports (one file per port, holding a pid).
PROXY_PORTS_ENV = "WORKBENCH_PROXY_PORTS_DIR"

_registered: set[Path] = set()


# ----------------------------------------------------------------------------- free ports
def port_is_free(bind: str, port: int) -> bool:
    """True when ``bind:port`` can be listened on now (port 0 is always free)."""
    if int(port) == 0:
        return True
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, int(port)))
        except OSError:
            return False
    return True


def free_port(bind: str = "127.0.0.1") -> int:
    """A port free on ``bind`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((bind, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 30.0, interval: float = 0.2) -> bool:
    """Wait until something accepts TCP connections on ``host:port``; True if it did within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(2.0, max(interval, 0.1))):
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ----------------------------------------------------------------------------- viewer-port registry
def proxy_ports_dir(env=None) -> Path | None:
    """The registry directory of the app server this process runs under, or None outside one."""
    root = (os.environ if env is None else env).get(PROXY_PORTS_ENV)
    return Path(root) if root else None


def register_proxy_port(port: int) -> Path | None:
    """Allow the app server's proxy to reach ``port`` (a Neuroglancer server this process started).

    Does nothing outside the app server (``WORKBENCH_PROXY_PORTS_DIR`` unset). The registration is
    removed when this process exits.
    """
    root = proxy_ports_dir()
    if root is None:
        return None
    path = root / str(int(port))
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


def proxy_port_allowed(port: int | str, root: str | Path | None = None) -> bool:
    """True when ``port`` was registered by a live workbench process (see :func:`register_proxy_port`)."""
    root = root or proxy_ports_dir()
    if not root:
        return False
    try:
        path = Path(root) / str(int(port))
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid and not pid_alive(pid):  # a crashed kernel: its port may now belong to anything
        try:
            path.unlink()
        except OSError:
            pass
        return False
    return True
