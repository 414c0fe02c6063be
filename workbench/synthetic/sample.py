"""The built-in synthetic EM sample: in memory (:func:`make_sample`) or as OME-Zarr (:func:`generate_sample`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.synthetic.classes import SEMANTIC_CLASSES
from workbench.synthetic.render import render_block
from workbench.synthetic.scene import SampleConfig, build_scene

#: A shape a laptop generates in a few seconds.
DEFAULT_SHAPE = (64, 512, 512)
#: Blocks rendered at a time (z, y, x); each needs roughly 60 bytes of scratch per voxel.
DEFAULT_BLOCK = (32, 256, 256)
#: Largest volume :func:`make_sample` builds in memory (voxels).
MAX_IN_MEMORY = 512 * 1024 * 1024
WORKERS = 2


@dataclass
class SampleArrays:
    """A synthetic sample in memory.

    Attributes:
        raw: uint8 (z, y, x) image. instances: uint32 cell ids (0 on membranes and clefts).
        semantic: uint8 classes (see :data:`SEMANTIC_CLASSES`). voxel_size: (z, y, x) nm.
    """

    raw: np.ndarray
    instances: np.ndarray
    semantic: np.ndarray
    voxel_size: tuple[float, float, float]

    @property
    def boundaries(self) -> np.ndarray:
        """Boundary target (uint8, 1 on membranes and synaptic clefts)."""
        return ((self.semantic == 1) | (self.semantic == 4)).astype(np.uint8)


def check_shape(shape, where=None) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or min(out) < 1:
        raise WorkbenchError(f"shape must be three positive integers (z, y, x), got {shape}", where)
    return out


def _blocks(shape, block) -> Iterator[tuple[slice, slice, slice]]:
    for z in range(0, shape[0], block[0]):
        for y in range(0, shape[1], block[1]):
            for x in range(0, shape[2], block[2]):
                yield tuple(slice(o, min(o + b, n)) for o, b, n in zip((z, y, x), block, shape))


def _run(tasks, fn, on_done: Callable[[Any], None], should_stop, where, workers: int = WORKERS) -> None:
    """``fn`` over ``tasks`` on a thread pool (numpy and scipy release the GIL), at most 2 x workers pending."""
    pending: set[Future] = set()
    with ThreadPoolExecutor(workers) as pool:
        try:
            for task in tasks:
                if should_stop is not None and should_stop():
                    raise WorkbenchError("stopped before completion", where)
                while len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        on_done(fut.result())
                pending.add(pool.submit(fn, task))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_done(fut.result())
        finally:
            for fut in pending:
                fut.cancel()


class _Progress:
    """``progress``: None, a tqdm-like object (``update(n)``, ``total``) or ``callable(done, total)``."""

    def __init__(self, progress: Any, total: int):
        self.p, self.total, self.done = progress, int(total), 0
        if progress is not None and hasattr(progress, "update") and getattr(progress, "total", 1) in (None, 0):
            progress.total = self.total

    def __call__(self, n: int) -> None:
        self.done += int(n)
        if self.p is None:
            return
        if hasattr(self.p, "update"):
            self.p.update(int(n))
        else:
            self.p(self.done, self.total)


def make_sample(
    shape=(32, 256, 256),
    seed: int = 0,
    artifacts: bool = False,
    block_shape=None,
    config: SampleConfig | None = None,
) -> SampleArrays:
    """Generate a synthetic EM volume with ground truth in memory.

    Args:
        shape: (z, y, x) voxels. seed: the same seed and shape give bit-identical output.
        artifacts: add EM artifacts (missing sections, misaligned sections, contrast drift).
        block_shape: render in blocks of this shape (the result does not depend on it).
        config: physical parameters (:class:`SampleConfig`).

    Raises:
        WorkbenchError: bad shape, or too large for memory (use :func:`generate_sample`).
    """
    shape = check_shape(shape)
    if int(np.prod(shape, dtype=np.int64)) > MAX_IN_MEMORY:
        raise WorkbenchError(f"shape {shape} is too large to build in memory; write it with generate_sample")
    block = check_shape(block_shape or DEFAULT_BLOCK)
    scene = build_scene(shape, seed, artifacts, config)
    raw = np.empty(shape, np.uint8)
    inst = np.empty(shape, np.uint32)
    sem = np.empty(shape, np.uint8)

    def one(reg):
        r, i, s = render_block(scene, *(v for sl in reg for v in (sl.start, sl.stop)))
        raw[reg], inst[reg], sem[reg] = r, i, s

    _run(_blocks(shape, block), one, lambda _: None, None, None)
    return SampleArrays(raw, inst, sem, tuple(scene.config.voxel_size))


def _chunks_for(block, default=(16, 256, 256)) -> tuple[int, int, int]:
    """Storage chunks that tile ``block`` exactly (so threads never write the same chunk)."""
    return tuple(c if b % c == 0 else b for c, b in zip(default, block))


def _label_colors() -> list[dict]:
    out = []
    for c in SEMANTIC_CLASSES:
        h = c["color"].lstrip("#")
        rgba = [int(h[i : i + 2], 16) for i in (0, 2, 4)] + [0 if c["id"] == 0 else 255]
        out.append({"label-value": c["id"], "rgba": rgba})
    return out


def generate_sample(
    out: str | Path,
    shape=DEFAULT_SHAPE,
    seed: int = 0,
    artifacts: bool = False,
    block_shape=None,
    progress: Any = None,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
    config: SampleConfig | None = None,
) -> Path:
    """Write a synthetic EM volume with ground truth as OME-Zarr, block by block in bounded memory.

    The image is ``raw`` (uint8, with a pyramid); NGFF labels ``labels/instances`` (uint32 cell ids,
    0 on membranes) and ``labels/semantic`` (uint8, :data:`SEMANTIC_CLASSES`). Everything is written
    under a temporary name and renamed into place when complete.

    Args:
        out: the ``.zarr`` folder to create.
        shape, seed, artifacts, config: as in :func:`make_sample`.
        block_shape: (z, y, x) rendered per task (default :data:`DEFAULT_BLOCK`); memory grows with it.
        progress: tqdm-like object or ``callable(done, total)``; counts raw bytes (voxels) written.
        overwrite: replace an existing ``out``.
        should_stop: polled between blocks; True stops and removes the partial output.

    Returns:
        The path of the written OME-Zarr.

    Raises:
        WorkbenchError: bad shape, ``out`` exists without ``overwrite``, stopped.
    """
    from workbench.io.omezarr import NGFF_VERSION, create_ome_zarr_image

    out = Path(out).expanduser().absolute()
    shape = check_shape(shape, out)
    block = check_shape(block_shape or DEFAULT_BLOCK, out)
    block = tuple(min(b, n) for b, n in zip(block, shape))
    if out.exists() and not overwrite:
        raise WorkbenchError("output already exists; use --overwrite (overwrite=True) to replace it", out)
    scene = build_scene(shape, seed, artifacts, config)
    vs = tuple(scene.config.voxel_size)
    chunks = _chunks_for(block)
    raw_img = create_ome_zarr_image(out, shape, np.uint8, vs, chunks, labels=False, name="raw", overwrite=overwrite)
    images = [raw_img]
    try:
        # the label images live inside the raw image's temporary tree, so everything appears at once
        import zarr

        zarr.open_group(str(raw_img.tmp_path / "labels"), mode="a", zarr_format=2)
        inst_img = create_ome_zarr_image(raw_img.tmp_path / "labels" / "instances", shape, np.uint32, vs, chunks,
                                         labels=True, name="instances")
        images.append(inst_img)
        sem_img = create_ome_zarr_image(raw_img.tmp_path / "labels" / "semantic", shape, np.uint8, vs, chunks,
                                        labels=True, name="semantic")
        images.append(sem_img)
        sem_img.extra_attrs = {
            "image-label": {
                "version": NGFF_VERSION,
                "source": {"image": "../../"},
                "colors": _label_colors(),
                "properties": [{"label-value": c["id"], "class": c["name"]} for c in SEMANTIC_CLASSES],
            }
        }
        raw_img.extra_attrs = {
            "workbench": {
                "synthetic": {"seed": int(seed), "shape": list(shape), "artifacts": bool(artifacts)},
                "semantic_classes": SEMANTIC_CLASSES,
            }
        }
        total = int(np.prod(shape, dtype=np.int64)) + sum(img.pyramid_bytes() for img in images[:1])
        prog = _Progress(progress, total)

        def one(reg):
            r, i, s = render_block(scene, *(v for sl in reg for v in (sl.start, sl.stop)))
            raw_img.write_block(reg, r)
            inst_img.write_block(reg, i)
            sem_img.write_block(reg, s)
            return r.size

        _run(_blocks(shape, block), one, prog, should_stop, out)
        inst_img.finalize(should_stop=should_stop)
        sem_img.finalize(should_stop=should_stop)
        raw_img.finalize(progress=lambda done, tot: None, should_stop=should_stop)
        prog(raw_img.pyramid_bytes())
    except BaseException:
        for img in images[::-1]:
            img.abort()
        raise
    return out
