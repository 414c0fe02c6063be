"""Predicting one block of a plan: read its region, pad it if planned so, predict in tiles, keep the core."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.geometry import Box
from workbench.inference.planner import PlannedBlock, plan_regions
from workbench.inference.tiling import effective_divisor, effective_halo, predict_region
from workbench.inference.uncertainty import UncertaintyKind, entropy, tta_with_disagreement
from workbench.models.predictor import Predictor, as_predictor

#: Default largest tile given to the predictor at once (voxels): bounds the network's activations.
DEFAULT_TILE_VOXELS = 4 * 1024 * 1024
#: Largest yx tile edge given to a 2D predictor at once: a 2048^2 block plus its halo in one call.
TILE_2D_MAX = 2304


def _split_evenly(size: int, cap: int, halo: int) -> int:
    """The tile edge that covers ``size`` with the fewest tiles of at most ``cap`` overlapping by 2 halo."""
    if size <= cap:
        return size
    step = max(1, cap - 2 * halo)
    n = -(-(size - 2 * halo) // step)
    return -(-(size + (n - 1) * 2 * halo) // n)


def default_tile_shape(predictor: Predictor, read_shape: Sequence[int]) -> tuple[int, int, int]:
    """The predictor's own ``tile_shape`` if it has one; else for 2D predictors whole slices up to
    ``TILE_2D_MAX``^2 (larger ones split into equal tiles), for 3D ones the read region halved until ~4 M voxels (never below 4 halos along a split axis)."""
    predictor = as_predictor(predictor)
    if predictor.tile_shape is not None:
        own = tuple(int(t) for t in predictor.tile_shape)
        return (1, *own) if len(own) == 2 else own  # type: ignore[return-value]
    z, y, x = (int(s) for s in read_shape)
    if int(predictor.spatial_dims) == 2:
        halo = effective_halo(predictor)
        y, x = _split_evenly(y, TILE_2D_MAX, halo[1]), _split_evenly(x, TILE_2D_MAX, halo[2])
        z = max(1, min(z, DEFAULT_TILE_VOXELS // (y * x)))
        return (z, y, x)
    # halve the axis largest against its halo until the tile fits; a split axis keeps at least 4 halos (what
    # blending overlapping tiles needs), so a region that cannot be split further is one tile
    halo = effective_halo(predictor)
    least = [max(1, 4 * int(h)) for h in halo]
    dims = [z, y, x]
    while dims[0] * dims[1] * dims[2] > DEFAULT_TILE_VOXELS:
        can = [i for i in range(3) if (dims[i] + 1) // 2 >= least[i]]
        if not can:
            break
        i = max(can, key=lambda a: dims[a] / least[a])
        dims[i] = (dims[i] + 1) // 2
    return (dims[0], dims[1], dims[2])


def _planned_input(raw, block: PlannedBlock) -> np.ndarray:
    """The raw data a planned block gives the predictor: its read region, padded as planned."""
    data = np.asarray(raw[block.read.slices])
    pad = block.padding
    if any(p != (0, 0) for p in pad):
        data = np.pad(data, pad, mode="reflect" if min(data.shape) > 1 else "edge")
    return data


def predict_planned(predictor: Predictor, raw, block: PlannedBlock, tile_shape: Sequence[int] | None = None,
                    tta: bool = False) -> np.ndarray:
    """Predict one :class:`~workbench.inference.planner.PlannedBlock`: float32 (out_channels, *core.shape)."""
    predictor = as_predictor(predictor)
    tile = tile_shape or default_tile_shape(predictor, block.input.shape)
    probs = predict_region(predictor, _planned_input(raw, block), tile, tta=tta)
    return probs[(slice(None), *block.core.relative_to(block.input))]


def predict_planned_with_uncertainty(predictor: Predictor, raw, block: PlannedBlock, kind: str,
                                     tile_shape: Sequence[int] | None = None,
                                     tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predict one planned block and its per-voxel uncertainty (:mod:`workbench.inference.uncertainty`).

    Args:
        kind: ``entropy`` (of the block's probabilities: no extra forward pass) or ``disagreement`` (of the 8
            TTA views, computed once for both; needs ``tta``; tiles are cross-faded like the probabilities).

    Returns:
        (float32 (out_channels, *core.shape) probabilities as :func:`predict_planned` gives them,
        float32 core-shaped uncertainty in [0, 1]).

    Raises:
        ValueError: ``disagreement`` without ``tta``.
    """
    predictor = as_predictor(predictor)
    kind = UncertaintyKind.parse(kind)
    core = (slice(None), *block.core.relative_to(block.input))
    if kind == UncertaintyKind.ENTROPY:
        probs = predict_planned(predictor, raw, block, tile_shape, tta)
        return probs, entropy(probs, predictor.activation or "softmax")
    if not tta:
        raise ValueError("the disagreement of the views needs tta")

    def with_disagreement(tile_data: np.ndarray) -> np.ndarray:
        probs, unc = tta_with_disagreement(predictor, tile_data)
        return np.concatenate([probs, unc[None]])

    tile = tile_shape or default_tile_shape(predictor, block.input.shape)
    out = predict_region(predictor, _planned_input(raw, block), tile, predict_tile=with_disagreement)[core]
    return out[:-1], np.clip(out[-1], 0.0, 1.0)


