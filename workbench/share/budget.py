"""The size budget of a share: which scale, which region and which layers fit in ``--max-mb``.

The drop order (:data:`DROP_ORDER`), applied until the estimate fits:

1. **downsample** y and x by 2, 4, ... (at most ``max_factor``; z is kept: EM sections are thick), while the
   downsampled slices keep at least ``min_side`` pixels on their long side;
2. **crop** a centred y-x region, then fewer z slices around the centre, down to ``min_side`` pixels and
   ``min_z`` slices;
3. **drop layers**, those with the highest ``drop_rank`` first (instances of the oldest run first, then the
   ground truth, then predictions of the oldest run first); the raw image is never dropped.

Sizes are estimates from voxel counts (uncompressed, a pyramid adds a third to images, slice pictures are
counted at one byte a pixel): compressed files are smaller, so the written share fits the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from workbench.errors import WorkbenchError

DROP_ORDER = ("downsample", "crop", "drop layers")
#: a pyramid of 2x levels in y, x adds at most a third to an image
PYRAMID_FACTOR = 4 / 3
#: bytes a slice picture pixel costs (JPEG of EM at quality 85 is about 0.4-0.8)
PICTURE_BYTES = 1.0


@dataclass(frozen=True)
class LayerSize:
    """One volume the share may hold.

    Attributes:
        name: the layer's name in the share (``raw``, ``truth``, ``<run>/prediction`` ...).
        itemsize: bytes per voxel as written.
        pyramid: written with a multiscale pyramid (images) or one level (labels).
        pictures: slice pictures are made of it (one per shown slice).
        drop_rank: 0 = never dropped; higher ranks are dropped first.
    """

    name: str
    itemsize: int
    pyramid: bool = False
    pictures: bool = True
    drop_rank: int = 1


@dataclass(frozen=True)
class SharePlan:
    """What goes into a share.

    Attributes:
        factor: y-x downsampling factor (1 = full resolution).
        crop: ``((z0, z1), (y0, y1), (x0, x1))`` in voxels of the full-resolution volume.
        layers: the names kept, in the order given.
        dropped: the names dropped to fit the budget.
        estimate: estimated bytes of everything (fixed bytes included).
        budget: the budget in bytes.
        steps: what was done to fit, in words (empty when the full volume fits).
    """

    factor: int
    crop: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    layers: tuple[str, ...]
    dropped: tuple[str, ...]
    estimate: int
    budget: int
    steps: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of the share's volumes (after crop and downsampling)."""
        (z0, z1), (y0, y1), (x0, x1) = self.crop
        f = self.factor
        return (z1 - z0, math.ceil((y1 - y0) / f), math.ceil((x1 - x0) / f))

    def to_json(self) -> dict:
        return {"factor": self.factor, "crop": [list(c) for c in self.crop], "shape": list(self.shape),
                "layers": list(self.layers), "dropped": list(self.dropped), "estimate_bytes": self.estimate,
                "budget_bytes": self.budget, "steps": list(self.steps), "drop_order": list(DROP_ORDER)}


def picture_grid(shape: Sequence[int], max_slices: int, max_side: int) -> tuple[int, int, int]:
    """``(n slices, height, width)`` of the slice pictures of volumes of ``shape`` (z, y, x)."""
    z, y, x = (int(s) for s in shape)
    step = max(1, math.ceil(max(y, x) / max_side))
    return min(z, max_slices), math.ceil(y / step), math.ceil(x / step)


def estimate_bytes(shape: Sequence[int], layers: Sequence[LayerSize], max_slices: int, max_side: int) -> int:
    """Estimated bytes of ``layers`` at ``shape`` (z, y, x), their slice pictures included."""
    voxels = math.prod(int(s) for s in shape)
    n, h, w = picture_grid(shape, max_slices, max_side)
    total = 0.0
    for layer in layers:
        total += voxels * layer.itemsize * (PYRAMID_FACTOR if layer.pyramid else 1.0)
        if layer.pictures:
            total += n * h * w * PICTURE_BYTES
    return int(math.ceil(total))


