"""Mutex watershed, multicut and GASP on volumes larger than memory: per-block solves, then one graph pass.

Both go in the same four passes over the blocks (every pass holds one block, plus halo, at a time):

1. **Per block** (independent tasks, on threads or Dask: :mod:`workbench.segmentation.tasks`): the block
   is read with its halo and solved on its own, its core kept with ids 1..n local to the block:
   ``mutex-watershed``: the mutex watershed of the block's affinities; ``multicut``/``gasp``: fragments
   (:func:`~workbench.segmentation.fragments.distance_fragments` of the boundary map, or of ``1 - min
   affinity`` for an affinity prediction).
2. **Ids**: the blocks' ids are offset by the counts of the blocks before them in raster order, so ids do
   not depend on where or in which order the tasks ran.
3. **Region graph** of those pieces over the whole volume (accumulated block by block, every voxel edge
   counted once: :func:`~workbench.segmentation.blockwise.region_graph_blockwise`), with the mean
   nearest-neighbour affinity (or ``1 -`` the mean boundary) along each contact; one node per piece, so it
   fits in memory.
4. **Global solve** on that graph and a last pass writing every block with its final ids.

``multicut``/``gasp`` (a two-pass block-graph solve): the solver sees every edge of the volume, those between
fragments of different blocks too, so the result is the whole-volume solve of the same fragments; fragments
are cut at block faces (the joined pieces of a fragment have the costs of the interior between them).
``mutex-watershed`` (per-block solve, then stitching by a mutex watershed on the graph of the pieces):
pieces of one block stay apart (a mutex edge: the block's own solve, with its halo, separated them); pieces
touching across a block face join, strongest mean affinity first, when it is above 0.5 and no mutex forbids
it. With one block this is exactly the mutex watershed of the whole volume.

With ``min_size``, objects smaller than it are then merged into the touching object of the highest mean
affinity on the same graph (:func:`absorb_small`); only those touching none are removed.

Final ids are canonical: objects numbered 1..N in the raster order of their first voxel, so a run gives the
same ids on threads and on Dask, and the same partition gives the same ids for any block shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.segmentation.affinity import boundaries_from_affinities
from workbench.segmentation.blockwise import BlockJob, region_graph_blockwise
from workbench.segmentation.fragments import FragmentParams, distance_fragments
from workbench.segmentation.graph import boundary_edge_affinities
from workbench.segmentation.solvers import (
    multicut_costs,
    mutex_watershed_grid,
    solve_gasp,
    solve_multicut,
    solve_mutex_graph,
)
from workbench.segmentation.tasks import map_blocks

Reader = Callable[[Box], np.ndarray]

__all__ = [
    "AffinityStats",
    "BoundaryEdges",
    "BoundaryStats",
    "FragmentTask",
    "MutexTask",
    "absorb_small",
    "check_id_capacity",
    "graph_solve_blockwise",
    "link_graph_blockwise",
    "mutex_watershed_blockwise",
    "relabel_canonical_blockwise",
]


def check_id_capacity(n_ids: int, dtype, where=None) -> None:
    """Raise a one-line ``WorkbenchError`` when ``n_ids`` objects do not fit the integer ``dtype`` (0 is background)."""
    top = int(np.iinfo(np.dtype(dtype)).max)
    if int(n_ids) > top:
        raise WorkbenchError(f"the segmentation has {int(n_ids)} ids, more than a {np.dtype(dtype).name} output "
                             f"holds ({top}); use larger blocks' min size or a uint64 output", where)


@dataclass(frozen=True)
class BoundaryEdges:
    """``box -> (len(axes), *box.shape)`` edge affinities ``1 - mean boundary`` of a boundary reader (the
    voxel before the box's low faces is read too, as an edge needs both of its voxels)."""

    read_boundary: Reader
    axes: tuple[int, ...]

    def __call__(self, box: Box) -> np.ndarray:
        start = tuple(max(0, s - 1) for s in box.start)
        grown = Box(start, tuple(b - a for a, b in zip(start, box.stop)))
        affs = boundary_edge_affinities(np.asarray(self.read_boundary(grown), np.float32), self.axes)
        return affs[(slice(None), *box.relative_to(grown))]


def link_graph_blockwise(read_labels: Reader, read_affs: Reader, offsets: Sequence[Sequence[int]],
                         job: BlockJob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The affinity links between labels, all offsets, block by block: for every voxel ``v`` and channel
    ``c`` with ``v + offsets[c]`` inside the volume and the two labels different (neither 0), the link
    ``(labels[v], labels[v + o])`` with weight ``affs[c, v]``, counted once, in the block holding ``v``.

    Returns:
        ``(pairs (E, 2) with a < b, sums of the link affinities, link counts)``, pairs sorted.
    """
    full = job.full
    reach = tuple(max(abs(int(o[a])) for o in offsets) for a in range(3))
    keys, weights = [], []
    for core in job.boxes():
        job.check()
        region = core.grow(reach).intersect(full)
        labels = np.asarray(read_labels(region)).astype(np.int64)
        affs = np.asarray(read_affs(core), np.float64)
        for c, o in enumerate(offsets):
            lo = [max(core.start[a], -int(o[a])) for a in range(3)]
            hi = [min(core.stop[a], full.stop[a] - int(o[a])) for a in range(3)]
            if any(h <= l_ for l_, h in zip(lo, hi)):
                continue
            here = tuple(slice(l_ - r, h - r) for l_, h, r in zip(lo, hi, region.start))
            there = tuple(slice(l_ + int(d) - r, h + int(d) - r) for l_, h, d, r in zip(lo, hi, o, region.start))
            at = tuple(slice(l_ - s0, h - s0) for l_, h, s0 in zip(lo, hi, core.start))
            u, v, w = labels[here].ravel(), labels[there].ravel(), affs[c][at].ravel()
            keep = (u != v) & (u != 0) & (v != 0)
            keys.append(np.stack([np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])], axis=1))
            weights.append(w[keep])
    if not keys or not sum(len(k) for k in keys):
        return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0)
    pairs = np.concatenate(keys)
    n = int(pairs.max()) + 1
    uniq, inverse = np.unique(pairs[:, 0] * n + pairs[:, 1], return_inverse=True)
    return (np.stack([uniq // n, uniq % n], axis=1), np.bincount(inverse, weights=np.concatenate(weights)),
            np.bincount(inverse).astype(np.float64))


@dataclass(frozen=True)
class BoundaryStats:
    """Edge statistics of a boundary map: the region graph with ``1 - mean boundary`` along each contact."""

    read_boundary: Reader
    axes: tuple[int, ...]

    def __call__(self, read_labels: Reader, job: BlockJob):
        return region_graph_blockwise(read_labels, BoundaryEdges(self.read_boundary, self.axes), job, self.axes)


@dataclass(frozen=True)
class AffinityStats:
    """Edge statistics of affinities: the touching pairs (nearest-neighbour channels ``near``), each with the
    mean affinity of all links between the two, long-range offsets included (as python-elf's
    ``compute_affinity_features``): a membrane leaky at one voxel is still crossed by long-range cuts."""

    read_affs: Reader
    offsets: tuple[tuple[int, int, int], ...]
    near: tuple[int, ...]

    def __call__(self, read_labels: Reader, job: BlockJob):
        adjacent, _, _ = link_graph_blockwise(read_labels, _Channels(self.read_affs, self.near),
                                              [self.offsets[c] for c in self.near], job)
        pairs, sums, counts = link_graph_blockwise(read_labels, self.read_affs, self.offsets, job)
        if not len(adjacent):
            return adjacent, np.zeros(0), np.zeros(0)
        n = int(max(adjacent.max(), pairs.max(initial=0))) + 1
        index = np.searchsorted(pairs[:, 0] * n + pairs[:, 1], adjacent[:, 0] * n + adjacent[:, 1])
        return adjacent, sums[index], counts[index]


@dataclass(frozen=True)
class _Channels:
    read: Reader
    channels: tuple[int, ...]

    def __call__(self, box: Box) -> np.ndarray:
        return np.asarray(self.read(box))[list(self.channels)]


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids 1..n in order of value (0 stays 0): (uint32 labels, n)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if ids[0] == 0:
        return inverse.astype(np.uint32), len(ids) - 1
    return (inverse + 1).astype(np.uint32), len(ids)


@dataclass(frozen=True)
class FragmentTask:
    """One block's fragments (pass 1 of multicut/GASP): read the boundary with the halo, keep the core.

    Attributes:
        read: ``box -> boundary`` (``affinity_axes`` None) or ``box -> nearest-neighbour affinities``.
        scratch: array receiving the core's local fragment ids.
        shape: the volume shape; halo: context (z, y, x); params: :class:`FragmentParams`.
        affinity_axes: the axis of each affinity channel when ``read`` gives affinities.
    """

    read: Reader
    scratch: object
    shape: tuple[int, ...]
    halo: tuple[int, int, int]
    params: FragmentParams
    affinity_axes: tuple[int, ...] | None = None

    def __call__(self, core: Box) -> int:
        halo = (0, *self.halo[1:]) if self.params.per_section else tuple(self.halo)
        region = core.grow(halo).intersect(Box.from_shape(self.shape))
        data = np.asarray(self.read(region), np.float32)
        if self.affinity_axes is None:
            fragments = distance_fragments(data, self.params)
        else:
            axes = tuple(self.affinity_axes)
            boundary = boundaries_from_affinities(data, axes)
            full = (1, 2) if self.params.per_section else (0, 1, 2)
            if axes == full:  # the affinity graph itself is flooded (per section: y, x)
                fragments = distance_fragments(boundary, self.params, data)
            else:
                fragments = distance_fragments(boundary, self.params)
        labels, n = _consecutive(fragments[core.relative_to(region)])
        self.scratch[core.slices] = labels
        return n


@dataclass(frozen=True)
class MutexTask:
    """One block's mutex watershed (pass 1 of ``mutex-watershed``): affinities read with the halo, core kept.

    Attributes:
        read: ``box -> (C, *box.shape)`` affinities, channel ``c`` at ``offsets[c]``.
        scratch: array receiving the core's local ids.
        shape: the volume shape; halo: context (z, y, x); offsets: (dz, dy, dx) per channel.
    """

    read: Reader
    scratch: object
    shape: tuple[int, ...]
    halo: tuple[int, int, int]
    offsets: tuple[tuple[int, int, int], ...]

    def __call__(self, core: Box) -> int:
        halo = tuple(self.halo)
        if all(o[0] == 0 for o in self.offsets):  # no z edges (a 2D model): sections are independent
            halo = (0, *halo[1:])
        region = core.grow(halo).intersect(Box.from_shape(self.shape))
        affs = np.asarray(self.read(region), np.float32)
        labels, n = _consecutive(mutex_watershed_grid(affs, self.offsets)[core.relative_to(region)])
        self.scratch[core.slices] = labels
        return n


def _solve_blocks(task, job: BlockJob, scheduler, prog) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1 and 2: run ``task`` on every block, then offset the local ids (raster block order) in place.

    Returns:
        The id offsets (``offsets[i]``: ids of block ``i`` are ``offsets[i] + 1 .. offsets[i + 1]``) and the
        voxel count of every id (index 0: background).
    """
    boxes = job.boxes()
    job.check()
    counts = map_blocks(task, boxes, scheduler, on_done=prog.advance, should_stop=job.should_stop)
    job.check()
    offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))])
    sizes = np.zeros(int(offsets[-1]) + 1, np.int64)
    for i, box in enumerate(boxes):
        job.check()
        local = np.asarray(task.scratch[box.slices]).astype(np.int64)
        ids = np.where(local > 0, local + offsets[i], 0)
        sizes += np.bincount(ids.ravel(), minlength=len(sizes))
        task.scratch[box.slices] = ids.astype(task.scratch.dtype)
        prog.advance()
    return offsets, sizes


