"""One progress adapter for every long job: tqdm-like objects, plain callables, or nothing.

Long jobs in the core (training, prediction, segmentation, imports, downloads) take a ``progress`` argument
and report through :class:`Progress`; the UI adapts its widgets to the same two shapes. The ETA maths the
app shows lives here too (:func:`eta_seconds`, :func:`fraction_done`).

``progress`` may be:
- ``None``: nothing is reported;
- a tqdm-like object: ``update(n)``, optional ``total``, ``set_postfix(dict, refresh=False)``, ``refresh()``;
- a callable ``fn(done, total)`` or ``fn(done, total, stats)`` (``stats``: the dict of :meth:`Progress.stats`).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any


def _arity(fn: Any) -> int:
    """How many positional arguments ``fn`` takes (3 when it takes ``*args``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return 3
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def eta_seconds(done: float, total: float | None, elapsed: float) -> float:
    """Seconds left at the rate so far (``nan`` when nothing is done yet or the total is unknown)."""
    if not total or done <= 0 or elapsed <= 0:
        return math.nan
    return max(0.0, elapsed * (total - done) / done)


def fraction_done(done: float = 0, total: float | None = None, elapsed: float = 0.0,
                  seconds: float | None = None) -> float:
    """How far a job is, 0..1: the larger of ``done / total`` and ``elapsed / seconds`` (a time budget)."""
    f = 0.0
    if total:
        f = max(f, done / total)
    if seconds:
        f = max(f, elapsed / seconds)
    return min(1.0, max(0.0, f))


class Progress:
    """Reports ``done`` out of ``total`` to whatever the caller passed (see the module docstring).

    Args:
        target: None, a tqdm-like object or a callable.
        total: number of steps, when known (given to a tqdm-like object whose ``total`` is unset).
        initial: steps already done before this job started (a resumed job); counted but not timed.
        unit_size: what one step is worth (voxels per block, patches per iteration) for ``stats()['rate']``.
    """

    def __init__(self, target: Any = None, total: int | None = None, initial: int = 0, unit_size: float = 1.0):
        self.target = target
        self.total = int(total) if total is not None else None
        self.done = int(initial)
        self.initial = int(initial)
        self.unit_size = float(unit_size)
        self.started = time.perf_counter()
        self._tqdm = target is not None and hasattr(target, "update")
        self._arity = _arity(target) if (target is not None and not self._tqdm) else 0
        if self._tqdm:
            try:
                if self.total is not None and not getattr(target, "total", None):
                    target.total = self.total
                    if hasattr(target, "refresh"):
                        target.refresh()
                if self.initial:
                    target.update(self.initial)
            except (AttributeError, TypeError):  # a read-only total: the bar counts without one
                pass

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def stats(self) -> dict:
        """``done``, ``total``, ``elapsed_s``, ``rate`` (units per second over this job) and ``eta_s``."""
        dt = max(self.elapsed, 1e-9)
        computed = self.done - self.initial
        rate = computed * self.unit_size / dt
        eta = (eta_seconds(computed, self.total - self.initial, dt) if self.total is not None else math.nan)
        return {"done": self.done, "total": self.total, "elapsed_s": dt, "rate": rate,
                "eta_s": math.inf if math.isnan(eta) and computed == 0 and self.total else eta}

    def advance(self, n: int = 1, postfix: dict | None = None) -> None:
        """Count ``n`` more steps; ``postfix`` (short strings) is shown beside a tqdm bar."""
        self.done += int(n)
        t = self.target
        if t is None:
            return
        if self._tqdm:
            t.update(int(n))
            if postfix and hasattr(t, "set_postfix"):
                t.set_postfix(postfix, refresh=False)
        elif self._arity >= 3:
            t(self.done, self.total, self.stats())
        else:
            t(self.done, self.total)

    __call__ = advance


def as_progress(progress: Any, total: int | None = None, initial: int = 0, unit_size: float = 1.0) -> Progress:
    """``progress`` itself when it is a :class:`Progress`, else a new one around it."""
    if isinstance(progress, Progress):
        if total is not None and progress.total is None:
            progress.total = int(total)
        return progress
    return Progress(progress, total=total, initial=initial, unit_size=unit_size)
