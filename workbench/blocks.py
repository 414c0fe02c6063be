"""One bounded task runner for every blockwise job (OME-Zarr writing, prediction on threads or Dask).

Tasks are submitted one at a time with at most ``in_flight`` of them pending, so memory stays bounded
however many blocks there are; each result is reported as it arrives. ``should_stop`` is polled before
every submission: once it returns True nothing more is submitted, the tasks in flight finish (and are
reported) and the run ends at a block boundary. This module sits below ``workbench.io`` (stdlib only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

_END = object()


def _wait_first(pending: set) -> tuple[set, set]:
    """``concurrent.futures``: (finished, still pending) once at least one future is done."""
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    return set(done), set(rest)


def run_bounded(
    submit: Callable[[Any], Any],
    tasks: Iterable[Any],
    in_flight: int,
    on_done: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    wait_first: Callable[[set], tuple[set, set]] = _wait_first,
) -> bool:
    """Run ``submit(task)`` (it returns a future) for every task, at most ``in_flight`` pending at a time.

    Args:
        submit: starts one task and returns its future (``result()``, ``cancel()``).
        tasks: the tasks, consumed lazily.
        in_flight: most futures pending at once (at least 1).
        on_done: called with each result, in completion order.
        should_stop: polled before each submission; True stops submitting.
        wait_first: ``pending -> (finished, pending)``; default for ``concurrent.futures`` futures.

    Returns:
        True when every task ran, False when ``should_stop`` ended the run early.

    Raises:
        whatever a task raised (futures not yet finished are cancelled).
    """
    pending: set = set()
    it = iter(tasks)
    more, stopped = True, False
    try:
        while True:
            while more and not stopped and len(pending) < max(1, in_flight):
                task = next(it, _END)
                if task is _END:
                    more = False
                elif should_stop is not None and should_stop():
                    stopped = True
                else:
                    pending.add(submit(task))
            if not pending:
                return not stopped
            finished, pending = wait_first(pending)
            for fut in finished:
                result = fut.result()
                if on_done is not None:
                    on_done(result)
    finally:
        for fut in pending:
            fut.cancel()


def run_threaded(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int,
    in_flight: int | None = None,
    on_done: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """:func:`run_bounded` of ``fn(task)`` on a pool of ``workers`` threads (``in_flight`` default: ``workers``).

    Returns:
        True when every task ran, False when ``should_stop`` ended the run early.
    """
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        return run_bounded(lambda task: pool.submit(fn, task), tasks, in_flight or workers, on_done, should_stop)
