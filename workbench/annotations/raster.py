"""Brush geometry: which voxels a polyline painted with a round brush covers.

Voxel ``i`` is centred on coordinate ``i`` (it spans ``i - 0.5 .. i + 0.5``), as in scikit-image and napari.
A voxel is painted when its centre lies within ``width / 2`` of the polyline: in the stroke's slice for the
``"xy"`` brush (a disk moved along the line), in 3D for the ``"3d"`` brush (a ball). Width 1 gives a connected
one-voxel line, width 3 a three-voxel band with rounded ends.

The distance to each segment is computed in a vectorised way over the segment's bounding box only, so the
cost grows with the painted area, not with the volume. (``skimage.draw.line`` + ``disk`` stamping would
visit every point of the line once per stamp; the distance test paints the same set in one pass.)
"""

from __future__ import annotations

import math

import numpy as np

from workbench.errors import WorkbenchError

PLANES = ("xy", "3d")
_EPS = 1e-9


def check_points(points_zyx) -> np.ndarray:
    """Validate stroke points: a finite ``(N, 3)`` float array with N >= 1 (a single point paints a dot)."""
    pts = np.asarray(points_zyx, dtype=np.float64)
    if pts.ndim == 1 and pts.shape == (3,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise WorkbenchError(f"stroke points must be an (N, 3) array of z, y, x coordinates, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise WorkbenchError("stroke points must be finite numbers")
    return pts


def _segment_box(a, b, radius, shape):
    """Clipped integer box (lo, hi exclusive) around segment a-b grown by radius, or None when outside."""
    lo = np.floor(np.minimum(a, b) - radius).astype(np.int64)
    hi = np.ceil(np.maximum(a, b) + radius).astype(np.int64) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(shape, dtype=np.int64))
    if np.any(hi <= lo):
        return None
    return lo, hi


def _near_segment(lo, hi, a, b, radius) -> np.ndarray:
    """Boolean mask over the box ``lo:hi`` of voxel centres within ``radius`` of segment a-b (any dims)."""
    grids = np.ogrid[tuple(slice(int(l0), int(h0)) for l0, h0 in zip(lo, hi))]
    ab = b - a
    denom = float(ab @ ab)
    # t: position of the closest point on the segment, clipped to the ends
    rel = [g - a[i] for i, g in enumerate(grids)]
    if denom > 0:
        t = sum(r * (ab[i] / denom) for i, r in enumerate(rel))
        t = np.clip(t, 0.0, 1.0)
        d2 = sum((r - t * ab[i]) ** 2 for i, r in enumerate(rel))
    else:
        d2 = sum(r**2 for r in rel)
    return np.broadcast_to(d2 <= radius * radius + _EPS, tuple(int(h0 - l0) for l0, h0 in zip(lo, hi)))


def _xy_pieces(a, b):
    """Split segment a-b (z, y, x) into pieces that each lie in one z slice: yields (z, a_yx, b_yx)."""
    za, zb = a[0], b[0]
    ka, kb = math.floor(za + 0.5), math.floor(zb + 0.5)
    if ka == kb:
        yield ka, a[1:], b[1:]
        return
    step = 1 if kb > ka else -1
    # parameters where the segment crosses slice borders k +/- 0.5
    borders = [k + 0.5 * step for k in range(ka, kb, step)]
    ts = [0.0] + [(zb_ - za) / (zb - za) for zb_ in borders] + [1.0]
    for i, k in enumerate(range(ka, kb + step, step)):
        p0 = a + ts[i] * (b - a)
        p1 = a + ts[i + 1] * (b - a)
        yield k, p0[1:], p1[1:]


def stroke_mask(points_zyx, width: float, plane: str, shape) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Rasterise a polyline painted with a round brush.

    Args:
        points_zyx: (N, 3) voxel coordinates (floats allowed, outside the volume allowed: clipped).
        width: brush diameter in voxels (>= 1).
        plane: ``"xy"`` (disk in each point's z slice) or ``"3d"`` (ball).
        shape: the volume shape (z, y, x).

    Returns:
        ``(region, mask)``: the clipped bounding box as slices and a boolean mask over it, or None when the
        stroke lies entirely outside the volume.

    Raises:
        WorkbenchError: bad points, width or plane.
    """
    pts = check_points(points_zyx)
    if plane not in PLANES:
        raise WorkbenchError(f"unknown brush plane {plane!r}; use one of {', '.join(PLANES)}")
    if not (np.isfinite(width) and width >= 1):
        raise WorkbenchError(f"brush width must be at least 1 voxel, got {width}")
    radius = float(width) / 2.0
    shape = tuple(int(s) for s in shape)
    if len(pts) > 1:  # repeated points (a slow mouse) add nothing but work
        pts = pts[np.r_[True, np.any(pts[1:] != pts[:-1], axis=1)]]
    segs = list(zip(pts[:-1], pts[1:])) if len(pts) > 1 else [(pts[0], pts[0])]

    pieces = []  # (lo, hi, mask) in volume coordinates
    for a, b in segs:
        if plane == "3d":
            box = _segment_box(a, b, radius, shape)
            if box is not None:
                pieces.append((*box, _near_segment(*box, a, b, radius)))
            continue
        for z, a2, b2 in _xy_pieces(a, b):
            if not 0 <= z < shape[0]:
                continue
            box = _segment_box(a2, b2, radius, shape[1:])
            if box is None:
                continue
            m = _near_segment(*box, a2, b2, radius)[None]
            pieces.append((np.r_[z, box[0]], np.r_[z + 1, box[1]], m))
    if not pieces:
        return None
    lo = np.min([p[0] for p in pieces], axis=0)
    hi = np.max([p[1] for p in pieces], axis=0)
    mask = np.zeros(tuple(hi - lo), dtype=bool)
    for plo, phi, m in pieces:
        sl = tuple(slice(int(s - o), int(e - o)) for s, e, o in zip(plo, phi, lo))
        mask[sl] |= m
    region = tuple(slice(int(s), int(e)) for s, e in zip(lo, hi))
    return region, mask


def clip_box(start, stop, shape) -> tuple[slice, slice, slice] | None:
    """The half-open box ``start:stop`` (z, y, x) clipped to ``shape``, as slices; None when empty."""
    if len(start) != 3 or len(stop) != 3:
        raise WorkbenchError(f"box start and stop need three values (z, y, x), got {start} and {stop}")
    lo = [max(0, int(math.floor(s))) for s in start]
    hi = [min(int(n), int(math.ceil(e))) for e, n in zip(stop, shape)]
    if any(h <= lo_ for lo_, h in zip(lo, hi)):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi))
