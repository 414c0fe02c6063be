"""The task of one block, picklable: what a thread or a Dask worker needs to compute and write it.

Workers open the predictor (reloaded from its run dir, or unpickled) and the raw volume once per process.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.inference.compute import compile_predictor, predict_planned, predict_planned_with_uncertainty
from workbench.inference.options import PredictOptions
from workbench.inference.planner import PlannedBlock
from workbench.inference.writer import BlockStore
from workbench.io import open_volume
from workbench.io.volume import Volume
from workbench.models.predictor import Predictor
from workbench.training.runs import load_run

_CACHE: dict[str, object] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class BlockJob:
    """Everything a block task needs besides the block, small and picklable."""

    predictor_key: str
    predictor_run_dir: str | None
    predictor_bytes: bytes | None
    raw_key: str
    raw_source: str | None
    raw_bytes: bytes | None
    store: BlockStore
    tta: bool
    tile_shape: tuple[int, int, int] | None
    torch_threads: int | None
    compile: bool = False
    #: the predictor's resolved precision: workers reload its run with it
    precision: str = "fp32"
    #: where workers run the predictor: "cpu", or "cuda" (each worker's own GPU, see ``executors.gpu_cluster``)
    device: str = "cpu"
    #: the uncertainty measure written beside the probabilities, or None
    uncertainty: str | None = None


def _cached(key: str, make: Callable[[], object]):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def _load_predictor(job: BlockJob):
    def make():
        if job.predictor_run_dir is not None:
            predictor = load_run(job.predictor_run_dir, device=job.device, precision=job.precision)
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
            return open_volume(job.raw_source)
        import cloudpickle

        return cloudpickle.loads(job.raw_bytes)

    return _cached("raw:" + job.raw_key, make)


def run_block(job: BlockJob, block: PlannedBlock, predictor: Predictor | None = None,
              raw: Volume | None = None) -> tuple[int, ...]:
    """Compute and write one block unless its done-marker exists (a task). Returns ``block.index``.

    ``predictor`` and ``raw`` are given directly by local threads; workers load them from ``job``.
    """
    if job.store.is_done(block.index):
        return block.index
    if job.torch_threads:
        import torch

        if torch.get_num_threads() != job.torch_threads:
            torch.set_num_threads(job.torch_threads)
    predictor = predictor if predictor is not None else _load_predictor(job)
    raw = raw if raw is not None else _load_raw(job)
    if job.uncertainty:
        probs, unc = predict_planned_with_uncertainty(predictor, raw, block, job.uncertainty,
                                                      tile_shape=job.tile_shape, tta=job.tta)
        job.store.write(block.index, block.core, probs, unc)
        return block.index
    probs = predict_planned(predictor, raw, block, tile_shape=job.tile_shape, tta=job.tta)
    job.store.write(block.index, block.core, probs)
    return block.index


def _remote_predictor(predictor: Predictor) -> tuple[str, bytes | None]:
    """(cache key, pickled bytes or None when workers reload it from its run dir)."""
    if predictor.run_dir is not None:
        return f"run:{Path(predictor.run_dir).resolve()}", None
    import cloudpickle

    data = cloudpickle.dumps(predictor)
    return hashlib.sha1(data).hexdigest(), data


def _remote_raw(raw: Volume) -> tuple[str, str | None, bytes | None]:
    """(cache key, source path or None, pickled bytes or None): workers reopen files, unpickle the rest."""
    if raw.source and not isinstance(raw.data, np.ndarray):
        return "src:" + str(raw.source), str(raw.source), None
    import cloudpickle

    try:
        data = cloudpickle.dumps(raw)
    except Exception as err:
        raise WorkbenchError(f"raw data cannot be sent to Dask workers ({type(err).__name__}); "
                             "convert it to zarr first", raw.source or None) from None
    return hashlib.sha1(data).hexdigest(), None, data


def make_job(predictor: Predictor, raw: Volume, store: BlockStore, options: PredictOptions,
             remote: bool = False) -> BlockJob:
    """The picklable job of a run; with ``remote`` the predictor and raw are made loadable in other processes.

    Raises:
        WorkbenchError: ``remote`` and the raw data cannot be pickled.
    """
    key, pred_bytes = _remote_predictor(predictor) if remote else ("local", None)
    raw_key, raw_source, raw_bytes = _remote_raw(raw) if remote else ("local", None, None)
    return BlockJob(
        predictor_key=key,
        predictor_run_dir=None if predictor.run_dir is None else str(predictor.run_dir),
        predictor_bytes=pred_bytes,
        raw_key=raw_key,
        raw_source=raw_source,
        raw_bytes=raw_bytes,
        store=store,
        tta=options.tta,
        tile_shape=options.tile_shape,
        torch_threads=options.torch_threads,
        compile=options.compile,
        precision=str(predictor.precision),
        device="cuda" if remote and _device_type(predictor) == "cuda" else "cpu",
        uncertainty=str(options.uncertainty) if options.uncertainty else None,
    )


def _device_type(predictor: Predictor) -> str:
    device = predictor.device
    return str(getattr(device, "type", device or "cpu")).split(":")[0]
