"""Where the per-block solves of the graph methods run: threads of this process or a Dask cluster.

Each task is one block and is independent of the others (it reads its block with a halo and writes its
core), so the result does not depend on where or in which order the tasks run: the ids are assigned
afterwards in the blocks' raster order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from workbench.blocks import run_threaded

__all__ = ["map_blocks"]


def map_blocks(fn: Callable[[Any], Any], tasks: Sequence[Any], scheduler: Any = None,
               on_done: Callable[[], None] | None = None, should_stop: Callable[[], bool] | None = None) -> list:
    """``[fn(task) for task in tasks]``, on threads (``scheduler`` None) or on Dask.

    Args:
        fn: a picklable callable (for Dask: a module-level function or an object of an importable class).
        tasks: picklable task descriptions.
        scheduler: None (threads of this process, one per core), ``"processes"`` (a local Dask cluster, closed
            afterwards), a Dask scheduler address or a ``distributed.Client``.
        on_done: called after each finished task (progress).
        should_stop: polled before each submission (threads) or before the run (Dask).

    Returns:
        The results, in the order of ``tasks``.

    Raises:
        WorkbenchError: the Dask scheduler does not answer (one line).
    """
    tasks = list(tasks)
    results: list = [None] * len(tasks)
    if scheduler is None:
        def run(i):
            return i, fn(tasks[i])

        def done(item):
            results[item[0]] = item[1]
            if on_done is not None:
                on_done()

        run_threaded(run, range(len(tasks)), workers=min(len(tasks), os.cpu_count() or 1) or 1,
                     on_done=done, should_stop=should_stop)
        return results
    from workbench.inference.executors import connect

    client, owned = connect(scheduler)
    try:
        futures = client.map(fn, tasks, pure=False)
        out = client.gather(futures)
    finally:
        if owned:
            client.close()
    for _ in out:
        if on_done is not None:
            on_done()
    return list(out)
