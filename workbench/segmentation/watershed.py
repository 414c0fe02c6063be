"""Seeded watershed on a boundary map (membrane probability): seeds, flooding, merging of weak boundaries,
size filter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.segmentation.components import connected_components, relabel_sequential, remove_small
from workbench.segmentation.graph import agglomerate, boundary_edge_affinities, region_graph

SEED_METHODS = ("components", "distance")

__all__ = [
    "SEED_METHODS",
    "WatershedParams",
    "boundary_edge_affinities",
    "make_seeds",
    "merge_weak_boundaries",
    "seeded_watershed",
]


@dataclass(frozen=True)
class WatershedParams:
    """How :func:`seeded_watershed` makes its seeds, floods and cleans up.

    Attributes:
        threshold: interior threshold for the seeds (``boundary < threshold``).
        seed_method: ``"components"`` or ``"distance"`` (see :func:`make_seeds`).
        min_distance: minimum distance between distance-transform seeds (voxels).
        min_seed_size: seed components with fewer voxels are dropped (``"components"``).
        compactness: > 0 gives compact watershed (more regular shapes).
        merge_threshold: if set, touching objects are then merged while the mean boundary probability
            along their contact is below it (:func:`merge_weak_boundaries`).
        min_size: objects with fewer voxels are removed (set to 0) after flooding.
    """

    threshold: float = 0.5
    seed_method: str = "components"
    min_distance: int = 3
    min_seed_size: int = 1
    compactness: float = 0.0
    merge_threshold: float | None = None
    min_size: int = 0


def make_seeds(
    boundary: np.ndarray,
    threshold: float = 0.5,
    method: str = "components",
    min_distance: int = 3,
    min_seed_size: int = 1,
    sampling=None,
) -> np.ndarray:
    """Seeds for a watershed on ``boundary`` (high = membrane).

    Args:
        boundary: boundary probability (z, y, x).
        threshold: interior where ``boundary < threshold``.
        method: ``"components"`` (each connected interior component is a seed) or ``"distance"``
            (maxima of the distance transform of the interior, at least ``min_distance`` apart).
        min_distance: minimum distance between distance-transform maxima (voxels).
        min_seed_size: seed components with fewer voxels are dropped (``"components"``).
        sampling: voxel size (z, y, x) for an anisotropic distance transform.

    Returns:
        uint32 seed labels (0 = no seed).
    """
    from scipy import ndimage as ndi

    interior = np.asarray(boundary) < threshold
    if method == "components":
        return connected_components(interior, min_size=min_seed_size)
    if method != "distance":
        raise ValueError(f"seed method must be one of {SEED_METHODS}, got {method!r}")
    from skimage.feature import peak_local_max

    dist = ndi.distance_transform_edt(interior, sampling=sampling)
    labels_int, _ = ndi.label(interior)
    peaks = peak_local_max(dist, min_distance=max(1, int(min_distance)), labels=labels_int, exclude_border=False)
    seeds = np.zeros(interior.shape, np.uint32)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.uint32)
    return seeds


def seeded_watershed(
    boundary: np.ndarray,
    seeds: np.ndarray | None = None,
    params: WatershedParams | None = None,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Instances by flooding ``boundary`` from seeds (``skimage.segmentation.watershed``).

    Args:
        boundary: boundary probability (z, y, x); high values separate objects.
        seeds: seed labels; made by :func:`make_seeds` (``params.threshold``, ``params.seed_method``)
            when None.
        params: seeds, flooding, merging and size filter (:class:`WatershedParams`; default: its defaults).
        mask: only flood where True (e.g. not background); default everywhere.

    Returns:
        uint32 labels (0 = background / removed).
    """
    from skimage.segmentation import watershed

    p = params or WatershedParams()
    boundary = np.asarray(boundary, dtype=np.float32)
    if seeds is None:
        seeds = make_seeds(boundary, p.threshold, p.seed_method, p.min_distance, p.min_seed_size)
    labels = watershed(boundary, markers=seeds, mask=mask, compactness=p.compactness)
    if p.merge_threshold is not None:
        labels = merge_weak_boundaries(labels, boundary, p.merge_threshold)
    if p.min_size > 1:
        labels = remove_small(labels, p.min_size)
    return relabel_sequential(labels)


def merge_weak_boundaries(labels: np.ndarray, boundary: np.ndarray, threshold: float,
                          axes: Sequence[int] | None = None) -> np.ndarray:
    """Merge touching objects, weakest contact first, while the mean boundary probability along their
    contact is below ``threshold`` (mean agglomeration on the region graph, as for affinities; means are
    recomputed as objects merge). Watershed cells split by a faint line inside one object (an organelle
    outline, say) join; cells separated by a confident boundary stay apart.

    Args:
        labels: objects (0 = background, never merged).
        boundary: boundary probability of the same shape.
        threshold: merge while the mean boundary is below it (0: nothing merges).
        axes: the axes along which objects touch (default all; ``(1, 2)`` keeps z sections apart).

    Returns:
        uint32 labels with consecutive ids.
    """
    labels = np.asarray(labels)
    pairs, sums, counts = region_graph(labels, boundary_edge_affinities(boundary, axes), axes)
    mapping = agglomerate(pairs, sums, counts, int(labels.max(initial=0)) + 1, 1.0 - float(threshold))
    mapping[0] = 0
    return relabel_sequential(mapping[labels])
