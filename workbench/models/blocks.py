"""Building blocks shared by the U-Nets: normalisation choice, padding to the down-sampling factor, and the
receptive field computed from the sequence of layers on the longest path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NORMS = ("batch", "instance", "group", "none")


def as_tuple(value, dims: int) -> tuple[int, ...]:
    """``2 -> (2, 2)``; a sequence is checked for length ``dims``."""
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(int(v) for v in value)
    if len(value) != dims:
        raise ValueError(f"expected {dims} values, got {value}")
    return value


def receptive_field_of(ops: Iterable[tuple[str, Sequence[int]]], dims: int) -> tuple[int, int, int]:
    """Receptive field (z, y, x) of a chain of layers, input to output.

    ``ops`` are ``("conv", kernel)``, ``("pool", factor)`` (max pooling with kernel = stride) and
    ``("up", factor)`` (transposed convolution with kernel = stride: each output voxel sees one input voxel).
    Uses r = 1 + sum (k - 1) * jump, where jump is the product of the strides before the layer.
    """
    rf = [1.0] * dims
    jump = [1.0] * dims
    for kind, size in ops:
        size = as_tuple(size, dims)
        for a in range(dims):
            if kind == "conv":
                rf[a] += (size[a] - 1) * jump[a]
            elif kind == "pool":
                rf[a] += (size[a] - 1) * jump[a]
                jump[a] *= size[a]
            elif kind == "up":
                jump[a] /= size[a]
            else:
                raise ValueError(f"unknown op {kind!r}")
    rf = [int(round(r)) for r in rf]
    return (1, *rf) if dims == 2 else tuple(rf)


def make_norm(kind: str, dims: int, channels: int):
    """A normalisation layer: ``batch``, ``instance`` (affine), ``group`` (up to 8 groups) or ``none``."""
    from torch import nn

    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "group":
        groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    from workbench.errors import WorkbenchError

    raise WorkbenchError(f"unknown normalisation {kind!r}; choose one of {', '.join(NORMS)}")


def conv_layer(dims: int, cin: int, cout: int, kernel, bias: bool = True):
    """A 'same'-padded convolution (2D or 3D)."""
    from torch import nn

    k = as_tuple(kernel, dims)
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return cls(cin, cout, k, padding=tuple(s // 2 for s in k), bias=bias)


def pad_to_multiple(x, divisor: Sequence[int]):
    """Pad the spatial axes of ``x`` (N, C, *spatial) at the end to a multiple of ``divisor``.

    Reflection where the axis is long enough, else edge replication. Returns (padded, original spatial shape),
    or (x, None) when no padding is needed: then no size-dependent operation is recorded, so a model traced
    (``torch.jit.trace``, ONNX) on a multiple of the factor works on every multiple.
    """
    import torch.nn.functional as F

    spatial = tuple(x.shape[2:])
    extra = [(-s) % d for s, d in zip(spatial, divisor)]
    if not any(extra):
        return x, None
    pad: list[int] = []
    for e in reversed(extra):  # F.pad wants the last axis first
        pad += [0, e]
    mode = "reflect" if all(e < s for e, s in zip(extra, spatial)) else "replicate"
    return F.pad(x, pad, mode=mode), spatial


def crop_to(x, spatial: Sequence[int] | None):
    """Crop the spatial axes of ``x`` back to ``spatial`` (``None``: unchanged)."""
    if spatial is None:
        return x
    return x[(Ellipsis, *(slice(0, s) for s in spatial))]
