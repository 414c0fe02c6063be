"""What a network costs: parameters, compute per forward pass (FLOPs) and its speed on this machine.

FLOPs are counted by PyTorch's ``FlopCounterMode`` on a model built on the ``meta`` device (no memory, no
computation); the speed is timed on real tensors. A training step costs about three forward passes
(forward, then backward through activations and weights).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from workbench.errors import WorkbenchError

#: One training step (forward + backward) in forward passes.
TRAIN_STEP_FORWARDS = 3.0


@dataclass(frozen=True)
class ModelProfile:
    """The cost of one architecture on one input patch.

    Attributes:
        name: the architecture.
        patch: the input patch (z, y, x) profiled (2D models: z is 1).
        parameters: trainable parameters.
        gflop: one forward pass on the patch, in GFLOP.
        flop_per_voxel: FLOPs per output voxel (compares models independently of the machine).
        forward_s: measured seconds of one forward pass here (None: not measured).
        train_patches_per_s: estimated training patches per second here (None: not measured).
    """

    name: str
    patch: tuple[int, int, int]
    parameters: int
    gflop: float
    flop_per_voxel: float
    forward_s: float | None = None
    train_patches_per_s: float | None = None


def _info(arch):
    from workbench.models.registry import ArchitectureInfo, get_architecture

    info = arch if isinstance(arch, ArchitectureInfo) else get_architecture(arch)
    if not info.is_network:
        raise WorkbenchError(f"{info.name} is not a network: it has no FLOPs or forward pass to profile")
    return info


def _input_shape(info, patch: Sequence[int] | None) -> tuple[int, ...]:
    patch = tuple(int(v) for v in (patch or info.default_patch))
    if len(patch) != 3:
        raise WorkbenchError(f"patch must be (z, y, x), got {patch}")
    return (1, 1, *patch[1:]) if info.dims == 2 else (1, 1, *patch)


def count_flops(arch, patch: Sequence[int] | None = None, options: dict | None = None) -> float:
    """FLOPs of one forward pass of architecture ``arch`` (a name or ``ArchitectureInfo``) on ``patch``
    (z, y, x; default the architecture's training patch), with ``options`` over the defaults."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    info = _info(arch)
    shape = _input_shape(info, patch)
    with torch.device("meta"):
        model = info.build(1, 2, **(options or {}))
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(shape))
    return float(counter.get_total_flops())


def time_forward(arch, patch: Sequence[int] | None = None, options: dict | None = None, repeats: int = 2) -> float:
    """Seconds of one forward pass (mean of ``repeats`` after a warm-up) on the CPU, without gradients."""
    import torch

    info = _info(arch)
    model = info.build(1, 2, **(options or {})).eval()
    x = torch.rand(_input_shape(info, patch))
    with torch.no_grad():
        model(x)  # warm-up
        t = time.perf_counter()
        for _ in range(max(1, int(repeats))):
            model(x)
        return (time.perf_counter() - t) / max(1, int(repeats))


def profile_model(arch, patch: Sequence[int] | None = None, options: dict | None = None, speed: bool = True,
                  repeats: int = 2) -> ModelProfile:
    """Parameters, FLOPs and (``speed``) the measured forward and estimated training speed of ``arch``.

    Raises:
        WorkbenchError: an unknown architecture or option, or not a network (the random forest).
    """
    info = _info(arch)
    shape = _input_shape(info, patch)
    flops = count_flops(info, patch, options)
    voxels = math.prod(shape[2:])
    forward = time_forward(info, patch, options, repeats) if speed else None
    return ModelProfile(
        name=info.name,
        patch=(1, *shape[2:]) if info.dims == 2 else tuple(shape[2:]),
        parameters=info.parameter_count(**(options or {})),
        gflop=flops / 1e9,
        flop_per_voxel=flops / voxels,
        forward_s=forward,
        train_patches_per_s=None if forward is None else 1.0 / (TRAIN_STEP_FORWARDS * forward),
    )


__all__ = ["TRAIN_STEP_FORWARDS", "ModelProfile", "count_flops", "profile_model", "time_forward"]
