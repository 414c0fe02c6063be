"""Brush geometry of strokes, boxes and clipping (pure functions, no storage)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.annotations.raster import clip_box, stroke_mask
from workbench.errors import WorkbenchError


def paint(points, width, plane, shape=(5, 20, 30)) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    hit = stroke_mask(points, width, plane, shape)
    if hit is not None:
        region, mask = hit
        out[region] |= mask
    return out


def test_horizontal_stroke_width3_paints_a_three_pixel_band_with_round_ends():
    got = paint([[2, 10, 5], [2, 10, 15]], 3, "xy")
    want = np.zeros_like(got)
    want[2, 9:12, 4:17] = True  # rows y-1..y+1; ends grow by one pixel (centres within 1.5)
    np.testing.assert_array_equal(got, want)


def test_width1_diagonal_line_is_connected_one_pixel_wide():
    got = paint([[0, 0, 0], [0, 9, 9]], 1, "xy")
    assert got.sum() == 10
    assert all(got[0, i, i] for i in range(10))


def test_shallow_width1_line_has_one_pixel_per_column():
    got = paint([[1, 2, 0], [1, 5, 29]], 1, "xy")[1]
    assert (got.sum(axis=0) == 1).all()


def test_single_point_width3_is_a_3x3_square_in_its_slice():
    got = paint([[1.2, 5, 5]], 3, "xy")
    want = np.zeros_like(got)
    want[1, 4:7, 4:7] = True
    np.testing.assert_array_equal(got, want)


def test_3d_ball_brush():
    shape = (11, 11, 11)
    got = paint([[5, 5, 5]], 5, "3d", shape)
    z, y, x = np.indices(shape)
    want = (z - 5) ** 2 + (y - 5) ** 2 + (x - 5) ** 2 <= 2.5**2
    np.testing.assert_array_equal(got, want)
    assert got[3:8, 5, 5].all() and not got[2, 5, 5]


def test_xy_stroke_across_slices_stays_one_slice_per_piece():
    got = paint([[0, 10, 0], [4, 10, 20]], 1, "xy")
    assert got.sum(axis=(1, 2)).min() >= 1  # every slice crossed gets its part
    assert got.any(axis=0)[10].sum() == 21  # projection is the whole line, without gaps


def test_clipping_at_borders_and_outside():
    got = paint([[0, -5, -5], [0, 2, 2]], 3, "xy")
    assert got[0, 0, 0] and got.sum() > 0
    assert stroke_mask([[0, -20, -20], [0, -10, -30]], 3, "xy", (5, 20, 30)) is None
    assert stroke_mask([[9, 5, 5]], 3, "xy", (5, 20, 30)) is None


@pytest.mark.parametrize("points, width, plane", [
    ([[0, 1]], 3, "xy"), ([[0, np.nan, 1]], 3, "xy"), ([[0, 1, 1]], 0.5, "xy"), ([[0, 1, 1]], 3, "yz"),
])
def test_bad_strokes_raise(points, width, plane):
    with pytest.raises(WorkbenchError):
        stroke_mask(points, width, plane, (5, 20, 30))


def test_clip_box():
    assert clip_box((-2, 3, 4), (2, 50, 6), (5, 20, 30)) == (slice(0, 2), slice(3, 20), slice(4, 6))
    assert clip_box((6, 0, 0), (8, 5, 5), (5, 20, 30)) is None
