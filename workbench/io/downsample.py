"""Multiscale pyramids: which axes to halve at each level, and the block reducers (mean, mode)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Without an explicit level count, levels are added until y and x fit in this many voxels.
PYRAMID_MIN_XY = 256
MAX_LEVELS = 12


@dataclass(frozen=True)
class Level:
    """One pyramid level: its shape, the factor from the previous level and the total factor from level 0."""

    shape: tuple[int, int, int]
    step: tuple[int, int, int]
    factor: tuple[int, int, int]


def step_factors(shape, voxel_size) -> tuple[int, int, int]:
    """Halve an axis when its voxel size is within 2x of the finest one (and it has more than one voxel).

    Anisotropic data (e.g. 50 x 4 x 4 nm) thus keeps every z slice until x and y reach z's voxel size,
    then all axes shrink together, as other NGFF pyramid writers do.
    """
    live = [v for v, n in zip(voxel_size, shape) if n > 1]
    if not live:
        return (1, 1, 1)
    finest = min(live)
    return tuple(2 if n > 1 and v / finest < 2 else 1 for v, n in zip(voxel_size, shape))


def plan_pyramid(shape, voxel_size, levels: int | None = None) -> list[Level]:
    """The levels of a pyramid over a z, y, x volume (level 0 first).

    Args:
        levels: number of levels; None adds levels until y and x are at most :data:`PYRAMID_MIN_XY`.
    """
    shape = tuple(int(s) for s in shape)
    vs = tuple(float(v) for v in voxel_size)
    out = [Level(shape, (1, 1, 1), (1, 1, 1))]
    target = MAX_LEVELS if levels is None else int(levels)
    while len(out) < target:
        cur = out[-1]
        if levels is None and max(cur.shape[1:]) <= PYRAMID_MIN_XY:
            break
        step = step_factors(cur.shape, vs)
        if step == (1, 1, 1):
            break
        new_shape = tuple(-(-n // f) for n, f in zip(cur.shape, step))
        vs = tuple(v * f for v, f in zip(vs, step))
        out.append(Level(new_shape, step, tuple(a * b for a, b in zip(cur.factor, step))))
    return out


def _views(data: np.ndarray, factors) -> list[np.ndarray]:
    """Edge-pad ``data`` to multiples of ``factors``; the fz*fy*fx strided views, one per voxel of a block.

    Strided views avoid the copy a reshape/transpose of the whole block would make (several times faster).
    """
    pad = [(0, (-n) % f) for n, f in zip(data.shape, factors)]
    if any(p[1] for p in pad):
        data = np.pad(data, pad, mode="edge")
    fz, fy, fx = factors
    return [data[i::fz, j::fy, k::fx] for i in range(fz) for j in range(fy) for k in range(fx)]


def downsample_mean(data: np.ndarray, factors) -> np.ndarray:
    """Block mean (images); integers are rounded half up back to their type."""
    factors = tuple(int(f) for f in factors)
    if factors == (1, 1, 1):
        return data
    views = _views(data, factors)
    k = len(views)
    if data.dtype.kind == "b":
        acc = np.zeros(views[0].shape, np.uint8)
        for v in views:
            acc += v
        return acc * 2 >= k
    if data.dtype.kind == "f":
        acc = views[0].astype(np.float64 if data.dtype == np.float64 else np.float32)
        for v in views[1:]:
            acc += v
        acc /= k
        return acc.astype(data.dtype, copy=False)
    wide = {1: np.uint16, 2: np.uint32}.get(data.dtype.itemsize, np.uint64) if data.dtype.kind == "u" else np.int64
    acc = views[0].astype(wide)
    for v in views[1:]:
        acc += v
    acc += k // 2
    acc //= k
    return acc.astype(data.dtype)


def downsample_mode(data: np.ndarray, factors) -> np.ndarray:
    """Most frequent value per block (labels); ties go to the first voxel of the block (nearest).

    Blocks hold at most 8 values, so counting equal pairs (k(k-1)/2 vectorised comparisons, each
    credited to both voxels) is faster here than sorting or ``scipy.stats.mode``.
    """
    factors = tuple(int(f) for f in factors)
    if factors == (1, 1, 1):
        return data
    views = _views(data, factors)
    k = len(views)
    counts = [np.ones(views[0].shape, np.uint8) for _ in range(k)]
    eq = np.empty(views[0].shape, bool)
    for i in range(k):
        for j in range(i + 1, k):
            np.equal(views[i], views[j], out=eq)
            counts[i] += eq
            counts[j] += eq
    best = views[0].copy()
    best_count = counts[0]
    for j in range(1, k):
        better = counts[j] > best_count
        np.copyto(best, views[j], where=better)
        np.maximum(best_count, counts[j], out=best_count)
    return best


def chunk_aligned_blocks(shape, chunks, bytes_per_voxel: float, budget: int) -> Iterator[tuple[slice, slice, slice]]:
    """Regions covering ``shape`` made of whole chunks, each about ``budget`` bytes or less (one chunk at least).

    Whole planes first (several chunk rows in z when they fit), then rows of chunks in y, then tiles.
    """
    z, y, x = shape
    cz, cy, cx = (min(c, n) for c, n in zip(chunks, shape))

    def nbytes(dz, dy, dx):
        return dz * dy * dx * bytes_per_voxel

    if nbytes(cz, y, x) <= budget:
        dz = cz * max(1, int(budget // nbytes(cz, y, x)))
        dy, dx = y, x
    elif nbytes(cz, cy, x) <= budget:
        dz, dx = cz, x
        dy = cy * max(1, int(budget // nbytes(cz, cy, x)))
    else:
        dz, dy = cz, cy
        dx = cx * max(1, int(budget // nbytes(cz, cy, cx)))
    for z0 in range(0, z, dz):
        for y0 in range(0, y, dy):
            for x0 in range(0, x, dx):
                yield (slice(z0, min(z, z0 + dz)), slice(y0, min(y, y0 + dy)), slice(x0, min(x, x0 + dx)))
