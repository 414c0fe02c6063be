"""Blockwise prediction of a whole volume into a resumable OME-Zarr, locally or on a Dask cluster.

:func:`predict_volume` plans the blocks (:mod:`~workbench.inference.planner`), prepares the output
(:mod:`~workbench.inference.writer`) and runs the blocks left (:mod:`~workbench.inference.executors`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import locks
from workbench.errors import WorkbenchError
from workbench.inference.executors import make_executor
from workbench.inference.jobs import make_job
from workbench.inference.options import PredictOptions
from workbench.inference.output import StoreLayout
from workbench.inference.planner import BlockPlan, chunk_shape, plan_blocks
from workbench.inference.writer import PredictionWriter
from workbench.io.volume import Volume
from workbench.models.predictor import Predictor, as_predictor
from workbench.progress import Progress, as_progress, eta_seconds


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


def affinity_offsets(predictor: Predictor) -> list[list[int]] | None:
    """The affinity offsets an affinity model was trained with (one per output channel), else None."""
    if str(getattr(predictor, "target", "") or "") != "affinities":
        return None
    from workbench.training.targets import offsets_of_channels

    return offsets_of_channels(predictor.channel_names)


def _run_info(predictor: Predictor, raw: Volume, plan: BlockPlan, options: PredictOptions) -> dict:
    """The ``workbench`` attributes of the output; a resumed run must match ``model`` and ``tta``."""
    return {
        "raw": str(raw.source or ""),
        "model": str(predictor.run_dir or ""),
        "block_shape": list(plan.block_shape),
        "halo": list(plan.halo),
        "tta": options.tta,
        # the uncertainty measure written to OUT.zarr/uncertainty (absent: none)
        **({"uncertainty": str(options.uncertainty)} if options.uncertainty else {}),
        "target": str(predictor.target or ""),
        # the forward passes' precision ("fp32", "bf16"; the forest: always fp32); a predictor without one: fp32
        "precision": str(predictor.precision),
        # affinities: the (dz, dy, dx) of each channel, as trained (what the mutex watershed reads)
        **({"offsets": offsets} if (offsets := affinity_offsets(predictor)) else {}),
    }


def _layout(predictor: Predictor, raw: Volume, plan: BlockPlan, options: PredictOptions) -> StoreLayout:
    names = list(predictor.channel_names)
    return StoreLayout(shape=(len(names), *plan.shape), chunks=(1, *chunk_shape(plan.block_shape)),
                       dtype=options.dtype.value, voxel_size=tuple(raw.voxel_size), channel_names=names,
                       info=_run_info(predictor, raw, plan, options),
                       uncertainty=str(options.uncertainty) if options.uncertainty else None)


def _postfix(prog: Progress) -> dict:
    """Beside a tqdm bar, after one more block: voxels per second and the time left."""
    dt = max(prog.elapsed, 1e-9)
    computed = prog.done + 1 - prog.initial
    eta = eta_seconds(computed, (prog.total or 0) - prog.initial, dt)
    return {"vox_s": f"{computed * prog.unit_size / dt:.3g}", "eta": f"{eta:.0f}s"}


def predict_volume(
    predictor: Predictor,
    raw: Volume | Any,
    out: str | Path,
    options: PredictOptions | None = None,
    *,
    progress: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionResult:
    """Predict ``raw`` block by block into an OME-Zarr (c, z, y, x) at ``out``.

    Each block (whole output chunks) is read with the predictor's halo, predicted (tiled and blended inside
    when large, see :mod:`workbench.inference.tiling`) and its core written; a done-marker then records it.
    An interrupted run continues with ``resume``: finished blocks are skipped. The output appears at
    ``out`` (marked complete) only when every block is done; until then it is ``out + ".partial"``.

    Args:
        predictor: a :class:`~workbench.models.predictor.Predictor` (or a minimal one). One with a
            ``run_dir`` is reloaded on Dask workers with ``load_run`` (once per worker); any other is pickled.
        raw: a :class:`~workbench.io.volume.Volume` (or any 3D array-like).
        out: the output path (``.zarr``).
        options: :class:`~workbench.inference.options.PredictOptions` (default: all defaults).
        progress: tqdm-like object or ``callable(done, total[, stats])`` (:mod:`workbench.progress`).
        should_stop: polled before each block; True stops at a block boundary, leaving a resumable output.

    Returns:
        :class:`PredictionResult`.

    Raises:
        WorkbenchError: TTA with affinities, output exists (without overwrite), an interrupted one exists
            (without resume or overwrite) or differs from this run, scheduler unreachable or without workers.
    """
    options = options or PredictOptions()
    predictor = as_predictor(predictor)
    raw = raw if isinstance(raw, Volume) else Volume(raw)
    if options.tta and predictor.target == "affinities":
        raise WorkbenchError("test-time augmentation would flip affinity directions; run affinity models without --tta")
    plan = plan_blocks(predictor, raw.shape, options.block_shape, fixed=options.compile)
    # connect first (fails before anything is written), then lock: one prediction writes an output at a time
    with make_executor(options, predictor, raw) as executor, locks.exclusive(out, "this prediction"):
        layout = _layout(predictor, raw, plan, options)
        writer = PredictionWriter.open(out, layout, overwrite=options.overwrite, resume=options.resume)
        if writer.complete:  # resuming a finished output: nothing left to do
            return PredictionResult(writer.out, True, plan.n_blocks, plan.n_blocks, 0, 0.0, 0.0, layout.info)
        executor.prepare(writer.partial)
        todo = plan.todo(writer.done_blocks())
        job = make_job(predictor, raw, writer.store, options, remote=executor.remote)
        prog = as_progress(progress, total=plan.n_blocks, initial=plan.n_blocks - len(todo),
                           unit_size=plan.block_voxels)
        sizes = {b.index: b.core.size for b in todo}
        computed: list[int] = []

        def on_done(index: tuple[int, ...]) -> None:
            computed.append(sizes[index])
            prog.advance(1, _postfix(prog))

        t0 = time.perf_counter()
        executor.run(job, todo, on_done, should_stop)
        seconds = time.perf_counter() - t0
        info = {**layout.info, **executor.info}
        n_done = len(writer.done_blocks())
        complete = n_done == plan.n_blocks  # also when a stop request came after the last block
        path = writer.finish() if complete else writer.partial
    return PredictionResult(
        path=path,
        complete=complete,
        blocks_total=plan.n_blocks,
        blocks_done=n_done,
        blocks_computed=len(computed),
        seconds=seconds,
        voxels_per_second=sum(computed) / seconds if seconds > 0 else 0.0,
        info=info,
    )