def plan_share(shape: Sequence[int], layers: Sequence[LayerSize], budget: int, *, fixed: int = 0,
               max_slices: int = 64, max_side: int = 512, min_side: int = 128, min_z: int = 8,
               max_factor: int = 8) -> SharePlan:
    """Choose scale, region and layers so that the estimate fits ``budget`` bytes (see the drop order above).

    Args:
        shape: (z, y, x) of the project's volume.
        layers: the candidate layers (the raw image must be one with ``drop_rank`` 0).
        budget: bytes allowed for everything.
        fixed: bytes that do not depend on the plan (viewer client, scripts, pages).
        max_slices, max_side: how many slice pictures per layer and their largest side.
        min_side, min_z: smallest y-x side and number of slices downsampling and cropping go down to.
        max_factor: largest y-x downsampling factor.

    Raises:
        WorkbenchError: not even the raw image at the smallest scale and region fits.
    """
    z, y, x = (int(s) for s in shape)
    avail = int(budget) - int(fixed)
    kept = list(layers)
    steps: list[str] = []

    def est(factor, crop):
        (z0, z1), (y0, y1), (x0, x1) = crop
        sub = (z1 - z0, math.ceil((y1 - y0) / factor), math.ceil((x1 - x0) / factor))
        return estimate_bytes(sub, kept, max_slices, max_side)

    crop = ((0, z), (0, y), (0, x))
    factor = 1
    while est(factor, crop) > avail and factor * 2 <= max_factor and max(y, x) / (factor * 2) >= min_side:
        factor *= 2
    if factor > 1:
        steps.append(f"downsampled y and x by {factor}")
    if est(factor, crop) > avail:
        crop = _crop_to_fit(shape, factor, lambda c: est(factor, c) <= avail, min_side, min_z)
        (z0, z1), (y0, y1), (x0, x1) = crop
        steps.append(f"cropped to z {z0}:{z1}, y {y0}:{y1}, x {x0}:{x1}")
    dropped: list[str] = []
    for layer in sorted((lay for lay in layers if lay.drop_rank > 0), key=lambda lay: -lay.drop_rank):
        if est(factor, crop) <= avail:
            break
        kept.remove(layer)
        dropped.append(layer.name)
    if dropped:
        steps.append("dropped " + ", ".join(dropped))
    total = est(factor, crop) + int(fixed)
    if total > budget:
        raise WorkbenchError(f"--max-mb {budget / 1e6:.0f} is too small for this project: the smallest share "
                             f"needs about {math.ceil(total / 1e6)} MB")
    return SharePlan(factor, crop, tuple(lay.name for lay in kept), tuple(dropped), total, int(budget), tuple(steps))


def _crop_to_fit(shape, factor, fits, min_side, min_z):
    """The largest centred crop (y-x first, then z) that ``fits``, or the smallest allowed one."""
    z, y, x = (int(s) for s in shape)

    def centred(n, keep):
        keep = max(1, min(n, keep))
        start = (n - keep) // 2
        return (start, start + keep)

    low_side = min(max(y, x), min_side * factor)
    side = max(y, x)
    # y-x: halve the side until it fits or reaches the smallest, then refine by bisection
    lo, hi = low_side, side
    if fits(((0, z), centred(y, lo), centred(x, lo))):
        while hi - lo > factor:
            mid = (lo + hi) // 2
            if fits(((0, z), centred(y, mid), centred(x, mid))):
                lo = mid
            else:
                hi = mid
        return ((0, z), centred(y, lo), centred(x, lo))
    yx = (centred(y, low_side), centred(x, low_side))
    lo, hi = min(z, min_z), z
    if not fits((centred(z, lo), *yx)):
        return (centred(z, lo), *yx)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits((centred(z, mid), *yx)):
            lo = mid
        else:
            hi = mid
    return (centred(z, lo), *yx)
