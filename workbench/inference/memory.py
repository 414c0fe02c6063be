"""An upper bound of one block's memory, known before any block runs.

Blockwise prediction on a CPU runs one block per core when they fit in memory. The bound lets it start
that way at once, so a volume of a few blocks runs (and peaks) like a big one. Without a bound (a model
that is not a ``torch.nn.Module`` or is in training mode, or a bound too big for one block per core) the
executor measures the first block alone instead.

The bound traces one forward pass of a small probe tile and adds up the bytes of every layer's output, as
if none were freed: a network's activations grow linearly with the voxels it is given, and a forward pass
holds far fewer of them at once (functional steps such as concatenations are not counted; for unet2d the
bound is 3x the measured block memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from workbench.models.predictor import Predictor, as_predictor

#: probe tile edge along y and x (at least the model's divisor times four); z for 3D models is its divisor x 4
PROBE_EDGE = 64


def forward_bytes_per_voxel(predictor: Predictor) -> float | None:
    """Bytes of all layer outputs of one forward pass per input voxel, in float32 (None: not a torch model, or
    one in training mode, whose normalisation statistics a probe pass would change).

    Args:
        predictor: a predictor whose ``model`` is a ``torch.nn.Module`` taking (N, C, [z,] y, x).
    """
    import torch

    predictor = as_predictor(predictor)
    model = predictor.model
    if not isinstance(model, torch.nn.Module) or model.training:
        return None
    dims = int(predictor.spatial_dims)
    divisor = [int(d) for d in predictor.divisor][-dims:]
    edges = [max(PROBE_EDGE, 4 * d) for d in divisor]
    if dims == 3:
        edges[0] = 4 * divisor[0]
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * 4

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        probe = torch.zeros((1, int(predictor.in_channels), *edges), device=device)
        with torch.inference_mode():
            model(probe)
    except (RuntimeError, ValueError, TypeError):
        return None  # a model that does not take a probe tile: the executor measures instead
    finally:
        for h in hooks:
            h.remove()
    return total / math.prod(edges)


def block_bytes_bound(predictor: Predictor, tile_shape: Sequence[int], input_shape: Sequence[int],
                      views: int = 1) -> int | None:
    """An upper bound of the memory one block takes while it is predicted (None: no bound known).

    Args:
        tile_shape: the largest region given to the predictor at once (z, y, x).
        input_shape: the block's input region (z, y, x): raw values, normalised copy, probabilities and blending
            weights of all of it are held at once.
        views: forward passes whose probabilities of one tile are combined (8 with test-time augmentation).
    """
    per_voxel = forward_bytes_per_voxel(predictor)
    if per_voxel is None:
        return None
    tile = math.prod(int(t) for t in tile_shape)
    block = math.prod(int(s) for s in input_shape)
    out_channels = int(as_predictor(predictor).out_channels)
    # raw (<= 4 bytes), normalised float32 input, float32 probabilities (accumulated and the core copy), weights
    held = block * (4 + 4 + 2 * 4 * out_channels + 4) + (tile * 4 * out_channels * views if views > 1 else 0)
    return int(per_voxel * tile + held)
