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

import numpy as np

from workbench.geometry import Box
from workbench.segmentation.components import structure


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


def label_blockwise(
    read_mask: Callable[[Box], np.ndarray],
    shape: Sequence[int],
    out,
    block_shape: Sequence[int],
    min_size: int = 0,
    progress=None,
    per_section: bool = False,
) -> int:
    """Connected components (face connectivity) of a mask given block by block.

    Args:
        read_mask: ``box -> bool array`` of the mask in that box.
        shape: volume shape (z, y, x).
        out: writable array-like (numpy or zarr, unsigned integer dtype) receiving the labels.
        block_shape: block size (ideally the chunks of ``out``).
        min_size: objects with fewer voxels are removed.
        progress: optional ``callable(done, total)`` over the three passes' blocks.
        per_section: connect only within z sections.

    Returns:
        The number of objects (ids are 1..N).
    """
    from scipy import ndimage as ndi
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as graph_components

    shape = tuple(int(s) for s in shape)
    blocks = list(Box.from_shape(shape).blocks(block_shape))
    total_steps = 3 * len(blocks)
    step = 0
    st = neighbourhood(per_section)
    offset = 0
    sizes_parts = []
    # pass 1: label each block with an offset
    for _, box in blocks:
        labels, n = ndi.label(read_mask(box), structure=st)
        sizes_parts.append(np.bincount(labels.ravel(), minlength=n + 1)[1:])
        labels = labels.astype(np.int64)
        labels[labels > 0] += offset
        out[box.slices] = labels
        offset += n
        step += 1
        if progress:
            progress(step, total_steps)
    n_prov = offset + 1
    # pass 2: union labels touching across faces
    pairs = []
    for _, box in blocks:
        pairs.extend(_face_pairs(out, box, shape, (1, 2) if per_section else (0, 1, 2)))
        step += 1
        if progress:
            progress(step, total_steps)
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
    # pass 3: relabel
    for _, box in blocks:
        out[box.slices] = mapping[np.asarray(out[box.slices]).astype(np.int64)].astype(out.dtype)
        step += 1
        if progress:
            progress(step, total_steps)
    return int(keep.sum())


def watershed_blockwise(
    read_boundary: Callable[[Box], np.ndarray],
    shape: Sequence[int],
    out,
    seeds_out,
    block_shape: Sequence[int],
    threshold: float = 0.5,
    halo: Sequence[int] = (8, 32, 32),
    min_seed_size: int = 1,
    mask_threshold: float | None = None,
    progress=None,
    per_section: bool = False,
    merge_threshold: float | None = None,
) -> int:
    """Seeded watershed block by block with global seeds (see the module docstring).

    Args:
        read_boundary: ``box -> float boundary probability`` in that box.
        shape: volume shape.
        out: writable array-like for the labels.
        seeds_out: writable array-like (same shape and dtype) for the intermediate seeds.
        block_shape: block size.
        threshold: seeds are interior components where ``boundary < threshold``.
        halo: context flooded around each block.
        min_seed_size: smaller seed components are dropped.
        mask_threshold: if set, voxels with ``boundary >= mask_threshold`` stay 0 (background).
        per_section: seeds and flooding within z sections only (the z halo is then not needed).
        merge_threshold: if set, touching objects are then merged while the mean boundary along their
            contact is below it (:func:`~workbench.segmentation.watershed.merge_weak_boundaries`, on the
            region graph accumulated block by block); ``out`` then holds representative ids.

    Returns:
        The number of seeds (ids are 1..N; an id may not appear if its seed region was flooded away).
    """
    from skimage.segmentation import watershed

    shape = tuple(int(s) for s in shape)
    n_seeds = label_blockwise(lambda b: read_boundary(b) < threshold, shape, seeds_out, block_shape,
                              min_size=min_seed_size, per_section=per_section)
    if per_section:
        halo = (0, *tuple(halo)[1:])
    full = Box.from_shape(shape)
    blocks = list(full.blocks(block_shape))
    total = len(blocks) * (1 if merge_threshold is None else 2)
    for i, (_, core) in enumerate(blocks):
        read = core.grow(tuple(halo)).intersect(full)
        boundary = np.asarray(read_boundary(read), dtype=np.float32)
        seeds = np.asarray(seeds_out[read.slices])
        mask = None if mask_threshold is None else boundary < mask_threshold
        labels = watershed(boundary, markers=seeds.astype(np.int64), mask=mask,
                           connectivity=neighbourhood(per_section))
        out[core.slices] = labels[core.relative_to(read)].astype(out.dtype)
        if progress:
            progress(i + 1, total)
    if merge_threshold is not None:
        from workbench.segmentation.watershed import boundary_edge_affinities

        axes = (1, 2) if per_section else (0, 1, 2)

        def read_affs(box: Box) -> np.ndarray:
            # an edge's affinity needs the boundary of the voxel before it: one voxel more on the low sides
            start = tuple(max(0, s - 1) for s in box.start)
            grown = Box(start, tuple(b - a for a, b in zip(start, box.stop)))
            affs = boundary_edge_affinities(np.asarray(read_boundary(grown), np.float32), axes)
            return affs[(slice(None), *box.relative_to(grown))]

        merge_blockwise(lambda b: out[b.slices], read_affs, shape, out, block_shape, axes, 1.0 - merge_threshold,
                        progress=(lambda done, _n: progress(len(blocks) + done, total)) if progress else None)
    return n_seeds