def absorb_small(mapping: np.ndarray, pairs: np.ndarray, sums: np.ndarray, counts: np.ndarray, sizes: np.ndarray,
                 min_size: int, rounds: int = 20) -> np.ndarray:
    """Merge objects smaller than ``min_size`` voxels into the touching object of the highest mean affinity
    (python-elf's size filter does the same by flooding); objects touching none stay (the final pass then
    removes them).

    Args:
        mapping: node -> object (node 0, the background, maps to 0).
        pairs / sums / counts: the node graph (affinity sums and counts of each touching pair).
        sizes: voxels per node.

    Returns:
        The new node -> object map.
    """
    mapping = np.asarray(mapping, np.int64).copy()
    if min_size <= 1 or not len(pairs):
        return mapping
    for _ in range(rounds):
        obj_sizes = np.bincount(mapping, weights=sizes, minlength=int(mapping.max()) + 1)
        a, b = mapping[pairs[:, 0]], mapping[pairs[:, 1]]
        keep = a != b
        if not keep.any():
            break
        a, b, s, c = a[keep], b[keep], sums[keep], counts[keep]
        # both directions, then per small object the neighbour with the highest mean affinity
        src, dst = np.concatenate([a, b]), np.concatenate([b, a])
        n = int(mapping.max()) + 1
        key, inverse = np.unique(src * n + dst, return_inverse=True)
        mean = np.bincount(inverse, np.concatenate([s, s])) / np.bincount(inverse, np.concatenate([c, c]))
        src, dst = key // n, key % n
        small = (obj_sizes[src] < min_size) & (src != 0)
        if not small.any():
            break
        src, dst, mean = src[small], dst[small], mean[small]
        order = np.lexsort((dst, -mean, src))  # per source: best neighbour first (ties: lowest id)
        first = np.unique(src[order], return_index=True)[1]
        target = np.arange(n)
        target[src[order][first]] = dst[order][first]
        for _ in range(64):  # follow chains of small objects merging into each other
            nxt = target[target]
            if np.array_equal(nxt, target):
                break
            cycle = nxt == np.arange(n)  # two objects choosing each other: both go to the lower id
            target = np.where(cycle, np.minimum(np.arange(n), target), nxt)
        mapping = target[mapping]
    return mapping


