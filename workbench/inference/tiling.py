"""Predict one region with a :class:`~workbench.models.predictor.Predictor`: tiles, cross-fade blending, TTA.

How blocks, halos and blending fit together
-------------------------------------------
A *block* is one output chunk (its *core*). It is read grown by the predictor's halo (clipped at the
volume border, never padded, so a block at the border sees exactly what a whole-volume prediction sees),
its start moved down onto the predictor's down-sampling grid (``divisor``: pooling windows then fall where
they fall in a whole-volume call), predicted, and only its core is written. Core voxels are at least
``halo`` voxels away from the read edge, so a predictor whose receptive field fits in the halo gives the
same values as a whole-volume prediction: blocks are independent and their writes never overlap.

Inside the read region the predictor runs on *tiles* (at most ``tile_shape`` voxels, to bound the
network's memory). Neighbouring tiles overlap by ``2 * halo``; along an inner tile edge the first
``halo / 2`` voxels get weight 0 (too little context), the next ``halo`` voxels a cos² ramp whose
complement is the neighbour's ramp (weights sum to one), the rest weight 1. Region edges (block read
edges or volume borders) are never ramped. A read region that fits in one tile is predicted in one call
and needs no blending at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from workbench.geometry import Box, aligned_tiles
from workbench.models.predictor import Predictor, as_predictor

#: Yx rotations/flips of test-time augmentation: (number of 90° rotations, flip x).
TTA_TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


def effective_halo(predictor: Predictor) -> tuple[int, int, int]:
    """The predictor's halo (z, y, x); z is 0 for 2D predictors (applied slice by slice)."""
    predictor = as_predictor(predictor)
    halo = tuple(int(h) for h in predictor.halo)
    if len(halo) == 2:
        halo = (0, *halo)
    if int(predictor.spatial_dims) == 2:
        halo = (0, halo[1], halo[2])
    return halo  # type: ignore[return-value]


def effective_divisor(predictor: Predictor) -> tuple[int, int, int]:
    """The predictor's down-sampling factor (z, y, x) (``divisor``; z 1 for 2D predictors)."""
    predictor = as_predictor(predictor)
    div = tuple(max(1, int(d)) for d in predictor.divisor)
    if len(div) == 2:
        div = (1, *div)
    if int(predictor.spatial_dims) == 2:
        div = (1, div[1], div[2])
    return div  # type: ignore[return-value]


