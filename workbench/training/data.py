"""Reading the training data and normalising raw intensities the same way in training and prediction."""

from __future__ import annotations

import numpy as np

from workbench.errors import WorkbenchError

#: at most this many voxels are looked at to estimate the normalisation percentiles
PERCENTILE_SAMPLE = 4_000_000


def as_array(data, what: str = "raw") -> np.ndarray:
    """A ``Volume`` or array-like (Z, Y, X) or (Y, X) as a 3D numpy array."""
    read = getattr(data, "read", None)
    arr = read() if callable(read) else np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise WorkbenchError(f"{what} must be a 3D (z, y, x) or 2D (y, x) array, got shape {arr.shape}")
    return arr


def compute_normalisation(raw: np.ndarray, percentiles=(0.5, 99.5)) -> dict:
    """Low and high intensity percentiles of ``raw`` (on a strided subset for large volumes)."""
    flat = raw.reshape(-1)
    step = max(1, flat.size // PERCENTILE_SAMPLE)
    lo, hi = np.percentile(flat[::step].astype(np.float64), list(percentiles))
    if not hi > lo:
        hi = lo + 1.0
    return {"low": float(lo), "high": float(hi), "percentiles": [float(p) for p in percentiles]}


def normalise(block: np.ndarray, norm: dict) -> np.ndarray:
    """``(block - low) / (high - low)`` as float32 (percentile normalisation, not clipped)."""
    lo, hi = norm["low"], norm["high"]
    out = np.asarray(block, dtype=np.float32) - np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    return out
