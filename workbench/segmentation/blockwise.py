"""Instance segmentation of volumes larger than memory, block by block, with ids consistent across blocks.

Connected components (dask-image style): each block is labelled on its own with ids offset by the
labels of the blocks before it; pairs of labels touching across block faces (both foreground, face
neighbours) are joined with a union-find (``scipy.sparse.csgraph.connected_components``); a final pass
relabels every block to consecutive global ids and drops objects smaller than ``min_size``. The result
equals the in-memory :func:`~workbench.segmentation.connected_components` up to the numbering.

Seeded watershed: seeds are interior components found blockwise as above (so a seed crossing a block
border has one id), then every block is flooded with its halo (seeds of the halo included) and only
its core kept. Objects thus keep one id across block borders; a voxel whose seed lies farther away than
the halo may be given to a nearer seed (grow the halo if objects are larger).

Memory: one block (plus halo) at a time, plus one integer per provisional label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from workbench.geometry import Box
from workbench.segmentation.components import structure


def _face_pairs(out, box: Box, shape: Sequence[int]) -> list[np.ndarray]:
    """Label pairs touching across the high faces of ``box`` (read back from ``out``)."""
    pairs = []
    for axis in range(3):
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
) -> int:
    """Connected components (face connectivity) of a mask given block by block.

    Args:
        read_mask: ``box -> bool array`` of the mask in that box.
        shape: volume shape (z, y, x).
        out: writable array-like (numpy or zarr, unsigned integer dtype) receiving the labels.
        block_shape: block size (ideally the chunks of ``out``).
        min_size: objects with fewer voxels are removed.
        progress: optional ``callable(done, total)`` over the three passes' blocks.

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
    st = structure(1, 3)
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
        pairs.extend(_face_pairs(out, box, shape))
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

    Returns:
        The number of seeds (ids are 1..N; an id may not appear if its seed region was flooded away).
    """
    from skimage.segmentation import watershed

    shape = tuple(int(s) for s in shape)
    n_seeds = label_blockwise(lambda b: read_boundary(b) < threshold, shape, seeds_out, block_shape,
                              min_size=min_seed_size)
    full = Box.from_shape(shape)
    blocks = list(full.blocks(block_shape))
    for i, (_, core) in enumerate(blocks):
        read = core.grow(tuple(halo)).intersect(full)
        boundary = np.asarray(read_boundary(read), dtype=np.float32)
        seeds = np.asarray(seeds_out[read.slices])
        mask = None if mask_threshold is None else boundary < mask_threshold
        labels = watershed(boundary, markers=seeds.astype(np.int64), mask=mask)
        out[core.slices] = labels[core.relative_to(read)].astype(out.dtype)
        if progress:
            progress(i + 1, len(blocks))
    return n_seeds