def ramp_weights(length: int, halo: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1D blending weights of one tile (see the module docstring)."""
    w = np.ones(length, dtype=np.float32)
    if halo <= 0:
        return w
    pos = np.arange(length, dtype=np.float64) + 0.5
    t = np.clip((pos - halo / 2) / halo, 0.0, 1.0)
    up = np.sin(0.5 * np.pi * t) ** 2
    if ramp_start:
        w *= up.astype(np.float32)
    if ramp_end:
        w *= up[::-1].astype(np.float32)
    return w


#: Probabilities are clipped to [EPS, 1 - EPS] before views are combined in log space.
TTA_EPS = 1e-6


def combine_views(acc: np.ndarray, n: int, activation: str | None) -> np.ndarray:
    """Finish the combination of ``n`` test-time-augmentation views accumulated by :func:`_view_term`.

    ``softmax`` outputs are combined as the mean of their logits (the normalised geometric mean of the
    probabilities), ``sigmoid`` outputs as the sigmoid of the mean logit, other outputs as the plain mean.
    Averaging logits keeps a boundary that some views see confidently: the plain mean of probabilities
    blurs it towards the views that miss it (measured in ``benchmarks/bench_sparse.py``).
    """
    mean = acc / n
    if activation == "softmax":
        mean -= mean.max(axis=0, keepdims=True)
        np.exp(mean, out=mean)
        mean /= mean.sum(axis=0, keepdims=True)
    elif activation == "sigmoid":
        mean = 1.0 / (1.0 + np.exp(-mean))
    return mean.astype(np.float32, copy=False)


def _view_term(y: np.ndarray, activation: str | None) -> np.ndarray:
    """What one view adds to the accumulator: log-probabilities, logits or the values themselves."""
    if activation == "softmax":
        return np.log(np.clip(y, TTA_EPS, 1.0))
    if activation == "sigmoid":
        y = np.clip(y, TTA_EPS, 1.0 - TTA_EPS)
        return np.log(y) - np.log1p(-y)
    return y


def tta_views(predictor: Predictor, block: np.ndarray,
              transforms: Sequence[tuple[int, bool]] = TTA_TRANSFORMS) -> Iterator[np.ndarray]:
    """The predictor's outputs on rotated/flipped copies of ``block``, each turned back onto ``block``'s grid.

    Args:
        predictor: a :class:`~workbench.models.predictor.Predictor`.
        block: raw (z, y, x).
        transforms: (number of 90° yx rotations, flip x) per view (default: the 8 of :data:`TTA_TRANSFORMS`).

    Yields:
        float32 (out_channels, z, y, x), one array per transform.
    """
    for k, flip in transforms:
        x = np.rot90(block, k, axes=(1, 2))
        if flip:
            x = x[:, :, ::-1]
        y = np.asarray(predictor.predict(np.ascontiguousarray(x)), dtype=np.float32)
        if flip:
            y = y[..., ::-1]
        yield np.rot90(y, -k, axes=(2, 3))


def _predict_tta(predictor: Predictor, block: np.ndarray, tta: bool) -> np.ndarray:
    if not tta:
        return np.asarray(predictor.predict(block), dtype=np.float32)
    activation = predictor.activation
    acc = None
    for y in tta_views(predictor, block):
        term = _view_term(y, activation)
        acc = term.astype(np.float32) if acc is None else acc + term
    return combine_views(acc, len(TTA_TRANSFORMS), activation)


def predict_region(
    predictor: Predictor,
    data: np.ndarray,
    tile_shape: Sequence[int] | None = None,
    tta: bool = False,
    predict_tile: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Predict a whole in-memory region, tiled and blended when larger than ``tile_shape``.

    Args:
        predictor: a :class:`~workbench.models.predictor.Predictor` (or a minimal one, see ``as_predictor``).
        data: raw region (z, y, x).
        tile_shape: the largest block given to the predictor at once (default: the whole region).
            For 2D predictors the z extent is the number of slices batched per call.
        tta: combine the 8 yx rotations/flips (:func:`combine_views`: mean logits of class probabilities).
        predict_tile: what one tile's (channels, z, y, x) output is (default: the predictor, with ``tta``);
            e.g. probabilities with an uncertainty channel, blended like them.

    Returns:
        float32 array (out_channels, z, y, x).
    """
    predictor = as_predictor(predictor)
    if predict_tile is None:
        def predict_tile(tile_data: np.ndarray) -> np.ndarray:
            return _predict_tta(predictor, tile_data, tta)
    shape = tuple(int(s) for s in data.shape)
    halo = effective_halo(predictor)
    tile = shape if tile_shape is None else tuple(min(int(t), s) for t, s in zip(tile_shape, shape))
    if tile == shape:
        return predict_tile(data)
    for t, s, h in zip(tile, shape, halo):
        if t < s and t < 4 * h:
            raise ValueError(f"tile shape {tile} must be at least 4x the halo {halo} where it splits the region")
    # axes with a halo: overlapping tiles of equal size (the last one moved back); axes without one
    # (z of 2D predictors): back-to-back tiles, the last one shorter, so no slice is computed twice
    # tile starts and sizes are multiples of the predictor's down-sampling factor (region starts are aligned
    # by the caller), so every tile pools on the whole region's grid
    axes = [
        aligned_tiles(s, t, 2 * h, d) if h > 0 else [(o, min(t, s - o)) for o in range(0, s, t)]
        for s, t, h, d in zip(shape, tile, halo, effective_divisor(predictor))
    ]
    out = None
    weight_sum = np.zeros(shape, dtype=np.float32)
    for parts in itertools.product(*axes):
        origin = tuple(o for o, _ in parts)
        box = Box(origin, tuple(t for _, t in parts))
        pred = predict_tile(data[box.slices])
        if out is None:
            out = np.zeros((pred.shape[0], *shape), dtype=np.float32)
        ws = [
            ramp_weights(t, h, o > 0, o + t < s)
            for t, h, o, s in zip(box.shape, halo, origin, shape)
        ]
        w = ws[0][:, None, None] * ws[1][None, :, None] * ws[2][None, None, :]
        out[(slice(None), *box.slices)] += pred * w
        weight_sum[box.slices] += w
    out /= weight_sum
    return out
