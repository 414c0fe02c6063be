"""Blockwise prediction of a whole volume into a resumable OME-Zarr, locally or on a Dask cluster."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.inference import output as store_mod
from workbench.inference.tiling import effective_divisor, effective_halo, predict_region

#: Default largest tile given to the predictor at once (voxels): bounds the network's activations.
DEFAULT_TILE_VOXELS = 4 * 1024 * 1024


@dataclass
class PredictionResult:
    """What :func:`predict_volume` did."""

    path: Path
    complete: bool
    blocks_total: int
    blocks_done: int
    blocks_computed: int
    seconds: float
    voxels_per_second: float
    info: dict = field(default_factory=dict)


#: Largest yx tile edge given to a 2D predictor at once: a 2048^2 block plus its halo in one call.
TILE_2D_MAX = 2304
#: Largest edge of an output chunk (what viewers fetch); blocks are whole multiples of it.
CHUNK_MAX = 1024


def default_block_shape(predictor, shape: Sequence[int]) -> tuple[int, int, int]:
    """Block core: (8, 2048, 2048) for 2D predictors, (64, 256, 256) for 3D ones (clipped to ``shape``).

    2D blocks are large in yx because every block pays its halo: at 2048^2 with a 48-voxel halo the
    extra work is 9.6 % (1024^2 blocks: 19.6 %); the activations of one 2144^2 slice need ~2.5 GB.
    """
    base = (8, 2048, 2048) if int(getattr(predictor, "spatial_dims", 3)) == 2 else (64, 256, 256)
    return tuple(min(b, int(s)) for b, s in zip(base, shape))  # type: ignore[return-value]


def chunk_shape(block: Sequence[int]) -> tuple[int, ...]:
    """Output chunks for a block shape: the block itself, with yx edges above ``CHUNK_MAX`` cut in
    ``CHUNK_MAX`` pieces when they divide evenly (so a block always writes whole chunks of its own)."""
    out = [int(block[0])]
    for b in block[1:]:
        b = int(b)
        out.append(CHUNK_MAX if b > CHUNK_MAX and b % CHUNK_MAX == 0 else b)
    return tuple(out)


def _split_evenly(size: int, cap: int, halo: int) -> int:
    """The tile edge that covers ``size`` with the fewest tiles of at most ``cap`` overlapping by 2 halo."""
    if size <= cap:
        return size
    step = max(1, cap - 2 * halo)
    n = -(-(size - 2 * halo) // step)
    return -(-(size + (n - 1) * 2 * halo) // n)


def default_tile_shape(predictor, read_shape: Sequence[int]) -> tuple[int, int, int]:
    """The predictor's own ``tile_shape`` if it has one; else for 2D predictors whole slices up to
    ``TILE_2D_MAX``^2 (larger ones split into equal tiles), for 3D ones the read region capped at ~4 M voxels."""
    own = getattr(predictor, "tile_shape", None)
    if own is not None:
        own = tuple(int(t) for t in own)
        return (1, *own) if len(own) == 2 else own  # type: ignore[return-value]
    z, y, x = (int(s) for s in read_shape)
    if int(getattr(predictor, "spatial_dims", 3)) == 2:
        halo = effective_halo(predictor)
        y, x = _split_evenly(y, TILE_2D_MAX, halo[1]), _split_evenly(x, TILE_2D_MAX, halo[2])
        z = max(1, min(z, DEFAULT_TILE_VOXELS // (y * x)))
        return (z, y, x)
    while z * y * x > DEFAULT_TILE_VOXELS:
        # halve the largest axis until the tile fits
        if z >= y and z >= x:
            z = (z + 1) // 2
        elif y >= x:
            y = (y + 1) // 2
        else:
            x = (x + 1) // 2
    return (z, y, x)


def predict_block(predictor, raw, core: Box, tile_shape=None, tta: bool = False,
                  fixed_shape: Sequence[int] | None = None) -> np.ndarray:
    """Predict one block: read ``core`` grown by the halo (clipped to the volume), return the core only.

    Args:
        fixed_shape: the nominal block shape; when given, reads clipped at the volume border are
            mirror-padded to ``fixed_shape + 2 * halo`` so that the predictor always sees one input shape
            (what compiled models want; results near the volume border then use mirrored context).

    Returns:
        float32 (out_channels, *core.shape).
    """
    halo = effective_halo(predictor)
    read = core.grow(halo).intersect(Box.from_shape(raw.shape))
    if fixed_shape is None:  # start on the down-sampling grid of the whole volume (the same pooling windows)
        start = tuple(a // d * d for a, d in zip(read.start, effective_divisor(predictor)))
        read = Box(start, tuple(b - a for a, b in zip(start, read.stop)))
    data = np.asarray(raw[read.slices])
    if fixed_shape is not None:
        nominal = Box(tuple(o - h for o, h in zip(core.offset, halo)),
                      tuple(int(b) + 2 * h for b, h in zip(fixed_shape, halo)))
        pad = [(a - b, c - d) for a, b, c, d in zip(read.start, nominal.start, nominal.stop, read.stop)]
        if any(p != (0, 0) for p in pad):
            data = np.pad(data, pad, mode="reflect" if min(data.shape) > 1 else "edge")
        read = nominal
    tile = tile_shape or default_tile_shape(predictor, read.shape)
    probs = predict_region(predictor, data, tile, tta=tta)
    return probs[(slice(None), *core.relative_to(read))]


def compile_predictor(predictor) -> bool:
    """Replace a torch predictor's ``model`` by ``torch.compile(model)`` (once); True if it was compiled."""
    import torch

    model = getattr(predictor, "model", None)
    if not isinstance(model, torch.nn.Module) or getattr(predictor, "_workbench_compiled", False):
        return bool(getattr(predictor, "_workbench_compiled", False))
    predictor.model = torch.compile(model, dynamic=False)
    predictor._workbench_compiled = True
    return True


