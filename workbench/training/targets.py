"""Training targets made from label patches, on torch tensors of shape (B, Z, Y, X).

Every target comes with a mask: 1 where the loss may look, 0 where the labels say nothing.

- ``semantic``: sparse labels 1..K become class indices 0..K-1; 0 (unlabelled) is ignored.
- ``boundaries``: from instance labels, a labelled voxel is ``boundary`` when an xy neighbour has another
  id (including 0), else ``interior``; 0 is ignored.
- ``affinities``: for each offset (dz, dy, dx), 1 where a voxel and the voxel at the offset carry the same
  id; valid only where both voxels are labelled (> 0) and inside the patch.
"""

from __future__ import annotations

IGNORE_INDEX = -100


def semantic_target(labels):
    """labels (B, Z, Y, X) ints -> (class indices with ``IGNORE_INDEX`` where unlabelled, float mask)."""
    import torch

    labels = labels.long()
    mask = labels > 0
    target = torch.where(mask, labels - 1, torch.full_like(labels, IGNORE_INDEX))
    return target, mask.float()


def _shifted_pairs(shape, offset):
    """Slices (a, b) so that ``x[a]`` and ``x[b]`` are voxel pairs ``v`` and ``v + offset`` on the last axes."""
    a, b = [], []
    for size, o in zip(shape, offset):
        o = int(o)
        if abs(o) >= size:
            return None
        if o >= 0:
            a.append(slice(0, size - o))
            b.append(slice(o, size))
        else:
            a.append(slice(-o, size))
            b.append(slice(0, size + o))
    return tuple(a), tuple(b)


def boundary_map(labels):
    """Bool (B, Z, Y, X): labelled voxels with an xy neighbour of another id."""
    import torch

    boundary = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    spatial = labels.shape[-3:]
    for offset in ((0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
        pairs = _shifted_pairs(spatial, offset)
        if pairs is None:
            continue
        a, b = pairs
        diff = labels[(Ellipsis, *a)] != labels[(Ellipsis, *b)]
        boundary[(Ellipsis, *a)] |= diff
    return boundary & (labels > 0)


def boundary_target(labels):
    """labels (B, Z, Y, X) instance ids -> (0 interior / 1 boundary, ``IGNORE_INDEX`` where 0; float mask)."""
    import torch

    labels = labels.long()
    mask = labels > 0
    target = boundary_map(labels).long()
    target = torch.where(mask, target, torch.full_like(target, IGNORE_INDEX))
    return target, mask.float()


def affinity_channel_name(offset) -> str:
    """The name of the output channel of an affinity ``offset`` (dz, dy, dx): ``affinity (dz, dy, dx)``."""
    return f"affinity {tuple(int(v) for v in offset)}"


def offsets_of_channels(channel_names) -> list[list[int]] | None:
    """The offsets of channels named by :func:`affinity_channel_name` (None unless every channel is one)."""
    import re

    out = []
    for name in channel_names:
        m = re.fullmatch(r"affinity \((-?\d+), (-?\d+), (-?\d+)\)", str(name))
        if not m:
            return None
        out.append([int(v) for v in m.groups()])
    return out or None


def affinity_target(labels, offsets):
    """labels (B, Z, Y, X) instance ids -> (affinities float (B, C, Z, Y, X), mask float (B, C, Z, Y, X))."""
    import torch

    labels = labels.long()
    shape = (labels.shape[0], len(offsets), *labels.shape[1:])
    aff = torch.zeros(shape, dtype=torch.float32, device=labels.device)
    mask = torch.zeros(shape, dtype=torch.float32, device=labels.device)
    for c, offset in enumerate(offsets):
        pairs = _shifted_pairs(labels.shape[-3:], offset)
        if pairs is None:
            continue  # offset longer than the patch: no valid pair
        a, b = pairs
        la, lb = labels[(Ellipsis, *a)], labels[(Ellipsis, *b)]
        both = (la > 0) & (lb > 0)
        aff[(slice(None), c, *a)] = ((la == lb) & both).float()
        mask[(slice(None), c, *a)] = both.float()
    return aff, mask
