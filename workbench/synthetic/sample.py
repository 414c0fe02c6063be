"""The built-in synthetic EM sample: in memory (:func:`make_sample`) or as OME-Zarr (:func:`generate_sample`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.blocks import run_threaded
from workbench.errors import WorkbenchError
from workbench.progress import as_progress
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


def _run(tasks, fn, on_done, should_stop, where) -> None:
    """``fn`` over ``tasks`` on :data:`WORKERS` threads (numpy and scipy release the GIL), at most 2 x workers
    pending (:func:`workbench.blocks.run_threaded`).

    Raises:
        WorkbenchError: ``should_stop`` returned True (the blocks in flight finish first).
    """
    if not run_threaded(fn, tasks, WORKERS, in_flight=2 * WORKERS, on_done=on_done, should_stop=should_stop):
        raise WorkbenchError("stopped before completion", where)


@dataclass(frozen=True)
class SampleOptions:
    """The knobs of :func:`generate_sample`, checked when created.

    Attributes:
        artifacts: add EM artifacts (missing sections, misaligned sections, contrast drift).
        block_shape: (z, y, x) rendered per task (default :data:`DEFAULT_BLOCK`); memory grows with it,
            the output does not depend on it.
        overwrite: replace an existing output.
        config: physical parameters (:class:`SampleConfig`).

    Raises:
        WorkbenchError: ``block_shape`` not three positive integers.
    """

    artifacts: bool = False
    block_shape: tuple[int, int, int] | None = None
    overwrite: bool = False
    config: SampleConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifacts", bool(self.artifacts))
        object.__setattr__(self, "overwrite", bool(self.overwrite))
        if self.block_shape is not None:
            object.__setattr__(self, "block_shape", check_shape(self.block_shape))


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
        r, i, s = render_block(scene, reg)
        raw[reg], inst[reg], sem[reg] = r, i, s

    run_threaded(one, _blocks(shape, block), WORKERS, in_flight=2 * WORKERS)
    return SampleArrays(raw, inst, sem, tuple(scene.config.voxel_size))


def _chunks_for(block, default=(16, 256, 256)) -> tuple[int, int, int]:
    """Storage chunks that tile ``block`` exactly (so threads never write the same chunk)."""
    return tuple(c if b % c == 0 else b for c, b in zip(default, block))


def _label_colors() -> list[dict]:
    from workbench.classes import hex_to_rgb

    return [{"label-value": c["id"], "rgba": [*hex_to_rgb(c["color"]), 0 if c["id"] == 0 else 255]}
            for c in SEMANTIC_CLASSES]


def _create_images(out: Path, shape, vs, chunks, overwrite: bool, extra: dict, images: list) -> None:
    """The raw image and its two label images (appended to ``images`` as they are made), all in the raw
    image's temporary tree so everything appears at once."""
    import zarr

    from workbench.io.omezarr import NGFF_VERSION, WriteOptions, create_ome_zarr_image

    raw_img = create_ome_zarr_image(out, shape, np.uint8, WriteOptions(name="raw", voxel_size=vs, chunks=chunks,
                                                                        overwrite=overwrite))
    images.append(raw_img)
    zarr.open_group(str(raw_img.tmp_path / "labels"), mode="a", zarr_format=2)
    for name, dtype in (("instances", np.uint32), ("semantic", np.uint8)):
        images.append(create_ome_zarr_image(raw_img.tmp_path / "labels" / name, shape, dtype,
                                            WriteOptions(name=name, voxel_size=vs, chunks=chunks, labels=True)))
    images[2].extra_attrs = {
        "image-label": {
            "version": NGFF_VERSION,
            "source": {"image": "../../"},
            "colors": _label_colors(),
            "properties": [{"label-value": c["id"], "class": c["name"]} for c in SEMANTIC_CLASSES],
        }
    }
    raw_img.extra_attrs = extra


def generate_sample(
    out: str | Path,
    shape=DEFAULT_SHAPE,
    seed: int = 0,
    options: SampleOptions | None = None,
    *,
    progress: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Write a synthetic EM volume with ground truth as OME-Zarr, block by block in bounded memory.

    The image is ``raw`` (uint8, with a pyramid); NGFF labels ``labels/instances`` (uint32 cell ids,
    0 on membranes) and ``labels/semantic`` (uint8, :data:`SEMANTIC_CLASSES`). Everything is written
    under a temporary name and renamed into place when complete.

    Args:
        out: the ``.zarr`` folder to create.
        shape, seed: as in :func:`make_sample`.
        options: :class:`SampleOptions` (artifacts, block shape, overwrite, config).
        progress: tqdm-like object or ``callable(done, total)``; counts raw bytes (voxels) written.
        should_stop: polled between blocks; True stops and removes the partial output.

    Returns:
        The path of the written OME-Zarr.

    Raises:
        WorkbenchError: bad shape, ``out`` exists without ``overwrite``, stopped.
    """
    o = options or SampleOptions()
    out = Path(out).expanduser().absolute()
    shape = check_shape(shape, out)
    block = check_shape(o.block_shape or DEFAULT_BLOCK, out)
    block = tuple(min(b, n) for b, n in zip(block, shape))
    if out.exists() and not o.overwrite:
        raise WorkbenchError("output already exists; use --overwrite (overwrite=True) to replace it", out)
    scene = build_scene(shape, seed, o.artifacts, o.config)
    extra = {
        "workbench": {
            "synthetic": {"seed": int(seed), "shape": list(shape), "artifacts": o.artifacts},
            "semantic_classes": SEMANTIC_CLASSES,
        }
    }
    images: list = []
    try:
        _create_images(out, shape, tuple(scene.config.voxel_size), _chunks_for(block), o.overwrite, extra, images)
        raw_img, inst_img, sem_img = images
        prog = as_progress(progress, total=int(np.prod(shape, dtype=np.int64)) + raw_img.pyramid_bytes())

        def one(reg):
            r, i, s = render_block(scene, reg)
            raw_img.write_block(reg, r)
            inst_img.write_block(reg, i)
            sem_img.write_block(reg, s)
            return r.size

        _run(_blocks(shape, block), one, prog.advance, should_stop, out)
        inst_img.finalize(should_stop=should_stop)
        sem_img.finalize(should_stop=should_stop)
        raw_img.finalize(progress=lambda done, tot: None, should_stop=should_stop)
        prog.advance(raw_img.pyramid_bytes())
    except BaseException:
        for img in images[::-1]:
            img.abort()
        raise
    return out
