"""The Box value type: grow, intersect, relative slices, block grids, tile starts."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.geometry import Box, grid_shape, tile_starts


def test_box_basics():
    b = Box((1, 2, 3), (4, 5, 6))
    assert b.stop == (5, 7, 9) and b.size == 120 and b.ndim == 3 and not b.empty
    assert b.slices == (slice(1, 5), slice(2, 7), slice(3, 9))
    assert Box.from_bounds((0, 0), (3, -1)).empty
    with pytest.raises(ValueError):
        Box((0, 0), (1,))
    with pytest.raises(ValueError):
        Box((0,), (-1,))


def test_grow_and_intersect():
    full = Box.from_shape((10, 10, 10))
    core = Box((0, 4, 8), (2, 2, 2))
    grown = core.grow((1, 2, 3))
    assert grown == Box((-1, 2, 5), (4, 6, 8))
    clipped = grown.intersect(full)
    assert clipped == Box((0, 2, 5), (3, 6, 5))
    assert core.relative_to(clipped) == (slice(0, 2), slice(2, 4), slice(3, 5))
    assert core.grow(1, 0) == Box((-1, 3, 7), (3, 3, 3))
    assert Box((0,), (2,)).intersect(Box((5,), (2,))).empty
    with pytest.raises(ValueError):
        grown.relative_to(full)


def test_block_grid_covers_exactly_once():
    shape = (7, 10, 13)
    hits = np.zeros(shape, int)
    blocks = list(Box.from_shape(shape).blocks((3, 4, 5)))
    assert len(blocks) == int(np.prod(grid_shape(shape, (3, 4, 5)))) == 3 * 3 * 3
    for index, box in blocks:
        hits[box.slices] += 1
        assert box.offset == tuple(i * b for i, b in zip(index, (3, 4, 5)))
    assert (hits == 1).all()
    with pytest.raises(ValueError):
        list(Box.from_shape(shape).blocks((0, 1, 1)))


@pytest.mark.parametrize("length,tile,overlap", [(100, 30, 10), (30, 30, 4), (10, 30, 4), (64, 40, 16)])
def test_tile_starts(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    for a, b in zip(starts, starts[1:]):
        assert b - a <= tile - overlap  # overlap at least `overlap`
    with pytest.raises(ValueError):
        tile_starts(100, 10, 10)


@pytest.mark.parametrize("length,tile,overlap,multiple", [(100, 32, 18, 4), (40, 32, 10, 4), (10, 32, 2, 4),
                                                          (70, 24, 8, 1), (257, 64, 16, 8), (65, 33, 9, 2)])
def test_aligned_tiles_cover_with_overlap_on_the_grid(length, tile, overlap, multiple):
    from workbench.geometry import aligned_tiles

    tiles = aligned_tiles(length, tile, overlap, multiple)
    covered = np.zeros(length, bool)
    for start, size in tiles:
        covered[start:start + size] = True
        assert start + size <= length and (multiple == 1 or start % multiple == 0)
    assert covered.all() and tiles[-1][0] + tiles[-1][1] == length
    for (a, sa), (b, _) in zip(tiles, tiles[1:]):
        assert a < b and a + sa - b >= min(overlap, length)
    if tile < length and multiple > 1:
        assert all(size % multiple == 0 for _, size in tiles[:-1])