def relabel_canonical_blockwise(read_labels: Reader, mapping: np.ndarray, out, job: BlockJob,
                                min_size: int = 0, prog=None) -> int:
    """Write ``mapping[labels]`` into ``out`` with canonical ids: objects 1..N in the raster order of their
    first voxel, objects smaller than ``min_size`` set to 0 (0 maps to 0).

    Returns:
        N, the number of objects.

    Raises:
        WorkbenchError: more objects than ``out``'s dtype holds.
    """
    mapping = np.asarray(mapping, np.int64)
    n = int(mapping.max(initial=0)) + 1
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    sizes = np.zeros(n, np.int64)
    boxes = job.boxes()
    shape = job.shape
    for box in boxes:
        job.check()
        lab = mapping[np.asarray(read_labels(box)).astype(np.int64)]
        ids, index, counts = np.unique(lab.ravel(), return_index=True, return_counts=True)
        coords = np.unravel_index(index, box.shape)
        flat = np.ravel_multi_index(tuple(c + s for c, s in zip(coords, box.start)), shape)
        np.minimum.at(first, ids, flat)
        np.add.at(sizes, ids, counts)
    keep = (sizes >= max(1, int(min_size))) & (np.arange(n) != 0)
    order = np.argsort(first[keep], kind="stable")
    n_objects = int(keep.sum())
    check_id_capacity(n_objects, out.dtype, job.where)
    rank = np.zeros(n, np.int64)
    rank[np.nonzero(keep)[0][order]] = np.arange(1, n_objects + 1)
    final = rank[mapping]
    for box in boxes:
        job.check()
        out[box.slices] = final[np.asarray(read_labels(box)).astype(np.int64)].astype(out.dtype)
        if prog is not None:
            prog.advance()
    return n_objects


