"""Tiny training data for the warm-start tests: a bright object and a background stroke (3 x 32 x 36)."""

from __future__ import annotations

import numpy as np

TINY_UNET = {"depth": 2, "base_channels": 4}


def tiny_training_data(shape=(3, 32, 36), seed: int = 0, classes: int = 2):
    """(raw uint8, sparse labels uint8): class 2 on a bright object, class 1 on a stroke (class 3: another one)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(60, 120, size=shape).astype(np.uint8)
    labels = np.zeros(shape, np.uint8)
    raw[:, 8:16, 8:20] = 200
    labels[:, 10:14, 10:18] = 2
    labels[:, 22:26, 4:30] = 1
    if classes == 3:
        labels[:, 2:5, 2:30] = 3
    return raw, labels
