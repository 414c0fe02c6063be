"""An edge-aware smoothness loss on every voxel of a patch: scribbles say what, the image says where.

Scribbles sit inside their objects, so the masked loss never says where one class ends and the next begins;
a model trained on them places the boundary anywhere in the unlabelled band between the strokes (in practice
it grows the rare class). The local CRF loss (Tang et al., On regularized losses for weakly-supervised CNN
segmentation, ECCV 2018; Obukhov et al., Gated CRF loss, 2019) adds, over all pixels, labelled or not, the
expected disagreement of neighbouring predictions weighted by how alike the neighbours look:

    L = sum_i sum_j w_ij (1 - p_i . p_j) / sum_i sum_j w_ij,    w_ij = exp(-beta (I_i - I_j)^2) / |i - j|

so changing class is cheap across an edge of the image and dear inside a uniform region. ``beta`` is chosen
from the batch as in GrabCut (Rother et al. 2004): 1 / (2 mean (I_i - I_j)^2) over neighbouring pixels, so it
follows the contrast of the user's data with nothing to tune; the image is smoothed first (EM is noisy).
Neighbours are in-plane (y, x) at a few distances and directions (EM sections are anisotropic).

Tensors are torch: probabilities (B, C, *spatial) and the image (B, 1, *spatial); torch is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.training.hooks import Hook

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.hooks import Step
    from workbench.training.trainer import Trainer

#: in-plane neighbour offsets (dy, dx): four directions (the other four are the same pairs) at distances 1-3
DEFAULT_OFFSETS: tuple[tuple[int, int], ...] = tuple(
    (d * dy, d * dx) for d in (1, 2, 3) for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)))
#: sigma in pixels of the Gaussian smoothing of the image before its differences are taken
SMOOTHING_SIGMA = 1.0


def _pair_views(t, dy: int, dx: int):
    """The two views of ``t`` (..., H, W) whose elements are pixel pairs ``(y, x)`` and ``(y + dy, x + dx)``."""
    h, w = t.shape[-2:]
    y0, y1 = max(0, -dy), h - max(0, dy)
    x0, x1 = max(0, -dx), w - max(0, dx)
    return t[..., y0:y1, x0:x1], t[..., y0 + dy:y1 + dy, x0 + dx:x1 + dx]


def _smooth(image, sigma: float):
    """``image`` (B, 1, *spatial) smoothed in its last two axes by a Gaussian of ``sigma`` pixels."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return image
    r = max(1, int(round(2.5 * sigma)))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=image.dtype, device=image.device) ** 2 / (2 * sigma * sigma))
    g = g / g.sum()
    flat = image.reshape(-1, 1, *image.shape[-2:])
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return flat.reshape(image.shape)


def local_crf_loss(probs, image, offsets=DEFAULT_OFFSETS, smoothing: float = SMOOTHING_SIGMA):
    """The edge-weighted disagreement of neighbouring predictions, in [0, 1].

    Args:
        probs: (B, C, *spatial) class probabilities (softmax), any number of spatial axes >= 2.
        image: (B, 1, *spatial) the network's input (the kernel's intensities).
        offsets: in-plane (dy, dx) neighbour offsets; each unordered pair once.
        smoothing: Gaussian sigma (pixels) applied to the image before the differences.

    Returns:
        A scalar tensor: 0 when neighbours agree everywhere, 1 when they all disagree with certainty.

    Raises:
        ValueError: if ``probs`` and ``image`` do not share batch and spatial shape.
    """
    import torch

    if probs.shape[0] != image.shape[0] or probs.shape[2:] != image.shape[2:]:
        raise ValueError(f"probabilities {tuple(probs.shape)} and image {tuple(image.shape)} do not match")
    img = _smooth(image.float(), smoothing)[:, 0]
    probs = probs.float()
    with torch.no_grad():  # the kernel is a constant of the image
        a, b = _pair_views(img, 0, 1)
        c, d = _pair_views(img, 1, 0)
        mean_sq = 0.5 * ((a - b).square().mean() + (c - d).square().mean())
        beta = 0.5 / mean_sq.clamp_min(1e-12)
    total = probs.new_zeros(())
    weights = probs.new_zeros(())
    for dy, dx in offsets:
        ia, ib = _pair_views(img, dy, dx)
        pa, pb = _pair_views(probs, dy, dx)
        with torch.no_grad():
            w = torch.exp(-beta * (ia - ib).square()) / float((dy * dy + dx * dx) ** 0.5)
        total = total + (w * (1.0 - (pa * pb).sum(1))).sum()
        weights = weights + w.sum()
    return total / weights.clamp_min(1e-12)


class CRFLoss(Hook):
    """Adds ``weight`` x :func:`local_crf_loss` of the softmax of the logits on the batch's input image to
    the supervised loss (semantic targets); its value is logged as ``crf_loss``."""

    def __init__(self, weight: float, offsets=DEFAULT_OFFSETS):
        if weight < 0:
            raise ValueError(f"the CRF loss weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.offsets = tuple(offsets)
        self.last = float("nan")

    def loss(self, trainer: Trainer, step: Step, loss):
        term = local_crf_loss(step.logits.float().softmax(1), step.x, self.offsets)
        self.last = float(term.detach())
        return loss + self.weight * term

    def on_log(self, trainer: Trainer, record: dict) -> None:
        record["crf_loss"] = round(self.last, 5)


__all__ = ["CRFLoss", "DEFAULT_OFFSETS", "local_crf_loss"]
