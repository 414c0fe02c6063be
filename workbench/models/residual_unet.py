"""Residual symmetric U-Net for anisotropic EM (Lee, Zung, Li, Jain, Seung 2017; SNEMI3D)."""

from __future__ import annotations

from workbench.models.blocks import conv_layer, crop_to, make_norm, pad_to_multiple, receptive_field_of
from workbench.models.registry import ArchitectureSpec, register_architecture

_DEFAULTS = {"features": [16, 24, 32, 48, 64], "norm": "batch", "embed_kernel": [1, 5, 5]}


def _ops(options: dict):
    """Layers on the longest path (through the residual convolutions, not the shortcuts)."""
    n = len(options["features"])
    embed = tuple(options["embed_kernel"])
    block = [("conv", (1, 3, 3)), ("conv", (3, 3, 3)), ("conv", (3, 3, 3))]
    ops = [("conv", embed)]
    for _ in range(n - 1):
        ops += block + [("pool", (1, 2, 2))]
    ops += block
    for _ in range(n - 1):
        ops += [("up", (1, 2, 2))] + block
    ops += [("conv", embed)]
    return ops


def _divisor(options: dict) -> tuple[int, int, int]:
    f = 2 ** (len(options["features"]) - 1)
    return (1, f, f)


_CLASS = None


def _residual_unet_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from torch import nn

    class _CNA(nn.Sequential):
        def __init__(self, cin, cout, kernel, norm):
            super().__init__(conv_layer(3, cin, cout, kernel, bias=norm == "none"), make_norm(norm, 3, cout), nn.ELU(inplace=True))

    class _ResidualBlock(nn.Module):
        """(1,3,3) convolution, then two (3,3,3) convolutions added back to its output (a residual module)."""

        def __init__(self, cin, cout, norm):
            super().__init__()
            self.pre = _CNA(cin, cout, (1, 3, 3), norm)
            self.conv1 = _CNA(cout, cout, (3, 3, 3), norm)
            self.conv2 = conv_layer(3, cout, cout, (3, 3, 3), bias=norm == "none")
            self.norm2 = make_norm(norm, 3, cout)
            self.act = nn.ELU(inplace=True)

        def forward(self, x):
            x = self.pre(x)
            return self.act(self.norm2(self.conv2(self.conv1(x))) + x)

    class ResidualUNet3d(nn.Module):
        """Symmetric residual U-Net: 2D embedding, residual 3D blocks, (1,2,2) pooling, summed skips."""

        def __init__(self, in_channels, out_channels, features, norm, embed_kernel):
            super().__init__()
            self.divisor = _divisor({"features": features})
            self.embed = _CNA(in_channels, features[0], tuple(embed_kernel), norm)
            self.down = nn.ModuleList()
            cin = features[0]
            for f in features:
                self.down.append(_ResidualBlock(cin, f, norm))
                cin = f
            self.pool = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
            self.ups = nn.ModuleList()
            self.up_blocks = nn.ModuleList()
            for level in reversed(range(len(features) - 1)):
                self.ups.append(nn.ConvTranspose3d(features[level + 1], features[level], (1, 2, 2), stride=(1, 2, 2)))
                self.up_blocks.append(_ResidualBlock(features[level], features[level], norm))
            self.head = conv_layer(3, features[0], out_channels, tuple(embed_kernel))

        def forward(self, x):
            x, spatial = pad_to_multiple(x, self.divisor)
            x = self.embed(x)
            skips = []
            for level, block in enumerate(self.down):
                x = block(x)
                if level < len(self.down) - 1:
                    skips.append(x)
                    x = self.pool(x)
            for up, block in zip(self.ups, self.up_blocks):
                x = block(up(x) + skips.pop())
            return crop_to(self.head(x), spatial)

    _CLASS = ResidualUNet3d
    return _CLASS


@register_architecture(ArchitectureSpec(
    "residual-unet3d",
    title="Residual symmetric 3D U-Net",
    paper="Lee, Zung, Li, Jain, Seung. Superhuman Accuracy on the SNEMI3D Connectomics Challenge. arXiv:1706.00120, 2017.",
    description="""A 3D U-Net built for anisotropic serial-section EM of neurons: it pools only in x and y,
    starts and ends with 2D (1x5x5) convolutions, uses residual blocks with 3D convolutions and adds (rather
    than concatenates) the skip connections. Trained on affinities it reached superhuman accuracy on
    SNEMI3D. Use it for neuron instance segmentation (affinities target) on data with thick sections.""",
    dims=3,
    defaults=_DEFAULTS,
    receptive_field=lambda o: receptive_field_of(_ops(o), 3),
    divisor=_divisor,
    default_patch=(8, 96, 96),
))
def build_residual_unet3d(in_channels: int, out_channels: int, **options):
    """A residual symmetric 3D U-Net (options: features per level, norm, embed_kernel)."""
    from workbench.errors import WorkbenchError

    features = [int(f) for f in options["features"]]
    if not features or min(features) < 1:
        raise WorkbenchError(f"features must be a non-empty list of positive numbers, got {options['features']}")
    return _residual_unet_class()(in_channels, out_channels, features, options["norm"], list(options["embed_kernel"]))
