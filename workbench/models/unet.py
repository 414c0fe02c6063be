"""U-Nets for 2D slices (Ronneberger et al. 2015) and 3D blocks (Çiçek et al. 2016)."""

from __future__ import annotations

from workbench.models.blocks import conv_layer, crop_to, make_norm, pad_to_multiple, receptive_field_of
from workbench.models.registry import ArchitectureSpec, register_architecture


def _pool_factors(options: dict, dims: int) -> list[tuple[int, ...]]:
    depth = int(options["depth"])
    if dims == 2:
        return [(2, 2)] * (depth - 1)
    n_aniso = int(options.get("anisotropic_levels", 0))
    return [(1, 2, 2) if level < n_aniso else (2, 2, 2) for level in range(depth - 1)]


def _divisor(factors: list[tuple[int, ...]], dims: int) -> tuple[int, int, int]:
    total = [1] * dims
    for f in factors:
        total = [t * s for t, s in zip(total, f)]
    return (1, *total) if dims == 2 else tuple(total)


def _unet_ops(factors, dims, convs: int = 2):
    ops = []
    for f in factors:  # encoder levels above the bottom
        ops += [("conv", 3)] * convs + [("pool", f)]
    ops += [("conv", 3)] * convs  # bottom
    for f in reversed(factors):
        ops += [("up", f)] + [("conv", 3)] * convs
    return ops


def _make_unet_class():
    import torch
    from torch import nn

    class _ConvBlock(nn.Sequential):
        def __init__(self, dims, cin, cout, norm):
            super().__init__(
                conv_layer(dims, cin, cout, 3, bias=norm == "none"),
                make_norm(norm, dims, cout),
                nn.ReLU(inplace=True),
                conv_layer(dims, cout, cout, 3, bias=norm == "none"),
                make_norm(norm, dims, cout),
                nn.ReLU(inplace=True),
            )

    class UNetModule(nn.Module):
        """A U-Net for 2D or 3D inputs of any size (padded to the down-sampling factor, cropped back).

        Args:
            dims: 2 or 3.
            in_channels, out_channels: channels of input and output (logits).
            depth: number of resolution levels (``depth - 1`` poolings).
            base_channels: features at the first level; ``growth`` times more at each level below.
            norm: ``batch``, ``instance``, ``group`` or ``none``.
            pool_factors: one pooling factor per level transition (e.g. ``(1, 2, 2)`` for anisotropic EM).
        """

        def __init__(self, dims, in_channels, out_channels, depth, base_channels, growth, norm, pool_factors):
            super().__init__()
            self.dims = dims
            self.divisor = _divisor(pool_factors, dims)[3 - dims :]
            chans = [int(base_channels * growth**level) for level in range(depth)]
            pool_cls = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
            up_cls = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
            self.encoders = nn.ModuleList()
            self.pools = nn.ModuleList()
            cin = in_channels
            for level, c in enumerate(chans):
                self.encoders.append(_ConvBlock(dims, cin, c, norm))
                if level < depth - 1:
                    self.pools.append(pool_cls(pool_factors[level], pool_factors[level]))
                cin = c
            self.ups = nn.ModuleList()
            self.decoders = nn.ModuleList()
            for level in reversed(range(depth - 1)):
                f = pool_factors[level]
                self.ups.append(up_cls(chans[level + 1], chans[level], f, stride=f))
                self.decoders.append(_ConvBlock(dims, 2 * chans[level], chans[level], norm))
            self.head = conv_layer(dims, chans[0], out_channels, 1)

        def forward(self, x):
            x, spatial = pad_to_multiple(x, self.divisor)
            skips = []
            for level, enc in enumerate(self.encoders):
                x = enc(x)
                if level < len(self.pools):
                    skips.append(x)
                    x = self.pools[level](x)
            for up, dec in zip(self.ups, self.decoders):
                x = dec(torch.cat([skips.pop(), up(x)], dim=1))
            return crop_to(self.head(x), spatial)

    return UNetModule


_UNET_CLASS = None