# ----------------------------------------------------------------------------------------------------
# What a worker needs to run a block, picklable. Predictors and raw volumes are opened once per process.

_CACHE: dict[str, object] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class BlockJob:
    """Everything one block task needs, small and picklable."""

    predictor_key: str
    predictor_run_dir: str | None
    predictor_bytes: bytes | None
    raw_key: str
    raw_source: str | None
    raw_bytes: bytes | None
    store: str
    dtype: str
    tta: bool
    tile_shape: tuple[int, int, int] | None
    torch_threads: int | None
    block_shape: tuple[int, int, int] | None = None
    compile: bool = False


def _cached(key: str, make: Callable[[], object]):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def _load_predictor(job: BlockJob):
    def make():
        if job.predictor_run_dir is not None:
            from workbench.inference.runs import load_run

            predictor = load_run(job.predictor_run_dir, device="cpu")
        else:
            import cloudpickle

            predictor = cloudpickle.loads(job.predictor_bytes)
        if job.compile:
            compile_predictor(predictor)
        return predictor

    return _cached("predictor:" + job.predictor_key, make)


def _load_raw(job: BlockJob):
    def make():
        if job.raw_source is not None:
            from workbench.io import open_volume

            return open_volume(job.raw_source)
        import cloudpickle

        return cloudpickle.loads(job.raw_bytes)

    return _cached("raw:" + job.raw_key, make)


def run_block(job: BlockJob, index: tuple[int, ...], core: Box, predictor=None, raw=None) -> tuple[int, ...]:
    """Compute and write one block unless its done-marker exists (a worker task). Returns ``index``.

    ``predictor`` and ``raw`` are given directly by the local scheduler; workers load them from ``job``.
    """
    if store_mod.marker_path(job.store, index).exists():
        return index
    if job.torch_threads:
        import torch

        if torch.get_num_threads() != job.torch_threads:
            torch.set_num_threads(job.torch_threads)
    predictor = predictor if predictor is not None else _load_predictor(job)
    raw = raw if raw is not None else _load_raw(job)
    probs = predict_block(predictor, raw, core, tile_shape=job.tile_shape, tta=job.tta,
                          fixed_shape=job.block_shape if job.compile else None)
    store_mod.write_block(job.store, index, core.slices, probs, job.dtype)
    return index


