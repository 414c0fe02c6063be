"""Fragments (an over-segmentation) for the graph methods: a distance-transform watershed of a boundary map.

Seeds are the maxima of the smoothed distance to the boundary (``boundary >= threshold``), so one leaky
gap in a membrane does not join two cells' seeds (as interior components would); the flooding runs on
``alpha * boundary + (1 - alpha) * (1 - distance / max distance)``, so fragments follow the boundary and
split wide interiors. Given nearest-neighbour affinities, the flooding runs on the affinity graph instead
(bioimage-cpp's ``watershed_from_affinities``: every voxel joins the seed of its strongest path), so the
fragments' faces lie on the cut edges themselves, not somewhere in a two-voxel boundary. Every voxel belongs to a fragment; a cell is usually several fragments, which the
graph methods (multicut, GASP) join. As python-elf's ``distance_transform_watershed``, with scipy and
scikit-image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FragmentParams", "distance_fragments"]


@dataclass(frozen=True)
class FragmentParams:
    """Settings of :func:`distance_fragments`.

    Attributes:
        threshold: boundary where ``boundary >= threshold`` (the distance is measured to it).
        sigma: smoothing (voxels) of the distance before its maxima are taken.
        min_distance: smallest distance between two seeds (voxels).
        alpha: weight of the boundary (against the distance) in the flooded map.
        per_section: fragments within z sections (serial sections, a 2D model).
    """

    threshold: float = 0.5
    sigma: float = 2.0
    min_distance: int = 3
    alpha: float = 0.9
    per_section: bool = False


def _seeds(boundary: np.ndarray, p: FragmentParams) -> tuple[np.ndarray, np.ndarray, int]:
    """(seed labels at the maxima of the smoothed distance to the boundary, that distance, number of seeds)."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max

    interior = boundary < p.threshold
    dist = ndi.distance_transform_edt(interior).astype(np.float32)
    if p.sigma > 0:
        dist = ndi.gaussian_filter(dist, p.sigma)
    peaks = peak_local_max(dist, min_distance=max(1, int(p.min_distance)), threshold_abs=1e-3,
                           labels=interior.astype(np.int32), exclude_border=False)
    seeds = np.zeros(boundary.shape, np.int64)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return seeds, dist, len(peaks)


def _fragments(boundary: np.ndarray, p: FragmentParams, affs: np.ndarray | None = None) -> np.ndarray:
    from skimage.segmentation import watershed

    seeds, dist, n = _seeds(boundary, p)
    if not n:
        return np.ones(boundary.shape, np.int64)
    if affs is not None:
        from bioimage_cpp.segmentation import watershed_from_affinities

        offsets = [[-1 if i == a else 0 for i in range(boundary.ndim)] for a in range(boundary.ndim)]
        return watershed_from_affinities(np.ascontiguousarray(affs, np.float32), offsets, seeds).astype(np.int64)
    top = float(dist.max()) or 1.0
    weights = p.alpha * boundary + (1.0 - p.alpha) * (1.0 - dist / top)
    return watershed(weights, markers=seeds).astype(np.int64)


def distance_fragments(boundary: np.ndarray, params: FragmentParams | None = None,
                       affinities: np.ndarray | None = None) -> np.ndarray:
    """Fragments of a boundary map (see the module docstring).

    Args:
        boundary: boundary probability (z, y, x) in [0, 1].
        params: :class:`FragmentParams`.
        affinities: optional nearest-neighbour affinities (z, y, x channels at offsets -1, or y, x only with
            ``per_section``) to flood instead of the boundary.

    Returns:
        int64 fragment ids 1..N (no background), numbered in the order of their seeds.
    """
    p = params or FragmentParams()
    b = np.asarray(boundary, dtype=np.float32)
    if not p.per_section:
        return _fragments(b, p, affinities)
    out = np.zeros(b.shape, np.int64)
    offset = 0
    for z in range(b.shape[0]):
        f = _fragments(b[z], p, None if affinities is None else affinities[:, z])
        out[z] = f + offset
        offset += int(f.max())
    return out
