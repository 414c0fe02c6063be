"""Small pieces every panel uses: the status line, background jobs and the UI clock."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W

from workbench.errors import WorkbenchError


def styled(widget: W.Widget, *classes: str) -> W.Widget:
    """Add CSS classes (stable names for automation and styling) and return the widget."""
    for c in classes:
        widget.add_class(c)
    return widget


def action_button(verb: str, description: str, style: str = "", tooltip: str = "", icon: str = "") -> W.Button:
    """A main button with the stable CSS class ``wb-action-<verb>``."""
    b = W.Button(description=description, button_style=style, tooltip=tooltip or description, icon=icon,
                 layout=W.Layout(width="auto", min_width="90px"))
    return styled(b, "wb-action", f"wb-action-{verb}")


def error_line(exc: BaseException) -> str:
    """A one-line message for the status line (no traceback)."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


class StatusLine:
    """One line under a panel: what happened last, or what went wrong (``wb-status``)."""

    def __init__(self, step: str):
        self.widget = styled(W.HTML(value=""), "wb-status", f"wb-status-{step}")
        self.text = ""
        self.level = "info"

    def set(self, text: str, level: str = "info") -> None:
        """Show ``text``; ``level`` is info, ok, busy or error."""
        self.text = " ".join(str(text).split())
        self.level = level
        colour = {"error": "#b00020", "ok": "#1b7f3b", "busy": "#8a6d00"}.get(level, "#444")
        safe = self.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.widget.value = f'<span class="wb-status-{level}" style="color:{colour}">{safe}</span>'

    def error(self, exc: BaseException) -> None:
        self.set(error_line(exc), "error")
        if not isinstance(exc, WorkbenchError):
            traceback.print_exception(exc)  # programming errors keep their traceback in the kernel log

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a handler: any exception becomes a one-line status instead of vanishing."""

        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # shown to the user, never swallowed silently
                self.error(exc)
                return None

        wrapped.__name__ = getattr(fn, "__name__", "handler")
        wrapped.__doc__ = fn.__doc__
        return wrapped


class Job:
    """A function running in a daemon thread, with a stop flag and its outcome.

    ``fn(should_stop)`` runs off the kernel's main thread so the page stays live; ``on_done(job)`` is
    called in the worker thread when it finishes (``job.error`` holds any exception).
    """

    def __init__(self, name: str, fn: Callable[[Callable[[], bool]], Any], on_done: Callable[[Job], None] | None = None):
        self.name = name
        self._fn = fn
        self._on_done = on_done
        self._stop = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"workbench-{name}", daemon=True)

    def start(self) -> Job:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._fn(self._stop.is_set)
        except BaseException as exc:  # reported through on_done / .error
            self.error = exc
        finally:
            self.finished = time.monotonic()
            if self._on_done is not None:
                try:
                    self._on_done(self)
                except Exception:
                    traceback.print_exc()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; True when it has."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


class Ticker:
    """Call ``fn`` every ``interval`` seconds on the kernel's event loop (the thread that owns the widgets).

    Outside a running event loop (plain Python, unit tests) nothing is scheduled: call ``fn`` yourself.
    """

    def __init__(self, interval: float, fn: Callable[[], Any]):
        self.interval = float(interval)
        self.fn = fn
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.active = False

    def start(self) -> bool:
        """Start ticking; returns False when no event loop is running here."""
        if self.active:
            return True
        loop = _kernel_loop()
        if loop is None:
            return False
        self._loop = loop
        self.active = True
        loop.call_soon_threadsafe(self._schedule)
        return True

    def _schedule(self) -> None:
        if self.active and self._loop is not None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        if not self.active:
            return
        try:
            self.fn()
        except Exception:  # a failing refresh must not stop the clock
            traceback.print_exc()
        self._schedule()

    def stop(self) -> None:
        self.active = False
        if self._handle is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle.cancel)
        self._handle = None


_LOOP: asyncio.AbstractEventLoop | None = None


def remember_loop() -> None:
    """Record the running event loop of the thread that builds the widgets (the kernel's main loop)."""
    global _LOOP
    try:
        _LOOP = asyncio.get_running_loop()
    except RuntimeError:
        try:
            from tornado.ioloop import IOLoop

            _LOOP = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        except Exception:
            _LOOP = None


def _kernel_loop() -> asyncio.AbstractEventLoop | None:
    if _LOOP is not None and not _LOOP.is_closed():
        return _LOOP
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def in_kernel() -> bool:
    """True inside a running IPython kernel (notebook, Voila), False in plain Python and unit tests."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and getattr(ip, "kernel", None) is not None
    except Exception:
        return False


def fmt_duration(seconds: float | None) -> str:
    """'1 min 05 s' style."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def display_path(path) -> str:
    """A path as shown on the page: under the home folder as ``~/...`` (shorter, and names no user)."""
    text = str(path)
    try:
        home = Path.home()
    except RuntimeError:  # no home folder
        return text
    p = Path(text)
    if not p.is_absolute() or home == Path(home.anchor) or home not in (p, *p.parents):
        return text
    rel = p.relative_to(home).as_posix()
    return "~" if rel == "." else f"~/{rel}"


def fmt_count(n: float) -> str:
    """1234567 -> '1.2 M'."""
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f}"
