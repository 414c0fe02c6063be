"""BatchNorm statistics recomputed on the volume itself once training ends.

Training patches are drawn around the annotations (class-balanced, so membrane-rich for scribbles) and
augmented, so the running means and variances that BatchNorm collects during training describe other images
than the whole volume the model then predicts. Recomputing them over tiles of the (unlabelled) volume, with the
weights fixed, is label-free (as AdaBN, Li et al. 2016, and the statistics update of SWA) and costs one forward
pass over the tiles. Measured on ISBI 2012 scribbles: benchmarks/results/sparse.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: at most this many voxels are passed through the model (tiles are drawn at random beyond it)
DEFAULT_MAX_VOXELS = 8_000_000


def has_batchnorm(model) -> bool:
    """Whether ``model`` has a BatchNorm layer that tracks running statistics."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


def batchnorm_buffers(model) -> dict:
    """Copies of the BatchNorm running statistics of ``model`` (a partial state dict, for ``load_state_dict(strict=False)``)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            for key, buf in module.named_buffers(recurse=False):
                out[f"{name}.{key}" if name else key] = buf.detach().clone()
    return out


def volume_tiles(shape: Sequence[int], tile_shape: Sequence[int], max_voxels: int = DEFAULT_MAX_VOXELS,
                 seed: int = 0) -> list[tuple[slice, ...]]:
    """Tiles of ``tile_shape`` (clipped to the volume) covering ``shape``; a random subset within ``max_voxels``.

    Every tile has the same shape: the last tile along an axis is moved back inside the volume.
    """
    tile = [min(int(t), int(s)) for t, s in zip(tile_shape, shape)]
    starts = []
    for s, t in zip(shape, tile):
        axis = list(range(0, s - t + 1, t))
        if axis[-1] + t < s:
            axis.append(s - t)
        starts.append(axis)
    grid = [tuple(slice(int(a), int(a) + t) for a, t in zip(corner, tile))
            for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(shape))]
    keep = max(1, int(max_voxels) // max(1, math.prod(tile)))
    if len(grid) > keep:
        chosen = np.sort(np.random.default_rng(seed).choice(len(grid), keep, replace=False))
        grid = [grid[i] for i in chosen]
    return grid


@dataclass(frozen=True)
class TileSampling:
    """Which tiles of a volume a BatchNorm recalibration passes through the model.

    Attributes:
        tile_shape: (z, y, x) tile size; 2D models (``spatial_dims`` 2) need z = 1.
        spatial_dims: 2 (tiles enter as (B, 1, y, x)) or 3.
        max_voxels, seed: tiles beyond this many voxels are left out at random (seeded).
        batch_size: tiles per forward pass.
    """

    tile_shape: tuple[int, ...]
    spatial_dims: int
    max_voxels: int = DEFAULT_MAX_VOXELS
    batch_size: int = 4
    seed: int = 0


def recalibrate_batchnorm(model, volume: np.ndarray, sampling: TileSampling, device="cpu",
                          memory_format=None) -> dict:
    """Recompute the BatchNorm running statistics of ``model`` over tiles of ``volume``.

    Args:
        model: a torch module with one input channel; its weights are not changed.
        volume: the normalised image (Z, Y, X), float32.
        sampling: the tiles (:class:`TileSampling`).
        device, memory_format: where and in which layout the model runs.

    Returns:
        ``{"tiles": n, "voxels": v, "seconds": s}`` (zeros when the model has no BatchNorm).
    """
    import torch
    from torch.optim.swa_utils import update_bn

    if not has_batchnorm(model):
        return {"tiles": 0, "voxels": 0, "seconds": 0.0}
    t0 = time.monotonic()
    tiles = volume_tiles(volume.shape, sampling.tile_shape, sampling.max_voxels, sampling.seed)

    def batches():
        n = sampling.batch_size
        for i in range(0, len(tiles), n):
            x = torch.from_numpy(np.stack([volume[t] for t in tiles[i:i + n]]))[:, None]
            if sampling.spatial_dims == 2:
                x = x[:, :, 0]
            x = x.to(device)
            yield x.contiguous(memory_format=memory_format) if memory_format is not None else x

    with torch.no_grad():
        update_bn(batches(), model)
    voxels = len(tiles) * math.prod(s.stop - s.start for s in tiles[0])
    return {"tiles": len(tiles), "voxels": int(voxels), "seconds": round(time.monotonic() - t0, 3)}
