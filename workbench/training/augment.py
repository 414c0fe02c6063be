"""On-the-fly augmentation of a batch with torch: geometry applied identically to raw and labels
(labels by nearest neighbour), intensity to raw only, and EM section defects for 3D patches.

Works on the whole batch at once where it can (flips, rotations, elastic warps as one ``grid_sample``),
which is cheaper than per-patch numpy/scipy transforms. All randomness comes from the ``torch.Generator``
passed in, so a batch is reproducible from its seed.
"""

from __future__ import annotations

from workbench.training.config import AugmentConfig


def _rand(g, *shape):
    import torch

    return torch.rand(shape, generator=g)


def augment_batch(raw, labels, cfg: AugmentConfig, g):
    """Augment raw (B, Z, Y, X) float32 and labels (B, Z, Y, X) int64 consistently.

    Returns new tensors (the inputs are not modified).
    """
    import torch

    raw = raw.clone()
    labels = labels.clone()
    B, Z, Y, X = raw.shape
    for b in range(B):
        if cfg.flips:
            axes = [a for a, size in ((1, Z), (2, Y), (3, X)) if size > 1 and bool(_rand(g, 1) < 0.5)]
            axes = [a - 1 for a in axes]
            if axes:
                raw[b] = raw[b].flip(axes)
                labels[b] = labels[b].flip(axes)
        if cfg.rotate90 and Y == X:
            k = int(torch.randint(4, (1,), generator=g))
            if k:
                raw[b] = raw[b].rot90(k, (1, 2))
                labels[b] = labels[b].rot90(k, (1, 2))
    if cfg.elastic > 0:
        raw, labels = _elastic(raw, labels, cfg, g)
    raw = _intensity(raw, cfg, g)
    if Z > 1:
        raw, labels = _section_defects(raw, labels, cfg, g)
    return raw, labels


def _elastic(raw, labels, cfg, g):
    """Smooth random displacement in y, x (same for every slice of a patch): a coarse 4x4 grid of random
    shifts up to ``elastic_strength`` pixels, upsampled bicubically; raw bilinear, labels nearest."""
    import torch
    import torch.nn.functional as F

    B, Z, Y, X = raw.shape
    chosen = (_rand(g, B) < cfg.elastic).nonzero().flatten().tolist()
    if not chosen or Y < 4 or X < 4:
        return raw, labels
    n = len(chosen)
    coarse = (_rand(g, n, 2, 4, 4) * 2 - 1) * cfg.elastic_strength
    disp = F.interpolate(coarse, size=(Y, X), mode="bicubic", align_corners=True)  # pixels, (n, 2, Y, X)
    ys = torch.linspace(-1, 1, Y)
    xs = torch.linspace(-1, 1, X)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx + disp[:, 1] * 2 / max(X - 1, 1), gy + disp[:, 0] * 2 / max(Y - 1, 1)], dim=-1)
    grid = grid.repeat_interleave(Z, dim=0)  # (n*Z, Y, X, 2): one warp per patch, applied to all its slices
    idx = torch.tensor(chosen)
    r = raw[idx].reshape(n * Z, 1, Y, X)
    lab = labels[idx].reshape(n * Z, 1, Y, X).float()  # exact for ids < 2**24
    r = F.grid_sample(r, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    lab = F.grid_sample(lab, grid, mode="nearest", padding_mode="reflection", align_corners=True)
    raw[idx] = r.reshape(n, Z, Y, X)
    labels[idx] = lab.reshape(n, Z, Y, X).round().long()
    return raw, labels


def _intensity(raw, cfg, g):
    import torch
    import torch.nn.functional as F

    B = raw.shape[0]
    for b in range(B):
        x = raw[b]
        if cfg.gamma > 0 and bool(_rand(g, 1) < cfg.gamma):
            lo, hi = x.min(), x.max()
            span = (hi - lo).clamp_min(1e-6)
            gamma = float(torch.exp((_rand(g, 1) * 2 - 1) * 0.4))  # 0.67 .. 1.5
            x = ((x - lo) / span).pow(gamma) * span + lo
        if cfg.contrast > 0 and bool(_rand(g, 1) < cfg.contrast):
            factor = 0.75 + 0.5 * float(_rand(g, 1))
            shift = 0.2 * (float(_rand(g, 1)) - 0.5)
            mean = x.mean()
            x = (x - mean) * factor + mean + shift
        if cfg.blur > 0 and bool(_rand(g, 1) < cfg.blur):
            sigma = 0.5 + float(_rand(g, 1))
            radius = max(1, int(2 * sigma + 0.5))
            t = torch.arange(-radius, radius + 1, dtype=torch.float32)
            k = torch.exp(-0.5 * (t / sigma) ** 2)
            k = k / k.sum()
            s = x[:, None]  # (Z, 1, Y, X): blur in xy
            s = F.conv2d(F.pad(s, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
            s = F.conv2d(F.pad(s, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
            x = s[:, 0]
        if cfg.noise > 0 and bool(_rand(g, 1) < cfg.noise):
            std = 0.1 * float(_rand(g, 1))
            x = x + torch.randn(x.shape, generator=g) * std
        raw[b] = x
    return raw


def _section_defects(raw, labels, cfg, g):
    """Missing section (a slice replaced by the patch mean) and misalignment (the slices from a random z on
    shifted in y, x; labels shifted with them, the uncovered strip becomes unlabelled)."""
    import torch

    B, Z, Y, X = raw.shape
    for b in range(B):
        if cfg.missing_section > 0 and bool(_rand(g, 1) < cfg.missing_section):
            z = int(torch.randint(Z, (1,), generator=g))
            raw[b, z] = raw[b].mean()
        if cfg.misalignment > 0 and bool(_rand(g, 1) < cfg.misalignment):
            z0 = int(torch.randint(1, Z, (1,), generator=g))
            max_shift = max(1, min(Y, X) // 16)
            dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
            if dy or dx:
                raw[b, z0:] = raw[b, z0:].roll((dy, dx), (1, 2))
                lab = labels[b, z0:].roll((dy, dx), (1, 2))
                if dy > 0:
                    lab[:, :dy] = 0
                elif dy < 0:
                    lab[:, dy:] = 0
                if dx > 0:
                    lab[:, :, :dx] = 0
                elif dx < 0:
                    lab[:, :, dx:] = 0
                labels[b, z0:] = lab
    return raw, labels
