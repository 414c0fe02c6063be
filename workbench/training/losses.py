"""Masked losses for sparse labels: unlabelled voxels contribute exactly zero loss and zero gradient.

The masks multiply the per-voxel terms (and cross-entropy skips ``IGNORE_INDEX``), so a change of the
network output at an unlabelled voxel cannot change the loss.
"""

from __future__ import annotations

from workbench.training.targets import IGNORE_INDEX

DICE_SMOOTH = 1.0


def masked_cross_entropy(logits, target):
    """Mean cross-entropy over labelled voxels; ``target`` holds ``IGNORE_INDEX`` where unlabelled."""
    import torch.nn.functional as F

    n = (target != IGNORE_INDEX).sum().clamp_min(1)
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum") / n


def masked_dice(probs, onehot, mask):
    """1 - mean soft Dice over channels, computed on labelled voxels only.

    Args:
        probs, onehot: (B, C, *spatial) predictions in [0, 1] and targets.
        mask: broadcastable to ``probs``: 1 where labelled.
    """
    dims = [0, *range(2, probs.ndim)]
    p = probs * mask
    t = onehot * mask
    inter = (p * t).sum(dims)
    denom = p.sum(dims) + t.sum(dims)
    dice = (2 * inter + DICE_SMOOTH) / (denom + DICE_SMOOTH)
    return 1 - dice.mean()


def masked_ce_dice(logits, target):
    """Masked cross-entropy + masked soft Dice on the softmax (the default semantic loss)."""
    import torch.nn.functional as F

    mask = (target != IGNORE_INDEX).unsqueeze(1).to(logits.dtype)
    safe = target.clamp_min(0)
    onehot = F.one_hot(safe, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    probs = logits.float().softmax(1)
    return masked_cross_entropy(logits, target) + masked_dice(probs, onehot.float(), mask.float())


def masked_bce_dice(logits, target, mask):
    """Masked binary cross-entropy + masked soft Dice on the sigmoid (affinities)."""
    import torch.nn.functional as F

    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * mask).sum() / mask.sum().clamp_min(1)
    return bce + masked_dice(logits.sigmoid(), target, mask)
