"""Instance segmentation of volumes larger than memory, block by block, with ids consistent across blocks.

Connected components (dask-image style): each block is labelled on its own with ids offset by the
labels of the blocks before it; pairs of labels touching across block faces (both foreground, face
neighbours) are joined with a union-find (``scipy.sparse.csgraph.connected_components``); a final pass
relabels every block to consecutive global ids and drops objects smaller than ``min_size``. The result
equals the in-memory :func:`~workbench.segmentation.connected_components` up to the numbering.

Seeded watershed: seeds are interior components found blockwise as above (so a seed crossing a block
border has one id), then every block is flooded with its halo (seeds of the halo included) and only
its core kept. Objects thus keep one id across block borders; a voxel whose seed lies farther away than
the halo may be given to a nearer seed (grow the halo if objects are larger). Weak boundaries are then
merged (``merge_threshold``) on the region graph of the flooded objects, as affinity fragments are below.

Affinity agglomeration: fragments are the blockwise seeded watershed of ``1 - min affinity`` (as above),
the region graph (touching fragment pairs, sums and counts of the affinities between them) is accumulated
block by block, each voxel edge counted once in the block of its voxel; the greedy merging then runs on the
graph, which holds one entry per pair of touching fragments, not per voxel; a last pass relabels each block.
With the same fragments this is exactly the in-memory result.

Per section (``per_section=True``): nothing connects across z; each section is labelled and flooded on
its own (serial-section data segmented by a 2D model), ids stay unique over the whole volume.

Memory: one block (plus halo) at a time, plus one integer per provisional label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.progress import Progress, as_progress
from workbench.segmentation.affinity import boundaries_from_affinities
from workbench.segmentation.components import structure
from workbench.segmentation.graph import agglomerate, boundary_edge_affinities

Reader = Callable[[Box], np.ndarray]


@dataclass(frozen=True)
class BlockJob:
    """One blockwise pass: the volume's shape, the blocks it is walked in, and who hears about it.

    Attributes:
        shape: volume shape (z, y, x).
        block_shape: block size (ideally the chunks of the arrays written).
        progress: None, a tqdm-like object, a ``callable(done, total)`` or a :class:`~workbench.progress.Progress`
            (see :func:`~workbench.progress.as_progress`); a pass made of several passes shares one
            ``Progress`` with them, whose total the outer pass sets.
        should_stop: polled before every block; True raises ``WorkbenchError("stopped before completion")``.
        where: the path that error names (the output being written), if any.
    """

    shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    progress: Any = field(default=None, compare=False, repr=False)
    should_stop: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    where: Any = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "block_shape", tuple(int(b) for b in self.block_shape))

    @property
    def full(self) -> Box:
        """The whole volume."""
        return Box.from_shape(self.shape)

    def boxes(self) -> list[Box]:
        """The blocks, in raster order (edge blocks cut to the volume)."""
        return [box for _, box in self.full.blocks(self.block_shape)]

    def reporter(self, total: int) -> Progress:
        """The progress of this pass (``total`` steps unless an outer pass set the total already)."""
        return as_progress(self.progress, total=total)

    def with_progress(self, progress: Any) -> BlockJob:
        """The same job reporting to ``progress`` (None: silent)."""
        return replace(self, progress=progress)

    def check(self) -> None:
        """Raise ``WorkbenchError`` when ``should_stop`` says so."""
        if self.should_stop is not None and self.should_stop():
            raise WorkbenchError("stopped before completion", self.where)


@dataclass(frozen=True)
class WatershedBlockParams:
    """Settings of :func:`watershed_blockwise`.

    Attributes:
        threshold: seeds are interior components where ``boundary < threshold``.
        halo: context (z, y, x) flooded around each block.
        min_seed_size: smaller seed components are dropped.
        mask_threshold: if set, voxels with ``boundary >= mask_threshold`` stay 0 (background).
        per_section: seeds and flooding within z sections only (the z halo is then not needed).
        merge_threshold: if set, touching objects are then merged while the mean boundary along their
            contact is below it (:func:`~workbench.segmentation.watershed.merge_weak_boundaries`, on the
            region graph accumulated block by block); ``out`` then holds representative ids.
    """

    threshold: float = 0.5
    halo: tuple[int, int, int] = (8, 32, 32)
    min_seed_size: int = 1
    mask_threshold: float | None = None
    per_section: bool = False
    merge_threshold: float | None = None


@dataclass(frozen=True)
class AgglomerateBlockParams:
    """Settings of :func:`agglomerate_blockwise`.

    Attributes:
        axes: the spatial axis of each affinity channel; without 0 (a 2D model) sections never join.
        threshold: merge while the mean affinity is above it.
        seed_threshold: fragment seeds where ``1 - min affinity < seed_threshold``.
        halo: the fragments' flooding context (z, y, x).
    """

    axes: tuple[int, ...] = (0, 1, 2)
    threshold: float = 0.5
    seed_threshold: float = 0.3
    halo: tuple[int, int, int] = (8, 32, 32)


def neighbourhood(per_section: bool = False) -> np.ndarray:
    """Face neighbours (3 x 3 x 3): all six, or only the four in the section when ``per_section``."""
    st = structure(1, 3)
    if per_section:
        st[0] = st[2] = False
    return st


def _face_pairs(out, box: Box, shape: Sequence[int], axes=(0, 1, 2)) -> list[np.ndarray]:
    """Label pairs touching across the high faces of ``box`` along ``axes`` (read back from ``out``)."""
    pairs = []
    for axis in axes:
        if box.stop[axis] >= shape[axis]:
            continue
        here = list(box.slices)
        there = list(box.slices)
        here[axis] = slice(box.stop[axis] - 1, box.stop[axis])
        there[axis] = slice(box.stop[axis], box.stop[axis] + 1)
        a = np.asarray(out[tuple(here)]).ravel()
        b = np.asarray(out[tuple(there)]).ravel()
        keep = (a != 0) & (b != 0)
        if keep.any():
            pairs.append(np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0))
    return pairs


def _join_labels(pairs: list[np.ndarray], sizes_parts: list[np.ndarray], n_prov: int,
                 min_size: int) -> tuple[np.ndarray, int]:
    """Union of provisional labels joined by ``pairs``: (map provisional -> final id, number of objects)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as graph_components

    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n_prov, n_prov))
    _, component = graph_components(graph, directed=False)
    sizes = np.concatenate([[0], *sizes_parts]).astype(np.int64)
    comp_sizes = np.bincount(component, weights=sizes)
    keep = comp_sizes >= max(1, min_size)
    keep[component[0]] = False  # the background's component
    new_ids = np.zeros(len(comp_sizes), np.int64)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1)
    mapping = new_ids[component]
    mapping[0] = 0
    return mapping, int(keep.sum())


