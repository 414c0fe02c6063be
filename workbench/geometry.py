"""Regions of interest as a small value type: ``Box`` (offset + shape, z, y, x voxels).

All block, halo and tile arithmetic of the workbench goes through :class:`Box` so that index
calculations are written (and tested) once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


def _ints(values: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    if isinstance(values, int):
        return (int(values),) * ndim
    out = tuple(int(v) for v in values)
    if len(out) != ndim:
        raise ValueError(f"expected {ndim} values, got {len(out)}: {values}")
    return out


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of voxels: ``offset`` (inclusive start) and ``shape``.

    Boxes are immutable; every operation returns a new box. An empty box has a zero in its shape.
    """

    offset: tuple[int, ...]
    shape: tuple[int, ...]

    def __post_init__(self):
        offset = tuple(int(v) for v in self.offset)
        shape = tuple(int(v) for v in self.shape)
        if len(offset) != len(shape):
            raise ValueError(f"offset {offset} and shape {shape} differ in length")
        if any(s < 0 for s in shape):
            raise ValueError(f"negative shape {shape}")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "shape", shape)

    @classmethod
    def from_shape(cls, shape: Sequence[int]) -> Box:
        """The box ``[0, shape)``."""
        return cls((0,) * len(shape), tuple(shape))

    @classmethod
    def from_bounds(cls, start: Sequence[int], stop: Sequence[int]) -> Box:
        """The box ``[start, stop)`` (an inverted range becomes empty)."""
        return cls(tuple(start), tuple(max(0, int(b) - int(a)) for a, b in zip(start, stop)))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def start(self) -> tuple[int, ...]:
        return self.offset

    @property
    def stop(self) -> tuple[int, ...]:
        return tuple(o + s for o, s in zip(self.offset, self.shape))

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def empty(self) -> bool:
        return self.size == 0

    @property
    def slices(self) -> tuple[slice, ...]:
        """Slices selecting this box from an array whose origin is 0."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def relative_to(self, other: Box) -> tuple[slice, ...]:
        """Slices selecting this box from an array that holds ``other`` (this box must lie inside it)."""
        if not other.contains(self):
            raise ValueError(f"{self} is not inside {other}")
        return tuple(slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, other.offset))

    def grow(self, before: Sequence[int] | int, after: Sequence[int] | int | None = None) -> Box:
        """Grow by ``before`` voxels at the start and ``after`` (default: ``before``) at the end of each axis."""
        b = _ints(before, self.ndim)
        a = b if after is None else _ints(after, self.ndim)
        return Box(tuple(o - x for o, x in zip(self.offset, b)), tuple(s + x + y for s, x, y in zip(self.shape, b, a)))

    def intersect(self, other: Box) -> Box:
        """The common part of two boxes (possibly empty)."""
        start = tuple(max(a, b) for a, b in zip(self.start, other.start))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop))
        return Box.from_bounds(start, tuple(max(a, b) for a, b in zip(start, stop)))

    def contains(self, other: Box) -> bool:
        return all(a <= b for a, b in zip(self.start, other.start)) and all(
            a >= b for a, b in zip(self.stop, other.stop)
        )

    def shift(self, by: Sequence[int]) -> Box:
        return Box(tuple(o + d for o, d in zip(self.offset, _ints(by, self.ndim))), self.shape)

    def blocks(self, block_shape: Sequence[int]) -> Iterator[tuple[tuple[int, ...], Box]]:
        """Iterate the block grid covering this box: ``(grid index, block)``, blocks clipped at the end."""
        bs = _ints(block_shape, self.ndim)
        if any(b <= 0 for b in bs):
            raise ValueError(f"block shape must be positive, got {bs}")
        counts = grid_shape(self.shape, bs)
        for index in itertools.product(*(range(n) for n in counts)):
            start = tuple(o + i * b for o, i, b in zip(self.offset, index, bs))
            yield index, Box(start, bs).intersect(self)

    def __repr__(self) -> str:
        return f"Box({list(self.start)}..{list(self.stop)})"


def grid_shape(shape: Sequence[int], block_shape: Sequence[int]) -> tuple[int, ...]:
    """Number of blocks per axis covering ``shape`` (the last block of an axis may be partial)."""
    return tuple(-(-int(s) // int(b)) for s, b in zip(shape, block_shape))


def aligned_tiles(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """(start, size) of tiles covering ``[0, length)`` whose starts and sizes are multiples of ``multiple``
    (the last tile may end at ``length`` instead), overlapping by at least ``overlap``.

    A network that down-samples by ``multiple`` then sees every tile on the same pooling grid as the whole
    region, so tiles agree with one whole-region call wherever the context suffices. The last tile starts at the
    aligned position nearest to ``length - tile`` below it, so it may be up to ``multiple - 1`` longer.
    """
    if multiple <= 1:
        return [(o, tile if tile < length else length) for o in tile_starts(length, tile, overlap)]
    if tile >= length:
        return [(0, length)]
    tile = max(multiple, tile // multiple * multiple)
    stride = (tile - overlap) // multiple * multiple
    if stride <= 0:
        raise ValueError(f"tile {tile} must be larger than the overlap {overlap} by at least {multiple}")
    starts = list(range(0, length - tile, stride))
    last = (length - tile) // multiple * multiple
    if not starts or last > starts[-1]:
        starts.append(last)
    return [(o, tile) for o in starts[:-1]] + [(starts[-1], length - starts[-1])]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of ``tile`` voxels covering ``[0, length)`` with at least ``overlap`` overlap.

    The last tile is moved back so that it ends at ``length`` (never padded); a tile longer than
    ``length`` is one tile starting at 0.
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"tile {tile} must be larger than the overlap {overlap}")
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts
