"""Connected components of a class: threshold, label (3D), drop small objects."""

from __future__ import annotations

import numpy as np


def structure(connectivity: int = 1, ndim: int = 3) -> np.ndarray:
    """The neighbourhood: 1 = faces (6 in 3D), 2 = faces + edges, 3 = full (26)."""
    from scipy import ndimage as ndi

    return ndi.generate_binary_structure(ndim, connectivity)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Ids 1..N in order of first appearance of each old id's value (0 stays 0), smallest dtype ≥ uint32."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    dtype = np.uint32 if len(ids) < 2**32 - 1 else np.uint64
    if len(ids) == 0:
        return np.zeros(labels.shape, dtype)
    new = np.zeros(labels.shape, dtype)
    index = np.searchsorted(ids, labels)
    nonzero = labels != 0
    new[nonzero] = (index[nonzero] + 1).astype(dtype)
    return new


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects with fewer than ``min_size`` voxels to 0 (in a copy)."""
    if min_size <= 1:
        return labels.copy()
    sizes = np.bincount(labels.ravel().astype(np.int64))
    small = sizes < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def connected_components(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_size: int = 0,
    connectivity: int = 1,
) -> np.ndarray:
    """Instances as connected components of ``prob > threshold`` (or of a boolean mask).

    Args:
        prob: class probability (z, y, x) in [0, 1], or a boolean mask.
        threshold: foreground where ``prob > threshold`` (ignored for boolean input).
        min_size: objects with fewer voxels are removed.
        connectivity: 1 (faces), 2 (faces + edges) or 3 (all 26 neighbours in 3D).

    Returns:
        uint32 labels 1..N (0 = background), numbered in raster order.
    """
    from scipy import ndimage as ndi

    prob = np.asarray(prob)
    mask = prob if prob.dtype == bool else prob > threshold
    labels, _ = ndi.label(mask, structure=structure(connectivity, mask.ndim))
    if min_size > 1:
        labels = remove_small(labels, min_size)
    return relabel_sequential(labels)
