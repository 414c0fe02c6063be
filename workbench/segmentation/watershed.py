"""Seeded watershed on a boundary map (membrane probability): seeds, flooding, merging of weak boundaries,
size filter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.segmentation.components import connected_components, relabel_sequential, remove_small

SEED_METHODS = ("components", "distance")


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
    threshold: float = 0.5,
    seed_method: str = "components",
    mask: np.ndarray | None = None,
    min_size: int = 0,
    min_distance: int = 3,
    min_seed_size: int = 1,
    compactness: float = 0.0,
    merge_threshold: float | None = None,
) -> np.ndarray:
    """Instances by flooding ``boundary`` from seeds (``skimage.segmentation.watershed``).

    Args:
        boundary: boundary probability (z, y, x); high values separate objects.
        seeds: seed labels; made by :func:`make_seeds` (``threshold``, ``seed_method``) when None.
        threshold: interior threshold for the seeds.
        mask: only flood where True (e.g. not background); default everywhere.
        min_size: objects with fewer voxels are removed (set to 0) after flooding.
        compactness: > 0 gives compact watershed (more regular shapes).
        merge_threshold: if set, touching objects are then merged while the mean boundary probability
            along their contact is below it (:func:`merge_weak_boundaries`).

    Returns:
        uint32 labels (0 = background / removed).
    """
    from skimage.segmentation import watershed

    boundary = np.asarray(boundary, dtype=np.float32)
    if seeds is None:
        seeds = make_seeds(boundary, threshold, seed_method, min_distance, min_seed_size)
    labels = watershed(boundary, markers=seeds, mask=mask, compactness=compactness)
    if merge_threshold is not None:
        labels = merge_weak_boundaries(labels, boundary, merge_threshold)
    if min_size > 1:
        labels = remove_small(labels, min_size)
    return relabel_sequential(labels)


def boundary_edge_affinities(boundary: np.ndarray, axes: Sequence[int] | None = None) -> np.ndarray:
    """Affinities of the voxel edges of a boundary map, in the affinity convention of
    :mod:`workbench.segmentation.affinity`: channel ``i`` at ``v`` is ``1 -`` the mean boundary of ``v`` and
    ``v - e[axes[i]]`` (0 where ``v`` has no predecessor).

    Returns:
        float32 (len(axes), *boundary.shape).
    """
    b = np.asarray(boundary, dtype=np.float32)
    axes = list(range(b.ndim)) if axes is None else [int(a) for a in axes]
    out = np.zeros((len(axes), *b.shape), np.float32)
    for c, a in enumerate(axes):
        lo = [slice(None)] * b.ndim
        hi = [slice(None)] * b.ndim
        lo[a] = slice(1, None)
        hi[a] = slice(None, -1)
        out[(c, *lo)] = 1.0 - 0.5 * (b[tuple(lo)] + b[tuple(hi)])
    return out


def merge_weak_boundaries(labels: np.ndarray, boundary: np.ndarray, threshold: float,
                          axes: Sequence[int] | None = None) -> np.ndarray:
    """Merge touching objects, weakest contact first, while the mean boundary probability along their
    contact is below ``threshold`` (mean agglomeration, as for affinities; means are recomputed as objects
    merge). Watershed cells split by a faint line inside one object (an organelle outline, say) join;
    cells separated by a confident boundary stay apart.

    Args:
        labels: objects (0 = background, never merged).
        boundary: boundary probability of the same shape.
        threshold: merge while the mean boundary is below it (0: nothing merges).
        axes: the axes along which objects touch (default all; ``(1, 2)`` keeps z sections apart).

    Returns:
        uint32 labels with consecutive ids.
    """
    from workbench.segmentation.affinity import agglomerate, region_graph

    labels = np.asarray(labels)
    pairs, sums, counts = region_graph(labels, boundary_edge_affinities(boundary, axes), axes)
    mapping = agglomerate(pairs, sums, counts, int(labels.max(initial=0)) + 1, 1.0 - float(threshold))
    mapping[0] = 0
    return relabel_sequential(mapping[labels])