def _make_job(predictor, raw, store: Path, dtype: str, tta: bool, tile_shape, torch_threads,
              for_workers: bool, block_shape=None, compile: bool = False) -> BlockJob:
    """The picklable job; with ``for_workers`` the predictor and raw are made loadable elsewhere."""
    run_dir = getattr(predictor, "run_dir", None)
    pred_bytes = raw_bytes = raw_source = None
    key = raw_key = "local"
    if for_workers:
        import cloudpickle

        if run_dir is not None:
            key = f"run:{Path(run_dir).resolve()}"
        else:
            pred_bytes = cloudpickle.dumps(predictor)
            key = hashlib.sha1(pred_bytes).hexdigest()
        if raw.source and not isinstance(raw.data, np.ndarray) and _has_open_volume():
            raw_source = str(raw.source)
            raw_key = "src:" + raw_source
        else:
            try:
                raw_bytes = cloudpickle.dumps(raw)
            except Exception as err:
                raise WorkbenchError(f"raw data cannot be sent to Dask workers ({type(err).__name__}); "
                                     "convert it to zarr first", raw.source or None) from None
            raw_key = hashlib.sha1(raw_bytes).hexdigest()
    return BlockJob(
        predictor_key=key,
        predictor_run_dir=None if run_dir is None else str(run_dir),
        predictor_bytes=pred_bytes,
        raw_key=raw_key,
        raw_source=raw_source,
        raw_bytes=raw_bytes,
        store=str(store),
        dtype=dtype,
        tta=tta,
        tile_shape=None if tile_shape is None else tuple(int(t) for t in tile_shape),
        torch_threads=torch_threads,
        block_shape=None if block_shape is None else tuple(int(b) for b in block_shape),
        compile=compile,
    )