def region_graph_blockwise(read_labels: Callable[[Box], np.ndarray], read_affs: Callable[[Box], np.ndarray],
                           shape: Sequence[int], block_shape: Sequence[int], axes: Sequence[int]):
    """The region adjacency graph of a label volume, block by block: every voxel edge ``(v, v - e_a)`` is
    counted once, in the block holding ``v``. Returns ``(pairs (E, 2) with a < b, affinity sums, counts)``.

    Args:
        read_labels: ``box -> labels`` (fragments, global ids).
        read_affs: ``box -> (len(axes), *box.shape)`` affinities; channel ``i`` links ``v`` and ``v - e[axes[i]]``.
    """
    shape = tuple(int(s) for s in shape)
    keys_parts, w_parts = [], []
    n_max = 0
    for _, core in Box.from_shape(shape).blocks(block_shape):
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


def agglomerate_blockwise(
    read_affs: Callable[[Box], np.ndarray],
    shape: Sequence[int],
    out,
    fragments_out,
    block_shape: Sequence[int],
    axes: Sequence[int] = (0, 1, 2),
    threshold: float = 0.5,
    seed_threshold: float = 0.3,
    halo: Sequence[int] = (8, 32, 32),
    progress=None,
) -> int:
    """Affinity agglomeration (:func:`~workbench.segmentation.affinity.affinity_agglomeration`) of a volume
    larger than memory: fragments by the blockwise seeded watershed of ``1 - min affinity``, the region
    graph accumulated block by block, greedy mean-affinity merging on that graph (in memory: one entry per
    pair of touching fragments), then every block relabelled. Without a z axis in ``axes`` (a 2D model)
    nothing connects across sections.

    Args:
        read_affs: ``box -> (len(axes), *box.shape)`` float affinities.
        out / fragments_out: writable label arrays of ``shape`` (the result / the fragments).
        block_shape: block size; ``halo``: the fragments' flooding context.

    Returns:
        The number of objects before relabelling (ids in ``out`` are fragment-representative ids).
    """
    from workbench.segmentation.affinity import boundaries_from_affinities

    shape = tuple(int(s) for s in shape)
    axes = tuple(int(a) for a in axes)
    full = Box.from_shape(shape)
    per_section = 0 not in axes

    def read_boundary(box: Box) -> np.ndarray:
        # the boundary of a voxel depends on the edges to its neighbours: read one voxel more each side
        grown = box.grow((0 if per_section else 1, 1, 1)).intersect(full)
        b = boundaries_from_affinities(np.asarray(read_affs(grown), np.float32), axes)
        return b[box.relative_to(grown)]

    blocks = list(full.blocks(block_shape))
    total = 2 * len(blocks)
    # ``out`` holds the seeds until it receives the result
    watershed_blockwise(read_boundary, shape, fragments_out, out, block_shape, threshold=seed_threshold,
                        halo=halo, per_section=per_section,
                        progress=(lambda done, _n: progress(done, total)) if progress else None)
    return merge_blockwise(lambda b: fragments_out[b.slices], read_affs, shape, out, block_shape, axes, threshold,
                           progress=(lambda done, _n: progress(len(blocks) + done, total)) if progress else None)


def merge_blockwise(read_labels: Callable[[Box], np.ndarray], read_affs: Callable[[Box], np.ndarray],
                    shape: Sequence[int], out, block_shape: Sequence[int], axes: Sequence[int], threshold: float,
                    progress=None) -> int:
    """Greedy mean-affinity merging of a label volume larger than memory: the region graph accumulated block
    by block (:func:`region_graph_blockwise`), merged in memory while the mean affinity is above
    ``threshold``, then every block of ``out`` (may be the labels' own array) written relabelled.

    Returns:
        The number of objects left (ids are representative input ids, not consecutive).
    """
    from workbench.segmentation.affinity import agglomerate

    shape = tuple(int(s) for s in shape)
    pairs, sums, counts = region_graph_blockwise(read_labels, read_affs, shape, block_shape, axes)
    blocks = list(Box.from_shape(shape).blocks(block_shape))
    n_nodes = 1
    for _, box in blocks:
        n_nodes = max(n_nodes, int(np.asarray(read_labels(box)).max(initial=0)) + 1)
    mapping = agglomerate(pairs, sums, counts, n_nodes, threshold)
    mapping[0] = 0
    for i, (_, box) in enumerate(blocks):
        labels = np.asarray(read_labels(box)).astype(np.int64)
        out[box.slices] = mapping[labels].astype(out.dtype)
        if progress:
            progress(i + 1, len(blocks))
    return int(len(np.unique(mapping[1:])))
