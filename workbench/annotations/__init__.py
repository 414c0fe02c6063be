"""Sparse annotations: scribbles, filled slices and boxes (0 = unlabelled, 1..K = classes)."""

from workbench.annotations.raster import stroke_mask
from workbench.annotations.scribbles import ScribbleStyle, simulate_scribbles
from workbench.annotations.store import Edit, LabelStore, LabelStoreOptions

__all__ = ["Edit", "LabelStore", "LabelStoreOptions", "ScribbleStyle", "simulate_scribbles", "stroke_mask"]