def predict_block(predictor: Predictor, raw, core: Box, tile_shape: Sequence[int] | None = None,
                  tta: bool = False, fixed_shape: Sequence[int] | None = None) -> np.ndarray:
    """Predict one block: read ``core`` grown by the halo (clipped to the volume), return the core only.

    Args:
        fixed_shape: the nominal block shape; when given, reads clipped at the volume border are
            mirror-padded to ``fixed_shape + 2 * halo`` so that the predictor always sees one input shape
            (what compiled models want; results near the volume border then use mirrored context).

    Returns:
        float32 (out_channels, *core.shape).
    """
    predictor = as_predictor(predictor)
    read, inp = plan_regions(core, raw.shape, effective_halo(predictor), effective_divisor(predictor), fixed_shape)
    return predict_planned(predictor, raw, PlannedBlock((), core, read, inp), tile_shape, tta)


def predict_array(predictor: Predictor, data: np.ndarray, tta: bool = False,
                  tile_shape: Sequence[int] | None = None) -> np.ndarray:
    """Predict a small in-memory volume in one go (no blocks, no files): float32 (C, z, y, x)."""
    return predict_region(predictor, np.asarray(data), tile_shape, tta=tta)


def _torch_default_cache() -> str:
    """The folder inductor falls back to (and writes into ``TORCHINDUCTOR_CACHE_DIR`` once imported)."""
    import getpass
    import tempfile

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return os.path.join(tempfile.gettempdir(), f"torchinductor_{user}".replace(" ", "_"))


def inductor_cache_dir() -> Path:
    """Where compiled kernels are kept between runs: ``$TORCHINDUCTOR_CACHE_DIR`` if the user set it, else
    ``workbench/inductor`` in the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``; torch's own
    default is a temporary folder, emptied at reboot)."""
    own = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if own and own != _torch_default_cache():
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "workbench" / "inductor"


def compile_predictor(predictor: Predictor) -> bool:
    """Replace a torch predictor's ``model`` by ``torch.compile(model)`` (once); True if it is compiled.

    The compiled kernels are cached in :func:`inductor_cache_dir` (set as ``TORCHINDUCTOR_CACHE_DIR`` for this
    process when unset), so a second run with the same model and block shape skips most of the compile time.
    """
    cache = inductor_cache_dir()  # before torch._dynamo is imported: it sets its temporary default
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    import torch
    from torch._dynamo.eval_frame import OptimizedModule

    predictor = as_predictor(predictor)
    model = predictor.model
    if isinstance(model, OptimizedModule):
        return True
    if not isinstance(model, torch.nn.Module):
        return False
    predictor.model = torch.compile(model, dynamic=False)
    return True