def unet_class():
    """The U-Net ``nn.Module`` class (created on first use so ``import workbench.models`` stays light)."""
    global _UNET_CLASS
    if _UNET_CLASS is None:
        _UNET_CLASS = _make_unet_class()
    return _UNET_CLASS


def _check_common(options: dict) -> None:
    from workbench.errors import WorkbenchError

    if int(options["depth"]) < 1:
        raise WorkbenchError(f"depth must be at least 1, got {options['depth']}")
    if int(options["base_channels"]) < 1:
        raise WorkbenchError(f"base_channels must be at least 1, got {options['base_channels']}")


_UNET2D_DEFAULTS = {"depth": 4, "base_channels": 16, "growth": 2, "norm": "batch"}


@register_architecture(ArchitectureSpec(
    "unet2d",
    title="2D U-Net",
    paper="Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
    description="""The classic encoder-decoder with skip connections, applied slice by slice (2D). It won the
    ISBI 2012 EM membrane challenge and is the first thing to try on anisotropic serial-section EM (ssTEM,
    ATUM) where z is 5-10x coarser than x and y, or when only a few slices are annotated. Fast to train on a
    CPU; it sees no context across slices. From sparse scribbles on a CPU, half the width (base_channels 8)
    trains twice as many steps in the same time; predicted with test-time augmentation, that was the best
    recipe for ISBI 2012 from 1 % scribbles in the workbench's benchmark.""",
    dims=2,
    defaults=_UNET2D_DEFAULTS,
    receptive_field=lambda o: receptive_field_of(_unet_ops(_pool_factors(o, 2), 2), 2),
    divisor=lambda o: _divisor(_pool_factors(o, 2), 2),
    # 16 patches of 128^2 rather than 4 of 256^2 (the same pixels per step): from sparse scribbles a step then
    # sees labels from 4x more places (ISBI, 1 % scribbles, 500 steps, two seeds: adapted Rand error 0.09 and 0.15
    # instead of 0.20)
    default_patch=(1, 128, 128),
    default_batch=16,
))
def build_unet2d(in_channels: int, out_channels: int, **options):
    """A 2D U-Net (options: depth, base_channels, growth, norm)."""
    _check_common(options)
    return unet_class()(
        2, in_channels, out_channels, int(options["depth"]), int(options["base_channels"]),
        float(options["growth"]), options["norm"], _pool_factors(options, 2),
    )


_UNET3D_DEFAULTS = {"depth": 4, "base_channels": 16, "growth": 2, "norm": "batch", "anisotropic_levels": 2}


@register_architecture(ArchitectureSpec(
    "unet3d",
    title="3D U-Net",
    paper="Çiçek, Abdulkadir, Lienkamp, Brox, Ronneberger. 3D U-Net: Learning Dense Volumetric Segmentation "
    "from Sparse Annotation. MICCAI 2016.",
    description="""The U-Net with 3D convolutions, designed for learning from a few annotated slices of a
    volume. It uses context across slices, which helps with near-isotropic FIB-SEM and SBEM data. The first
    levels pool only in x and y (anisotropic_levels, pooling (1, 2, 2)) so that anisotropic serial-section
    data reaches roughly isotropic voxels before z is pooled. Slower to train than the 2D U-Net.""",
    dims=3,
    defaults=_UNET3D_DEFAULTS,
    receptive_field=lambda o: receptive_field_of(_unet_ops(_pool_factors(o, 3), 3), 3),
    divisor=lambda o: _divisor(_pool_factors(o, 3), 3),
    default_patch=(16, 96, 96),
))
def build_unet3d(in_channels: int, out_channels: int, **options):
    """A 3D U-Net (options: depth, base_channels, growth, norm, anisotropic_levels)."""
    _check_common(options)
    return unet_class()(
        3, in_channels, out_channels, int(options["depth"]), int(options["base_channels"]),
        float(options["growth"]), options["norm"], _pool_factors(options, 3),
    )


__all__ = ["build_unet2d", "build_unet3d", "unet_class"]
