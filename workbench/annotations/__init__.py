"""Sparse annotations: scribbles, filled slices and boxes (0 = unlabelled, 1..K = classes)."""

from workbench.annotations.raster import stroke_mask
from workbench.annotations.store import Edit, LabelStore

__all__ = ["Edit", "LabelStore", "stroke_mask"]
