"""The region adjacency graph of a label volume and greedy mean-affinity agglomeration on it.

Shared by the affinity agglomeration (:mod:`workbench.segmentation.affinity`: fragments merged on their
affinities), the merging of weak watershed boundaries (:mod:`workbench.segmentation.watershed`: objects
merged on edge affinities made from a boundary map) and their blockwise versions
(:mod:`workbench.segmentation.blockwise`).

Affinity convention: a channel with offset ``-1`` along axis ``a`` holds, at voxel ``v``, the affinity
between ``v`` and ``v - e_a`` (the convention of ``workbench.training`` affinity targets, torch-em and
PyTorch Connectomics).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def _edge_slices(ndim: int, axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(voxels that have a predecessor along ``axis``, their predecessors)."""
    lo = [slice(None)] * ndim
    hi = [slice(None)] * ndim
    lo[axis] = slice(1, None)
    hi[axis] = slice(None, -1)
    return tuple(lo), tuple(hi)


def boundary_edge_affinities(boundary: np.ndarray, axes: Sequence[int] | None = None) -> np.ndarray:
    """Affinities of the voxel edges of a boundary map, in the affinity convention above: channel ``i`` at
    ``v`` is ``1 -`` the mean boundary of ``v`` and ``v - e[axes[i]]`` (0 where ``v`` has no predecessor).

    Returns:
        float32 (len(axes), *boundary.shape).
    """
    b = np.asarray(boundary, dtype=np.float32)
    axes = list(range(b.ndim)) if axes is None else [int(a) for a in axes]
    out = np.zeros((len(axes), *b.shape), np.float32)
    for c, a in enumerate(axes):
        lo, hi = _edge_slices(b.ndim, a)
        out[(c, *lo)] = 1.0 - 0.5 * (b[lo] + b[hi])
    return out


def region_graph(labels: np.ndarray, affs: np.ndarray, axes: Sequence[int] | None = None):
    """Edges between touching regions: ``(pairs (E, 2) with a < b, affinity sums (E,), counts (E,))``."""
    ndim = labels.ndim
    axes = list(range(ndim)) if axes is None else list(axes)
    us, vs, ws = [], [], []
    for c, a in enumerate(axes):
        lo, hi = _edge_slices(ndim, a)
        u = labels[lo].ravel()
        v = labels[hi].ravel()
        w = np.asarray(affs[c], dtype=np.float64)[lo].ravel()
        keep = (u != v) & (u != 0) & (v != 0)
        us.append(u[keep])
        vs.append(v[keep])
        ws.append(w[keep])
    u = np.concatenate(us).astype(np.int64)
    v = np.concatenate(vs).astype(np.int64)
    w = np.concatenate(ws)
    lo_, hi_ = np.minimum(u, v), np.maximum(u, v)
    if len(lo_) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0)
    n = int(labels.max()) + 1
    uniq, inverse = np.unique(lo_ * n + hi_, return_inverse=True)
    sums = np.bincount(inverse, weights=w)
    counts = np.bincount(inverse).astype(np.float64)
    pairs = np.stack([uniq // n, uniq % n], axis=1)
    return pairs, sums, counts


def agglomerate(pairs: np.ndarray, sums: np.ndarray, counts: np.ndarray, n_nodes: int,
                threshold: float) -> np.ndarray:
    """Greedy mean-affinity merging: the pair with the highest mean affinity merges first (means of merged
    regions are recomputed from edge sums and counts) while it exceeds ``threshold``.

    Returns:
        A map ``old id -> new id`` (array of ``n_nodes``; ids are representative old ids).
    """
    parent = np.arange(n_nodes)

    def find(x):
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    adj: list[dict[int, list[float]]] = [dict() for _ in range(n_nodes)]
    heap = []
    for (a, b), s, c in zip(pairs.tolist(), sums.tolist(), counts.tolist()):
        adj[a][b] = [s, c]
        adj[b][a] = adj[a][b]
        heapq.heappush(heap, (-s / c, a, b))
    while heap:
        neg, a, b = heapq.heappop(heap)
        if -neg <= threshold:
            break
        if find(a) != a or find(b) != b or b not in adj[a]:
            continue  # stale entry
        s, c = adj[a][b]
        if abs(s / c + neg) > 1e-12:
            continue  # stale mean
        # merge the smaller adjacency into the larger
        if len(adj[a]) < len(adj[b]):
            a, b = b, a
        parent[b] = a
        del adj[a][b]
        del adj[b][a]
        for nb, (s2, c2) in adj[b].items():
            del adj[nb][b]
            if nb in adj[a]:
                adj[a][nb][0] += s2
                adj[a][nb][1] += c2
            else:
                adj[a][nb] = [s2, c2]
                adj[nb][a] = adj[a][nb]
            e = adj[a][nb]
            heapq.heappush(heap, (-e[0] / e[1], min(a, nb), max(a, nb)))
        adj[b] = {}
    return np.array([find(i) for i in range(n_nodes)], dtype=np.int64)