def _has_open_volume() -> bool:
    try:
        from workbench.io import open_volume  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Feeds a tqdm-like object (``update``/``total``/``set_postfix``) or a ``callable(done, total, stats)``."""

    def __init__(self, progress, total: int, already: int, block_voxels: int):
        self.progress = progress
        self.total = total
        self.done = already
        self.computed = 0
        self.block_voxels = block_voxels
        self.t0 = time.perf_counter()
        if progress is not None and hasattr(progress, "update"):
            try:
                progress.total = total
                if already:
                    progress.update(already)
            except Exception:
                pass

    def stats(self) -> dict:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        vps = self.computed * self.block_voxels / dt
        rate = self.computed / dt
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        return {"blocks_done": self.done, "blocks_total": self.total, "voxels_per_s": vps, "eta_s": eta}

    def step(self):
        self.done += 1
        self.computed += 1
        if self.progress is None:
            return
        s = self.stats()
        if hasattr(self.progress, "update"):
            self.progress.update(1)
            if hasattr(self.progress, "set_postfix"):
                self.progress.set_postfix(vox_s=f"{s['voxels_per_s']:.3g}", eta=f"{s['eta_s']:.0f}s")
        else:
            self.progress(self.done, self.total, s)


# ----------------------------------------------------------------------------------------------------
# Schedulers


def connect(scheduler, timeout: float = 5.0):
    """A ``distributed.Client`` for an address (``tcp://host:port``) or ``"processes"`` (a LocalCluster).

    Raises:
        WorkbenchError: the address does not answer within ``timeout`` seconds.
    """
    from distributed import Client

    if not isinstance(scheduler, str):
        return scheduler, False  # already a Client
    if scheduler == "processes":
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


def _check_workers_see(client, path: Path) -> None:
    """Every worker must see the output folder (a shared disk)."""
    seen = client.run(os.path.isdir, str(path))
    blind = [w for w, ok in seen.items() if not ok]
    if blind:
        raise WorkbenchError(f"Dask workers {', '.join(blind)} cannot see the output folder (it must be on a "
                             "disk shared with the workers)", path)


def auto_workers(block_bytes: int, cores: int | None = None, available: int | None = None) -> int:
    """Blocks in flight for a CPU run: one per core (each on its own torch thread), at most as many as fit
    in three quarters of the available memory at ``block_bytes`` each.

    One torch thread per block keeps both cores of a laptop busy through the serial parts of a forward
    pass and through each block's reading and writing; two threads on one block leave them idle there.
    """
    import psutil

    cores = int(cores or os.cpu_count() or 1)
    available = int(psutil.virtual_memory().available if available is None else available)
    fit = int(0.75 * available // max(int(block_bytes), 1))
    return max(1, min(cores, 1 + fit))


def _peak_rss_increase(fn: Callable[[], object], interval: float = 0.02) -> int:
    """Run ``fn()`` while sampling this process's resident memory; returns the peak increase in bytes."""
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
        fn()
    finally:
        stop.set()
        sampler.join()
    return max(0, max(peak, proc.memory_info().rss) - base)


def _on_gpu(predictor) -> bool:
    device = getattr(predictor, "device", None)
    return getattr(device, "type", str(device or "cpu")) not in ("cpu", "None")


def _run_local(job, todo, workers, tracker, should_stop, predictor, raw) -> bool:
    stopped = False
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = set()
        it = iter(todo)
        while True:
            while len(pending) < workers + 1 and not stopped:
                nxt = next(it, None)
                if nxt is None:
                    break
                pending.add(pool.submit(run_block, job, *nxt, predictor, raw))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()
                tracker.step()
            if should_stop is not None and should_stop():
                stopped = True  # blocks in flight still finish (and count)
    return not stopped


def _run_distributed(client, job, todo, tracker, should_stop) -> bool:
    from distributed import as_completed

    nthreads = max(1, sum(client.nthreads().values()))
    window = 2 * nthreads + 2
    it = iter(todo)
    stopped = False
    token = uuid.uuid4().hex[:12]

    def submit(item):
        index, core = item
        key = f"workbench-predict-{token}-" + "_".join(map(str, index))
        # retries: a task whose worker died is rescheduled by dask anyway; these cover transient errors
        return client.submit(run_block, job, index, core, key=key, pure=False, retries=2)

    first = [submit(x) for x in (next(it, None) for _ in range(window)) if x is not None]
    if not first:
        return True
    ac = as_completed(first, loop=client.loop)
    for fut in ac:
        fut.result()
        fut.release()
        tracker.step()
        if should_stop is not None and should_stop():
            stopped = True
        if not stopped:
            nxt = next(it, None)
            if nxt is not None:
                ac.add(submit(nxt))
    return not stopped


# ----------------------------------------------------------------------------------------------------


def predict_volume(
    predictor,
    raw,
    out: str | Path,
    block_shape: Sequence[int] | None = None,
    tta: bool = False,
    scheduler=None,
    progress=None,
    overwrite: bool = False,
    resume: bool = False,
    dtype: str = "uint8",
    tile_shape: Sequence[int] | None = None,
    workers: int | str = "auto",
    torch_threads: int | None = None,
    compile: bool = False,
    should_stop: Callable[[], bool] | None = None,
    scheduler_timeout: float = 5.0,
) -> PredictionResult:
    """Predict ``raw`` block by block into an OME-Zarr (c, z, y, x) at ``out``.

    Each block (one or more whole output chunks) is read with the predictor's halo, predicted (tiled and blended
    inside when large, see :mod:`workbench.inference.tiling`) and its core written; a done-marker then
    records it. An interrupted run continues with ``resume=True``: finished blocks are skipped. The
    output appears at ``out`` (marked complete) only when every block is done.

    Args:
        predictor: a Predictor (see docs/internals.md). One with a ``run_dir`` attribute is reloaded
            on cluster workers with ``workbench.training.load_run`` (once per worker); any other is pickled.
        raw: a :class:`~workbench.io.volume.Volume` (or any 3D array-like).
        out: the output path (``.zarr``); while running, ``out + ".partial"``.
        block_shape: block core (z, y, x), a whole number of output chunks (:func:`chunk_shape`);
            default :func:`default_block_shape`.
        tta: combine the 8 yx rotations/flips (class probabilities by their mean logits; for class/boundary
            maps, not direction-bound affinities).
        scheduler: ``None``/``"threads"`` (local threads), ``"processes"`` (a local Dask cluster),
            ``"tcp://host:port"`` (an existing dask.distributed scheduler; workers must see ``out`` and
            the raw data on a shared disk) or a ``distributed.Client``.
        progress: tqdm-like object or ``callable(done, total, stats)``; stats has voxels_per_s, eta_s.
        overwrite: replace an existing output (finished or interrupted).
        resume: continue an interrupted prediction at ``out``.
        dtype: ``"uint8"`` (round(255 p), default) or ``"float16"``.
        tile_shape: largest region given to the predictor at once (default: whole read region, ≤ ~4 M
            voxels; for 2D predictors its z is the slice batch).
        workers: concurrent blocks with the local thread scheduler (each then gets cores / workers torch
            threads unless ``torch_threads`` is given): I/O of one block overlaps the compute of another.
            ``"auto"`` (default): one on a GPU; on a CPU the first block runs alone while its memory is
            measured, then one block per core as far as the available memory allows (:func:`auto_workers`);
            one with ``compile``.
        torch_threads: set torch's intra-op threads in every task.
        compile: ``torch.compile`` a torch predictor's ``model`` (local and on every worker; ~20 s cold
            compile, faster afterwards) and mirror-pad border blocks so the model sees one input shape.
        should_stop: polled after each block; True stops early, leaving a resumable partial output.
        scheduler_timeout: seconds to wait for a scheduler address to answer.

    Returns:
        :class:`PredictionResult`.

    Raises:
        WorkbenchError: output exists (without overwrite), an interrupted one exists (without resume or
            overwrite) or differs from this run, scheduler unreachable or without workers.
    """
    from workbench.io.volume import Volume

    if not isinstance(raw, Volume):
        raw = Volume(raw)
    if tta and getattr(predictor, "target", None) == "affinities":
        raise WorkbenchError("test-time augmentation would flip affinity directions; run affinity models without --tta")
    if dtype not in store_mod.STORAGE_DTYPES:
        raise WorkbenchError(f"storage dtype must be one of {store_mod.STORAGE_DTYPES}, got {dtype!r}")
    out = Path(out)
    part = store_mod.partial_path(out)
    shape = raw.shape
    block = tuple(int(b) for b in (block_shape or default_block_shape(predictor, shape)))
    if len(block) != 3 or any(b <= 0 for b in block):
        raise WorkbenchError(f"block shape must be three positive numbers (z, y, x), got {block_shape}")
    block = tuple(min(b, s) for b, s in zip(block, shape))
    channel_names = list(getattr(predictor, "channel_names", None) or
                         [f"channel {i}" for i in range(predictor.out_channels)])

    # Connect first: an unreachable scheduler must fail before anything is written.
    client, own_client = (None, False)
    if scheduler not in (None, "threads"):
        client, own_client = connect(scheduler, timeout=scheduler_timeout)

    try:
        info = {
            "raw": str(getattr(raw, "source", "") or ""),
            "model": str(getattr(predictor, "run_dir", "") or ""),
            "block_shape": list(block),
            "halo": list(effective_halo(predictor)),
            "tta": bool(tta),
            "target": str(getattr(predictor, "target", "") or ""),
        }
        if out.exists() and not overwrite:
            if resume and not part.exists() and store_mod.read_info(out).get("complete"):
                n = len(list(Box.from_shape(shape).blocks(block)))
                return PredictionResult(out, True, n, n, 0, 0.0, 0.0, info)  # nothing left to do
            raise WorkbenchError("output exists; pass --overwrite to replace it", out)
        if part.exists():
            if overwrite:
                shutil.rmtree(part)
            elif not resume:
                raise WorkbenchError(
                    "an interrupted prediction exists here; pass --resume to continue or --overwrite to restart",
                    out)
            else:
                old = store_mod.read_info(part)
                arr_shape = _stored_shape(part)
                if old.get("model") != info["model"] or old.get("tta") != info["tta"]:
                    raise WorkbenchError(
                        f"cannot resume: the interrupted prediction used model {old.get('model')!r} "
                        f"(tta {old.get('tta')}), this one {info['model']!r} (tta {info['tta']})", out)
                if arr_shape != (len(channel_names), *shape) or old.get("block_shape") != list(block):
                    raise WorkbenchError(
                        f"cannot resume: the interrupted prediction has shape {arr_shape} and blocks "
                        f"{old.get('block_shape')}, this one {(len(channel_names), *shape)} and {list(block)}",
                        out)
        if not part.exists():
            store_mod.create_store(part, (len(channel_names), *shape), (1, *chunk_shape(block)), dtype,
                                   raw.voxel_size, channel_names, info)

        if client is not None:
            _check_workers_see(client, part)
        full = Box.from_shape(shape)
        blocks = list(full.blocks(block))
        done = store_mod.done_blocks(part)
        todo = [(i, b) for i, b in blocks if i not in done]
        if workers != "auto" and (not isinstance(workers, int) or workers < 1):
            raise WorkbenchError(f"workers must be a positive number or 'auto', got {workers!r}")
        cores = os.cpu_count() or 1
        auto = workers == "auto" and client is None
        if auto:
            workers = 1 if (_on_gpu(predictor) or compile or cores < 2 or len(todo) < 2) else None
        if client is None and workers and workers > 1 and torch_threads is None:
            torch_threads = max(1, cores // workers)  # share the cores, never oversubscribe
        job = _make_job(predictor, raw, part, dtype, tta, tile_shape, torch_threads, client is not None,
                        block, compile)
        if compile and client is None:
            compile_predictor(predictor)
        tracker = _Progress(progress, len(blocks), len(blocks) - len(todo), int(np.prod(block)))
        t0 = time.perf_counter()
        if client is not None:
            _run_distributed(client, job, todo, tracker, should_stop)
        elif workers is None:
            # measure one block alone, then fill the cores as far as memory allows
            first = dataclasses.replace(job, torch_threads=torch_threads or cores)
            per_block = _peak_rss_increase(
                lambda: _run_local(first, todo[:1], 1, tracker, should_stop, predictor, raw))
            workers = auto_workers(per_block, cores)
            info["block_memory_bytes"] = per_block
            if not (should_stop is not None and should_stop()):
                rest = dataclasses.replace(job, torch_threads=torch_threads or max(1, cores // workers))
                _run_local(rest, todo[1:], workers, tracker, should_stop, predictor, raw)
        else:
            _run_local(job, todo, workers, tracker, should_stop, predictor, raw)
        if client is None:
            info["workers"] = workers
        seconds = time.perf_counter() - t0
        n_done = len(store_mod.done_blocks(part))
        complete = n_done == len(blocks)  # also when a stop request came after the last block
        if complete:
            store_mod.finish_store(part, out)
        voxels = sum(b.size for _, b in todo[: tracker.computed])
        return PredictionResult(
            path=out if complete else part,
            complete=complete,
            blocks_total=len(blocks),
            blocks_done=n_done if not complete else len(blocks),
            blocks_computed=tracker.computed,
            seconds=seconds,
            voxels_per_second=voxels / seconds if seconds > 0 else 0.0,
            info=info,
        )
    finally:
        if own_client and client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler == "processes":
                cluster.close()


def _stored_shape(path: Path) -> tuple[int, ...]:
    import zarr

    return tuple(zarr.open_array(str(path / "0"), mode="r").shape)


def predict_array(predictor, data: np.ndarray, tta: bool = False, tile_shape=None) -> np.ndarray:
    """Predict a small in-memory volume in one go (no blocks, no files): float32 (C, z, y, x)."""
    return predict_region(predictor, np.asarray(data), tile_shape, tta=tta)
