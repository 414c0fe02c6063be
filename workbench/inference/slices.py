"""Predicting a single z slice (what the app shows while training): the slice plus the model's z context."""

from __future__ import annotations

import numpy as np

from workbench.inference.tiling import effective_halo, predict_region
from workbench.models.predictor import Predictor, as_predictor


def predict_slice(predictor: Predictor, raw, z: int, tta: bool = False) -> np.ndarray:
    """Class probabilities of slice ``z`` of ``raw`` (read with the predictor's z halo for 3D models).

    Args:
        predictor: a :class:`~workbench.models.predictor.Predictor` (or a minimal one).
        raw: a (z, y, x) volume or array.
        z: the slice.
        tta: combine the 8 yx rotations/flips.

    Returns:
        float32 (out_channels, y, x).

    Raises:
        IndexError: ``z`` outside the volume.
    """
    predictor = as_predictor(predictor)
    block, at = slice_with_context(predictor, raw, z)
    return predict_region(predictor, block, tta=tta)[:, at]


def slice_with_context(predictor: Predictor, raw, z: int) -> tuple[np.ndarray, int]:
    """Slice ``z`` of ``raw`` with the predictor's z halo on each side (clipped at the volume), and where
    slice ``z`` sits in it.

    Raises:
        IndexError: ``z`` outside the volume.
    """
    n = int(raw.shape[0])
    if not 0 <= z < n:
        raise IndexError(f"slice {z} outside a volume of {n} slices")
    hz = effective_halo(as_predictor(predictor))[0]
    z0, z1 = max(0, z - hz), min(n, z + hz + 1)
    return np.asarray(raw[z0:z1]), z - z0
