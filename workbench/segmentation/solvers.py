"""The field's partitioning algorithms, through bioimage-cpp (the C++ core python-elf runs on).

- :func:`mutex_watershed_grid`: the mutex watershed (Wolf et al. 2018) on the voxel grid of affinities:
  all edges sorted by weight, nearest-neighbour edges merge (attraction = affinity), long-range edges
  forbid merging (repulsion = 1 - affinity) unless the two sides are already one object. No threshold.
- :func:`solve_multicut`: the multicut (correlation clustering) of a region graph: the partition with the
  lowest total cost of cut edges, solved by greedy additive edge contraction then Kernighan-Lin moves.
- :func:`solve_gasp`: GASP (Bailoni et al. 2022), agglomeration on signed edge weights with average
  linkage: the strongest edge (by absolute weight) first; attraction merges, repulsion forbids.
- :func:`solve_mutex_graph`: the mutex watershed on a graph (used to stitch blocks).

Edge weights from probabilities: an edge of mean boundary probability ``p`` between two regions, with
the boundary bias ``t`` (the method's threshold), has the multicut cost
``log((1 - p) / p) - log((1 - t) / t)`` (positive: join, negative: cut; zero at ``p = t``; as python-elf's
``transform_probabilities_to_costs`` with ``beta = 1 - t``), weighted by the edge's size relative to the
largest edge; GASP's signed weight is ``t - p`` with the edge size as weight of the average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.segmentation.offsets import split_offsets

__all__ = ["multicut_costs", "mutex_watershed_grid", "solve_gasp", "solve_multicut", "solve_mutex_graph"]

P_MIN = 0.001


def _graph(n_nodes: int, pairs: np.ndarray, *values: np.ndarray):
    """(the graph of unique pairs ``u != v``, the values per edge in the graph's edge order)."""
    import bioimage_cpp as bic

    uv = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    uv = np.stack([uv.min(axis=1), uv.max(axis=1)], axis=1)
    order = np.lexsort((uv[:, 1], uv[:, 0]))
    graph = bic.graph.UndirectedGraph.from_unique_edges(int(n_nodes), np.ascontiguousarray(uv[order], np.uint64))
    return (graph, *[np.asarray(v, np.float64)[order] for v in values])


def mutex_watershed_grid(affs: np.ndarray, offsets: Sequence[Sequence[int]],
                         mask: np.ndarray | None = None) -> np.ndarray:
    """Mutex watershed of affinities on the voxel grid.

    Args:
        affs: (C, z, y, x) affinities in [0, 1] (1 = same object), channel ``c`` at offset ``offsets[c]``.
        offsets: one (dz, dy, dx) per channel; nearest-neighbour ones attract, the others repel.
        mask: only label where True (0 elsewhere).

    Returns:
        int64 labels 1..N (0 outside the mask), numbered by the solver.
    """
    from bioimage_cpp.segmentation import mutex_watershed

    near, far = split_offsets(offsets)
    order = near + far
    weights = np.empty((len(order), *affs.shape[1:]), np.float32)
    for i, c in enumerate(order):
        a = np.asarray(affs[c], dtype=np.float32)
        weights[i] = a if i < len(near) else 1.0 - a
    labels = mutex_watershed(weights, [list(map(int, offsets[c])) for c in order], len(near),
                             mask=None if mask is None else np.asarray(mask, bool))
    return labels.astype(np.int64)


def multicut_costs(p: np.ndarray, sizes: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Multicut edge costs from mean boundary probabilities ``p`` (see the module docstring)."""
    q = (1 - 2 * P_MIN) * np.asarray(p, np.float64) + P_MIN
    t = min(max(float(threshold), P_MIN), 1 - P_MIN)
    costs = np.log((1 - q) / q) - np.log((1 - t) / t)
    sizes = np.asarray(sizes, np.float64)
    if len(sizes) and sizes.max() > 0:
        costs = costs * (sizes / sizes.max())
    return costs


def solve_multicut(pairs: np.ndarray, costs: np.ndarray, n_nodes: int) -> np.ndarray:
    """Node labels (array of ``n_nodes``) of the multicut of the graph ``pairs`` with edge ``costs``."""
    from bioimage_cpp.graph import multicut as mc

    if len(pairs) == 0:
        return np.arange(n_nodes, dtype=np.int64)
    graph, costs = _graph(n_nodes, pairs, costs)
    objective = mc.MulticutObjective(graph, costs)
    solver = mc.ChainedMulticutSolvers([mc.GreedyAdditiveMulticut(), mc.KernighanLinMulticut()])
    return np.asarray(solver.optimize(objective), dtype=np.int64)


def solve_gasp(pairs: np.ndarray, p: np.ndarray, sizes: np.ndarray, n_nodes: int,
               threshold: float = 0.5) -> np.ndarray:
    """Node labels of GASP with average linkage on signed weights ``threshold - p`` (edge sizes weigh)."""
    from bioimage_cpp.graph.agglomeration import GaspClusterPolicy

    if len(pairs) == 0:
        return np.arange(n_nodes, dtype=np.int64)
    weights = float(threshold) - np.asarray(p, np.float64)
    graph, weights, sizes = _graph(n_nodes, pairs, weights, sizes)
    labels = GaspClusterPolicy(num_clusters_stop=1, linkage="mean").optimize(graph, weights, edge_sizes=sizes)
    return np.asarray(labels, dtype=np.int64)


def solve_mutex_graph(n_nodes: int, pairs: np.ndarray, weights: np.ndarray, mutex_pairs: np.ndarray,
                      mutex_weights: np.ndarray) -> np.ndarray:
    """Node labels of the mutex watershed on a graph: attractive ``pairs`` with ``weights``, repulsive
    ``mutex_pairs`` with ``mutex_weights``, all processed strongest first (pairs unique, ``u != v``)."""
    from bioimage_cpp.graph.mutex_watershed import mutex_watershed_clustering

    graph, weights = _graph(n_nodes, pairs, weights)
    labels = mutex_watershed_clustering(
        graph, weights, np.ascontiguousarray(np.asarray(mutex_pairs, np.uint64).reshape(-1, 2)), np.asarray(mutex_weights, np.float64))
    return np.asarray(labels, dtype=np.int64)