def label_blockwise(read_mask: Reader, out, job: BlockJob, *, min_size: int = 0, per_section: bool = False) -> int:
    """Connected components (face connectivity) of a mask given block by block.

    Args:
        read_mask: ``box -> bool array`` of the mask in that box.
        out: writable array-like (numpy or zarr, unsigned integer dtype) of ``job.shape`` receiving the labels.
        job: shape, blocks, progress (over the three passes' blocks) and stop.
        min_size: objects with fewer voxels are removed.
        per_section: connect only within z sections.

    Returns:
        The number of objects (ids are 1..N).
    """
    from scipy import ndimage as ndi

    boxes = job.boxes()
    prog = job.reporter(3 * len(boxes))
    st = neighbourhood(per_section)
    offset = 0
    sizes_parts = []
    for box in boxes:  # pass 1: label each block with an offset
        job.check()
        labels, n = ndi.label(read_mask(box), structure=st)
        sizes_parts.append(np.bincount(labels.ravel(), minlength=n + 1)[1:])
        labels = labels.astype(np.int64)
        labels[labels > 0] += offset
        out[box.slices] = labels
        offset += n
        prog.advance()
    pairs = []
    for box in boxes:  # pass 2: union labels touching across faces
        job.check()
        pairs.extend(_face_pairs(out, box, job.shape, (1, 2) if per_section else (0, 1, 2)))
        prog.advance()
    mapping, n_objects = _join_labels(pairs, sizes_parts, offset + 1, min_size)
    for box in boxes:  # pass 3: relabel
        job.check()
        out[box.slices] = mapping[np.asarray(out[box.slices]).astype(np.int64)].astype(out.dtype)
        prog.advance()
    return n_objects


