"""Where block tasks run: threads of this process or a Dask cluster, behind one small interface.

Both go through :func:`workbench.blocks.run_bounded`: a bounded number of blocks in flight, results
reported as they arrive, ``should_stop`` polled before each submission (a stop ends the run at a block
boundary, leaving a resumable store).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from workbench.blocks import run_bounded, run_threaded
from workbench.device import gpu_count, prepare_device
from workbench.errors import WorkbenchError
from workbench.inference.compute import compile_predictor
from workbench.inference.jobs import BlockJob, run_block
from workbench.inference.options import PredictOptions
from workbench.inference.planner import PlannedBlock
from workbench.io.volume import Volume
from workbench.models.predictor import Predictor

#: ``on_done(index)`` after each finished block
OnDone = Callable[[tuple[int, ...]], None]
#: blocks in flight on one GPU: one block's reading, normalising and writing overlap another's forward passes
GPU_BLOCKS_IN_FLIGHT = 2


class Executor(Protocol):
    """Runs the block tasks of one prediction.

    Attributes:
        remote: tasks run in other processes (the job must carry a loadable predictor and raw volume).
        info: what it decided (e.g. ``workers``, ``block_memory_bytes``), merged into the result's info.
    """

    remote: bool
    info: dict

    def prepare(self, store: Path) -> None:
        """Check that the tasks can reach the store (before any block runs)."""

    def run(self, job: BlockJob, blocks: Sequence[PlannedBlock], on_done: OnDone,
            should_stop: Callable[[], bool] | None) -> bool:
        """Run the blocks; True when all ran, False when ``should_stop`` ended the run early."""

    def close(self) -> None:
        """Release what it holds (a Dask client it opened)."""


def auto_workers(block_bytes: int, cores: int | None = None, available: int | None = None) -> int:
    """Blocks in flight for a CPU run: one per core (each on its own torch thread), at most as many as fit
    in three quarters of the available memory at ``block_bytes`` each.

    One torch thread per block keeps both cores of a laptop busy through the serial parts of a forward
    pass and through each block's reading and writing; two threads on one block leave them idle there.
    """
    cores = int(cores or os.cpu_count() or 1)
    return max(1, min(cores, 1 + blocks_that_fit(block_bytes, available)))


def blocks_that_fit(block_bytes: int, available: int | None = None) -> int:
    """How many blocks of ``block_bytes`` fit in three quarters of the available memory (``available``:
    bytes, default what the system has free now)."""
    import psutil

    available = int(psutil.virtual_memory().available if available is None else available)
    return int(0.75 * available // max(int(block_bytes), 1))


def _peak_rss_increase(fn: Callable[[], Any], interval: float = 0.02) -> tuple[Any, int]:
    """Run ``fn()`` while sampling this process's resident memory: (its result, the peak increase in bytes)."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.wait(interval):
            peak = max(peak, proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        stop.set()
        sampler.join()
    return result, max(0, max(peak, proc.memory_info().rss) - base)


def _block_bound(predictor: Predictor, job: BlockJob, blocks: Sequence[PlannedBlock]) -> int | None:
    """:func:`~workbench.inference.memory.block_bytes_bound` of the largest block (None: no bound)."""
    from workbench.inference.compute import default_tile_shape
    from workbench.inference.memory import block_bytes_bound

    if not blocks:
        return None
    largest = max(blocks, key=lambda b: b.input.size)
    tile = job.tile_shape or default_tile_shape(predictor, largest.input.shape)
    return block_bytes_bound(predictor, tile, largest.input.shape, views=8 if job.tta else 1)


def _on_gpu(predictor: Predictor) -> bool:
    device = predictor.device
    return getattr(device, "type", str(device or "cpu")) not in ("cpu", "None")


class _Closing:
    """Context-manager support: ``with make_executor(...) as ex:`` closes it."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ThreadExecutor(_Closing):
    """Blocks on threads of this process, sharing the in-memory predictor and raw volume.

    Args:
        workers: blocks in flight, or ``"auto"`` (see :class:`~workbench.inference.options.PredictOptions`).
        torch_threads: torch threads per task (None: the cores shared among the workers).
        compile: ``torch.compile`` the predictor's model first.
    """

    remote = False

    def __init__(self, predictor: Predictor, raw: Volume, workers: int | str = "auto",
                 torch_threads: int | None = None, compile: bool = False):
        self.predictor, self.raw = predictor, raw
        self.workers, self.torch_threads, self.compile = workers, torch_threads, compile
        self.info: dict = {}

    def prepare(self, store: Path) -> None:
        pass

    def run(self, job: BlockJob, blocks: Sequence[PlannedBlock], on_done: OnDone,
            should_stop: Callable[[], bool] | None) -> bool:
        cores = os.cpu_count() or 1
        workers = self.workers
        on_gpu = _on_gpu(self.predictor)
        if on_gpu:
            prepare_device(self.predictor.device)
        if workers == "auto":
            if on_gpu:  # the GPU computes one block while the CPU reads and writes another
                workers = 1 if self.compile or len(blocks) < 2 else GPU_BLOCKS_IN_FLIGHT
            else:
                workers = 1 if self.compile or cores < 2 or len(blocks) < 2 else None
        if self.compile:
            compile_predictor(self.predictor)
        if workers is None:
            return self._run_measured(job, blocks, on_done, should_stop, cores)
        threads = self.torch_threads
        if workers > 1 and threads is None:
            threads = max(1, cores // workers)  # share the cores, never oversubscribe
        self.info["workers"] = workers
        return self._run(dataclasses.replace(job, torch_threads=threads), blocks, workers,
                         on_done, should_stop)

    def _run_measured(self, job, blocks, on_done, should_stop, cores: int) -> bool:
        """One block per core from the start when an upper bound of their memory fits (:mod:`.memory`), else
        the first block alone while its memory is measured, then as many in flight as fit (auto_workers)."""
        bound = _block_bound(self.predictor, job, blocks)
        if bound is not None and blocks_that_fit(bound) >= cores:
            self.info.update(workers=cores, block_memory_bound_bytes=bound)
            every = dataclasses.replace(job, torch_threads=self.torch_threads or 1)
            return self._run(every, blocks, cores, on_done, should_stop)
        first = dataclasses.replace(job, torch_threads=self.torch_threads or cores)
        finished, per_block = _peak_rss_increase(lambda: self._run(first, blocks[:1], 1, on_done, should_stop))
        workers = auto_workers(per_block, cores)
        self.info.update(workers=workers, block_memory_bytes=per_block)
        if not finished:
            return False
        # every block batches the same slices whatever runs beside it: threads, Dask and a resume give
        # bit-identical outputs (oneDNN's results can depend on the batch size)
        rest = dataclasses.replace(job, torch_threads=self.torch_threads or max(1, cores // workers))
        return self._run(rest, blocks[1:], workers, on_done, should_stop)

    def _run(self, job, blocks, workers: int, on_done, should_stop) -> bool:
        task = functools.partial(run_block, job, predictor=self.predictor, raw=self.raw)
        return run_threaded(task, blocks, workers=workers, in_flight=workers + 1, on_done=on_done,
                            should_stop=should_stop)


def gpu_worker_specs(gpus: int) -> dict:
    """``distributed.SpecCluster`` worker specs: one single-threaded worker per GPU, each seeing only its own
    (``CUDA_VISIBLE_DEVICES``), so ``cuda`` in a worker is its GPU."""
    from distributed import Nanny

    return {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
            for i in range(int(gpus))}


def gpu_cluster(gpus: int):
    """A local Dask cluster with one worker per GPU (:func:`gpu_worker_specs`)."""
    from distributed import Scheduler, SpecCluster

    return SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                       workers=gpu_worker_specs(gpus))


def connect(scheduler, timeout: float = 5.0):
    """``(client, owned)``: a ``distributed.Client`` for an address (``tcp://host:port``) or ``"processes"``
    (a new local cluster: one worker per GPU when there are GPUs, else two single-threaded CPU workers); a
    Client is returned as it is (not owned).

    Raises:
        WorkbenchError: the address does not answer within ``timeout`` seconds, or has no workers.
    """
    from distributed import Client

    if not isinstance(scheduler, str):
        return scheduler, False  # already a Client
    if scheduler == "processes":
        gpus = gpu_count()
        if gpus:
            return Client(gpu_cluster(gpus)), True
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), True
    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise WorkbenchError(f"Dask scheduler does not answer within {timeout:g} s ({type(err).__name__})",
                             scheduler) from None
    except ValueError as err:
        raise WorkbenchError(f"not a Dask scheduler address ({err})", scheduler) from None
    if not client.nthreads():
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            client.close()
            raise WorkbenchError(f"Dask scheduler has no workers (waited {timeout:g} s)", scheduler) from None
    return client, True


class DaskExecutor(_Closing):
    """Blocks as tasks of a dask.distributed cluster (workers load the predictor and raw volume from the job).

    Args:
        scheduler: ``"processes"``, ``"tcp://host:port"`` or a ``distributed.Client``; connects at once.
        timeout: seconds to wait for an address to answer.

    Raises:
        WorkbenchError: the scheduler does not answer or has no workers.
    """

    remote = True

    def __init__(self, scheduler, timeout: float = 5.0):
        self.scheduler = scheduler
        self.client, self.owned = connect(scheduler, timeout=timeout)
        self.info: dict = {}

    def prepare(self, store: Path) -> None:
        """Every worker must see the output folder (a shared disk)."""
        seen = self.client.run(os.path.isdir, str(store))
        blind = [w for w, ok in seen.items() if not ok]
        if blind:
            raise WorkbenchError(f"Dask workers {', '.join(blind)} cannot see the output folder (it must be on a "
                                 "disk shared with the workers)", store)

    def run(self, job: BlockJob, blocks: Sequence[PlannedBlock], on_done: OnDone,
            should_stop: Callable[[], bool] | None) -> bool:
        from distributed import as_completed

        client = self.client
        nthreads = max(1, sum(client.nthreads().values()))
        token = uuid.uuid4().hex[:12]
        arrived = as_completed([], loop=client.loop)

        def submit(block: PlannedBlock):
            key = f"workbench-predict-{token}-" + "_".join(map(str, block.index))
            # retries: a task whose worker died is rescheduled by dask anyway; these cover transient errors
            fut = client.submit(run_block, job, block, key=key, pure=False, retries=2)
            arrived.add(fut)
            return fut

        def wait_first(pending: set) -> tuple[set, set]:
            fut = next(arrived)
            return {fut}, pending - {fut}

        return run_bounded(submit, blocks, 2 * nthreads + 2, on_done, should_stop, wait_first)

    def close(self) -> None:
        if self.owned and self.client is not None:
            cluster = getattr(self.client, "cluster", None)
            self.client.close()
            if cluster is not None and self.scheduler == "processes":
                cluster.close()
            self.client = None


def make_executor(options: PredictOptions, predictor: Predictor, raw: Volume) -> ThreadExecutor | DaskExecutor:
    """The executor ``options.scheduler`` asks for (a Dask one connects now, before anything is written).

    Raises:
        WorkbenchError: a scheduler that does not answer or has no workers.
    """
    if options.local:
        return ThreadExecutor(predictor, raw, options.workers, options.torch_threads, options.compile)
    return DaskExecutor(options.scheduler, timeout=options.scheduler_timeout)