def graph_solve_blockwise(task: FragmentTask, edge_stats, out, job: BlockJob, solver: str,
                          threshold: float = 0.5, min_size: int = 0, scheduler=None) -> int:
    """Multicut or GASP of a volume block by block (see the module docstring).

    Args:
        task: the per-block fragments (:class:`FragmentTask`; its ``scratch`` is the fragments' array).
        edge_stats: ``(read_labels, job) -> (pairs, affinity sums, counts)`` of the fragments' graph
            (:class:`BoundaryStats` or :class:`AffinityStats`).
        out: the label array written (uint32 or wider).
        job: shape, blocks, progress and stop.
        solver: ``"multicut"`` or ``"gasp"``.
        threshold: the boundary bias (fragments join where the mean boundary is below it).
        min_size: smaller objects are merged into their most attractive neighbour (:func:`absorb_small`);
            those touching none are set to 0.
        scheduler: where the per-block fragments run (:func:`~workbench.segmentation.tasks.map_blocks`).

    Returns:
        The number of objects (ids 1..N, canonical).
    """
    n_blocks = len(job.boxes())
    prog = job.reporter(3 * n_blocks)
    offsets, sizes = _solve_blocks(task, job, scheduler, prog)
    pairs, sums, counts = edge_stats(lambda b: task.scratch[b.slices], job)
    n_nodes = int(offsets[-1]) + 1
    p = 1.0 - sums / np.maximum(counts, 1)
    if solver == "multicut":
        labels = solve_multicut(pairs, multicut_costs(p, counts, threshold), n_nodes)
    else:
        labels = solve_gasp(pairs, p, counts, n_nodes, threshold)
    mapping = np.asarray(labels, np.int64) + 1
    mapping[0] = 0
    mapping = absorb_small(mapping, pairs, sums, counts, sizes, min_size)
    return relabel_canonical_blockwise(lambda b: task.scratch[b.slices], mapping, out, job, min_size, prog)