def watershed_blockwise(read_boundary: Reader, out, seeds_out, job: BlockJob,
                        params: WatershedBlockParams | None = None) -> int:
    """Seeded watershed block by block with global seeds (see the module docstring).

    Args:
        read_boundary: ``box -> float boundary probability`` in that box.
        out: writable array-like of ``job.shape`` for the labels.
        seeds_out: writable array-like (same shape and dtype) for the intermediate seeds.
        job: shape, blocks, progress (flooding, then merging) and stop.
        params: thresholds, halo, per-section and merging (:class:`WatershedBlockParams`).

    Returns:
        The number of seeds (ids are 1..N; an id may not appear if its seed region was flooded away).
    """
    from skimage.segmentation import watershed

    p = params or WatershedBlockParams()
    n_seeds = label_blockwise(lambda b: read_boundary(b) < p.threshold, seeds_out, job.with_progress(None),
                              min_size=p.min_seed_size, per_section=p.per_section)
    halo = (0, *tuple(p.halo)[1:]) if p.per_section else tuple(p.halo)
    full = job.full
    boxes = job.boxes()
    prog = job.reporter(len(boxes) * (1 if p.merge_threshold is None else 2))
    for core in boxes:
        job.check()
        read = core.grow(halo).intersect(full)
        boundary = np.asarray(read_boundary(read), dtype=np.float32)
        seeds = np.asarray(seeds_out[read.slices])
        mask = None if p.mask_threshold is None else boundary < p.mask_threshold
        labels = watershed(boundary, markers=seeds.astype(np.int64), mask=mask,
                           connectivity=neighbourhood(p.per_section))
        out[core.slices] = labels[core.relative_to(read)].astype(out.dtype)
        prog.advance()
    if p.merge_threshold is not None:
        _merge_weak_boundaries_blockwise(read_boundary, out, job.with_progress(prog), p)
    return n_seeds


def _merge_weak_boundaries_blockwise(read_boundary: Reader, out, job: BlockJob, p: WatershedBlockParams) -> int:
    """:func:`~workbench.segmentation.watershed.merge_weak_boundaries` of ``out`` in place, blockwise."""
    axes = (1, 2) if p.per_section else (0, 1, 2)

    def read_affs(box: Box) -> np.ndarray:
        # an edge's affinity needs the boundary of the voxel before it: one voxel more on the low sides
        start = tuple(max(0, s - 1) for s in box.start)
        grown = Box(start, tuple(b - a for a, b in zip(start, box.stop)))
        affs = boundary_edge_affinities(np.asarray(read_boundary(grown), np.float32), axes)
        return affs[(slice(None), *box.relative_to(grown))]

    return merge_blockwise(lambda b: out[b.slices], read_affs, out, job, axes, 1.0 - p.merge_threshold)


