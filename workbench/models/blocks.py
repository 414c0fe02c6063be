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


#: PyTorch sends a CPU float32 3D convolution of one sample to its native ``slow_conv3d`` when
#: N * C * D * H of the input is at most this (and the kernel is not larger than 3 in y and x)
NATIVE_CONV3D_LIMIT = 20480

_CONV3D = None


def _conv3d_class():
    """:class:`torch.nn.Conv3d` that takes oneDNN where PyTorch would take its native 3D convolution.

    PyTorch's choice of kernel for a CPU float32 convolution of a single sample sends small inputs
    (:data:`NATIVE_CONV3D_LIMIT`, a threshold set for 2D images) to ``slow_conv3d``, which measured 5-10x
    slower than oneDNN on the deep levels of the 3D U-Nets (e.g. 32 x 16 x 32 x 32: 105 against 13 ms on
    one thread), and results agree to 3e-6. In inference only (no gradient, no autocast) and never while
    being traced, scripted, compiled or exported, so exported models and training are unchanged.
    """
    global _CONV3D
    if _CONV3D is not None:
        return _CONV3D
    import torch
    from torch import nn

    class Conv3d(nn.Conv3d):
        def forward(self, x):
            if _takes_native_path(x, self):
                return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride,
                                                         self.dilation, self.groups)
            return super().forward(x)

    def _takes_native_path(x, conv) -> bool:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
            return False
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 5 or x.shape[0] != 1:
            return False
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or conv.groups != 1:
            return False
        if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return False
        ky, kx = conv.kernel_size[-2:]
        if ky > 3 and kx > 3:  # PyTorch takes oneDNN for these anyway
            return False
        if ky == 1 and kx == 1:  # a 1x1 kernel: the native path is the faster one on one thread
            return False
        return x.shape[1] * x.shape[2] * x.shape[3] <= NATIVE_CONV3D_LIMIT

    _CONV3D = Conv3d
    return Conv3d


def conv_layer(dims: int, cin: int, cout: int, kernel, bias: bool = True):
    """A 'same'-padded convolution (2D or 3D; 3D: :func:`_conv3d_class`)."""
    from torch import nn

    k = as_tuple(kernel, dims)
    cls = nn.Conv2d if dims == 2 else _conv3d_class()
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