def mutex_watershed_blockwise(task: MutexTask, read_near: Reader, near_axes: Sequence[int], out, job: BlockJob,
                              min_size: int = 0, scheduler=None) -> int:
    """The mutex watershed of a volume block by block, stitched across block faces (module docstring).

    Args:
        task: the per-block solve (:class:`MutexTask`; its ``scratch`` holds the pieces).
        read_near: ``box -> (len(near_axes), *box.shape)`` nearest-neighbour affinities.
        near_axes: their axes.
        out / job / min_size / scheduler: as :func:`graph_solve_blockwise`.

    Returns:
        The number of objects (ids 1..N, canonical).
    """
    n_blocks = len(job.boxes())
    prog = job.reporter(3 * n_blocks)
    offsets, sizes = _solve_blocks(task, job, scheduler, prog)
    n_nodes = int(offsets[-1]) + 1
    pairs, sums, counts = region_graph_blockwise(lambda b: task.scratch[b.slices], read_near, job, tuple(near_axes))
    if n_blocks > 1 and len(pairs):
        mean = sums / np.maximum(counts, 1)
        block_of = np.searchsorted(offsets, pairs, side="left") - 1  # id k in (offsets[i], offsets[i + 1]]
        across = block_of[:, 0] != block_of[:, 1]
        attract = across & (mean > 0.5)
        mutex = ~attract
        # a block's own pieces stay apart (weight 2: before any attraction); weak contacts across faces repel
        mutex_w = np.where(across[mutex], 1.0 - mean[mutex], 2.0)
        labels = solve_mutex_graph(n_nodes, pairs[attract], mean[attract], pairs[mutex], mutex_w)
        mapping = np.asarray(labels, np.int64) + 1
    else:
        mapping = np.arange(n_nodes, dtype=np.int64)
    mapping[0] = 0
    mapping = absorb_small(mapping, pairs, sums, counts, sizes, min_size)
    return relabel_canonical_blockwise(lambda b: task.scratch[b.slices], mapping, out, job, min_size, prog)