def region_graph_blockwise(read_labels: Reader, read_affs: Reader, job: BlockJob, axes: Sequence[int]):
    """The region adjacency graph (:func:`~workbench.segmentation.graph.region_graph`) of a label volume,
    block by block: every voxel edge ``(v, v - e_a)`` is counted once, in the block holding ``v``.
    Returns ``(pairs (E, 2) with a < b, affinity sums, counts)``.

    Args:
        read_labels: ``box -> labels`` (fragments, global ids).
        read_affs: ``box -> (len(axes), *box.shape)`` affinities; channel ``i`` links ``v`` and ``v - e[axes[i]]``.
        job: shape, blocks and stop (no progress: the callers count their own passes).
    """
    keys_parts, w_parts = [], []
    n_max = 0
    for core in job.boxes():
        job.check()
        start = tuple(max(0, s - 1) for s in core.start)  # one voxel of context on the low sides
        region = Box(start, tuple(b - a for a, b in zip(start, core.stop)))
        labels = np.asarray(read_labels(region)).astype(np.int64)
        affs = np.asarray(read_affs(core), dtype=np.float64)
        n_max = max(n_max, int(labels.max(initial=0)))
        inner = core.relative_to(region)
        for c, a in enumerate(axes):
            here = list(inner)
            if core.start[a] == 0:  # the first row has no predecessor
                here[a] = slice(inner[a].start + 1, inner[a].stop)
            there = list(here)
            there[a] = slice(here[a].start - 1, here[a].stop - 1)
            u = labels[tuple(here)].ravel()
            v = labels[tuple(there)].ravel()
            w_sl = [slice(None)] * 3
            if core.start[a] == 0:
                w_sl[a] = slice(1, None)
            w = affs[c][tuple(w_sl)].ravel()
            keep = (u != v) & (u != 0) & (v != 0)
            keys_parts.append(np.stack([np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])], axis=1))
            w_parts.append(w[keep])
    if not keys_parts or not sum(len(k) for k in keys_parts):
        return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0)
    pairs_all = np.concatenate(keys_parts)
    n = n_max + 1
    uniq, inverse = np.unique(pairs_all[:, 0] * n + pairs_all[:, 1], return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(w_parts))
    counts = np.bincount(inverse).astype(np.float64)
    return np.stack([uniq // n, uniq % n], axis=1), sums, counts


def agglomerate_blockwise(read_affs: Reader, out, fragments_out, job: BlockJob,
                          params: AgglomerateBlockParams | None = None) -> int:
    """Affinity agglomeration (:func:`~workbench.segmentation.affinity.affinity_agglomeration`) of a volume
    larger than memory: fragments by the blockwise seeded watershed of ``1 - min affinity``, the region
    graph accumulated block by block, greedy mean-affinity merging on that graph (in memory: one entry per
    pair of touching fragments), then every block relabelled. Without a z axis in ``params.axes`` (a 2D
    model) nothing connects across sections.

    Args:
        read_affs: ``box -> (len(axes), *box.shape)`` float affinities.
        out / fragments_out: writable label arrays of ``job.shape`` (the result / the fragments).
        job: shape, blocks, progress (fragments, then merging) and stop.
        params: axes, thresholds and halo (:class:`AgglomerateBlockParams`).

    Returns:
        The number of objects before relabelling (ids in ``out`` are fragment-representative ids).
    """
    p = params or AgglomerateBlockParams()
    axes = tuple(int(a) for a in p.axes)
    full = job.full
    per_section = 0 not in axes

    def read_boundary(box: Box) -> np.ndarray:
        # the boundary of a voxel depends on the edges to its neighbours: read one voxel more each side
        grown = box.grow((0 if per_section else 1, 1, 1)).intersect(full)
        b = boundaries_from_affinities(np.asarray(read_affs(grown), np.float32), axes)
        return b[box.relative_to(grown)]

    shared = job.with_progress(job.reporter(2 * len(job.boxes())))
    # ``out`` holds the seeds until it receives the result
    watershed_blockwise(read_boundary, fragments_out, out, shared,
                        WatershedBlockParams(threshold=p.seed_threshold, halo=p.halo, per_section=per_section))
    return merge_blockwise(lambda b: fragments_out[b.slices], read_affs, out, shared, axes, p.threshold)


def merge_blockwise(read_labels: Reader, read_affs: Reader, out, job: BlockJob, axes: Sequence[int],
                    threshold: float) -> int:
    """Greedy mean-affinity merging of a label volume larger than memory: the region graph accumulated block
    by block (:func:`region_graph_blockwise`), merged in memory while the mean affinity is above
    ``threshold`` (:func:`~workbench.segmentation.graph.agglomerate`), then every block of ``out`` (may be
    the labels' own array) written relabelled.

    Returns:
        The number of objects left (ids are representative input ids, not consecutive).
    """
    pairs, sums, counts = region_graph_blockwise(read_labels, read_affs, job, axes)
    boxes = job.boxes()
    n_nodes = 1
    for box in boxes:
        n_nodes = max(n_nodes, int(np.asarray(read_labels(box)).max(initial=0)) + 1)
    mapping = agglomerate(pairs, sums, counts, n_nodes, threshold)
    mapping[0] = 0
    prog = job.reporter(len(boxes))
    for box in boxes:
        job.check()
        labels = np.asarray(read_labels(box)).astype(np.int64)
        out[box.slices] = mapping[labels].astype(out.dtype)
        prog.advance()
    return int(len(np.unique(mapping[1:])))


def remove_small_blockwise(out, job: BlockJob, min_size: int) -> None:
    """Set objects of ``out`` with fewer than ``min_size`` voxels to 0, in place, block by block."""
    if min_size <= 1:
        return
    boxes = job.boxes()
    n = 0
    for box in boxes:
        job.check()
        n = max(n, int(np.asarray(out[box.slices]).max(initial=0)))
    sizes = np.zeros(n + 1, np.int64)
    for box in boxes:
        job.check()
        sizes += np.bincount(np.asarray(out[box.slices]).ravel().astype(np.int64), minlength=n + 1)
    mapping = np.arange(n + 1)
    mapping[sizes < min_size] = 0
    for box in boxes:
        job.check()
        out[box.slices] = mapping[np.asarray(out[box.slices]).astype(np.int64)].astype(out.dtype)
