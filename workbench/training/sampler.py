"""Class-balanced patch sampling from sparse labels, and the train/validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.errors import WorkbenchError

#: per class, at most this many voxel positions are kept as patch centres (a random subset)
MAX_CENTRES_PER_CLASS = 1_000_000


class PatchSampler:
    """Draws patches that contain labels: pick a class, then a labelled voxel of it, then a patch around it.

    Args:
        raw: normalised image (Z, Y, X), float32.
        labels: sparse labels (Z, Y, X), 0 = unlabelled.
        patch_shape: (z, y, x). Axes where the volume is smaller are padded (raw by reflection, labels
            with 0) so any patch fits.
        balance: array (Z, Y, X) of the classes to balance (default: ``labels``); 0 = never a centre.
        seed: for the subset of centres kept when a class has very many voxels.
    """

    def __init__(self, raw: np.ndarray, labels: np.ndarray, patch_shape: Sequence[int], balance=None, seed: int = 0):
        if raw.shape != labels.shape:
            raise WorkbenchError(f"labels shape {labels.shape} differs from raw shape {raw.shape}")
        self.patch_shape = tuple(int(p) for p in patch_shape)
        balance = labels if balance is None else balance
        pad = [(0, 0) if s >= p else ((p - s) // 2, p - s - (p - s) // 2) for s, p in zip(raw.shape, self.patch_shape)]
        if any(any(p) for p in pad):
            raw = _pad_reflect(raw, pad)
            labels = np.pad(labels, pad)
            balance = np.pad(balance, pad)
        self.raw = raw
        self.labels = labels
        rng = np.random.default_rng(seed)
        self.classes: list[int] = []
        self.centres: list[np.ndarray] = []
        for c in np.unique(balance):
            if c == 0:
                continue
            idx = np.flatnonzero(balance == c)
            if idx.size > MAX_CENTRES_PER_CLASS:
                idx = np.sort(rng.choice(idx, MAX_CENTRES_PER_CLASS, replace=False))
            self.classes.append(int(c))
            self.centres.append(idx)
        if not self.classes:
            raise WorkbenchError("labels contain no labelled voxel (0 = unlabelled): annotate something first")

    def __len__(self) -> int:
        return int(sum(c.size for c in self.centres))

    def patch_start(self, rng: np.random.Generator) -> tuple[int, ...]:
        """Start (z, y, x) of a patch containing a labelled voxel of a uniformly chosen class."""
        k = int(rng.integers(len(self.classes)))
        flat = self.centres[k][int(rng.integers(self.centres[k].size))]
        centre = np.unravel_index(flat, self.raw.shape)
        start = []
        for c, p, s in zip(centre, self.patch_shape, self.raw.shape):
            lo = max(0, int(c) - p + 1)
            hi = min(int(c), s - p)
            start.append(int(rng.integers(lo, hi + 1)))
        return tuple(start)

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch: raw float32 (B, z, y, x) and labels int64 (B, z, y, x)."""
        raws = np.empty((batch_size, *self.patch_shape), np.float32)
        labs = np.empty((batch_size, *self.patch_shape), np.int64)
        for b in range(batch_size):
            sl = tuple(slice(s, s + p) for s, p in zip(self.patch_start(rng), self.patch_shape))
            raws[b] = self.raw[sl]
            labs[b] = self.labels[sl]
        return raws, labs


def _pad_reflect(a: np.ndarray, pad) -> np.ndarray:
    # numpy's reflect needs at least 2 voxels on an axis; a single slice is repeated instead
    mode_axes = [s > 1 for s in a.shape]
    if all(mode_axes):
        return np.pad(a, pad, mode="reflect")
    a = np.pad(a, [p if ok else (0, 0) for p, ok in zip(pad, mode_axes)], mode="reflect")
    return np.pad(a, [(0, 0) if ok else p for p, ok in zip(pad, mode_axes)], mode="edge")


def split_validation(
    labels: np.ndarray,
    val_slices: Sequence[int] = (),
    val_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Split sparse labels into training and validation labels.

    Args:
        val_slices: z indices whose labels are held out.
        val_fraction: else, this fraction of the labelled connected components (strokes) of each class is held
            out (a class with a single component stays in training).

    Returns:
        (train_labels, val_labels or None when nothing is held out).

    Raises:
        WorkbenchError: a slice index outside the volume, or holding out would leave no training labels.
    """
    if len(val_slices):
        z = np.asarray(sorted({int(v) for v in val_slices}))
        if z.min() < 0 or z.max() >= labels.shape[0]:
            raise WorkbenchError(f"validation slices {list(z)} outside the volume (z has {labels.shape[0]} slices)")
        val = np.zeros_like(labels)
        val[z] = labels[z]
        train = labels.copy()
        train[z] = 0
    elif val_fraction > 0:
        from scipy import ndimage as ndi

        rng = np.random.default_rng(seed)
        val = np.zeros_like(labels)
        for c in np.unique(labels):
            if c == 0:
                continue
            comp, n = ndi.label(labels == c)
            if n < 2:
                continue
            k = min(n - 1, max(1, int(round(val_fraction * n))))
            held = rng.choice(np.arange(1, n + 1), k, replace=False)
            sel = np.isin(comp, held)
            val[sel] = c
        if not val.any():
            return labels, None
        train = np.where(val > 0, 0, labels)
    else:
        return labels, None
    if not train.any():
        raise WorkbenchError("holding out the validation labels leaves nothing to train on")
    return train, (val if val.any() else None)
