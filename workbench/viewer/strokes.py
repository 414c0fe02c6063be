"""Strokes drawn in Neuroglancer's annotation layers, read from a viewer state (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stroke:
    """One annotation drawn by the user.

    Attributes:
        id: Neuroglancer's annotation id (stable across reads).
        label: class id (1..K) of the layer it was drawn in.
        kind: ``"point"``, ``"line"`` or ``"polyline"``.
        points_zyx: ``(N, 3)`` float array in voxel coordinates (``z, y, x``; voxel ``i`` spans
            ``[i, i + 1)``).
        layer: the annotation layer's name.
    """

    id: str
    label: int
    kind: str
    points_zyx: np.ndarray
    layer: str

    def index_points(self) -> np.ndarray:
        """Vertices in array index coordinates (voxel ``i``'s centre at ``i``): ``z`` as its slice index,
        ``y, x`` as floats. This is what ``LabelStore.add_stroke`` takes."""
        pts = self.points_zyx - 0.5
        pts[:, 0] = np.floor(self.points_zyx[:, 0])
        return pts

    def voxels(self, shape=None) -> np.ndarray:
        """The stroke's vertices as integer voxel indices ``(N, 3)``, clipped to ``shape`` if given."""
        idx = np.floor(self.points_zyx).astype(np.int64)
        if shape is not None:
            idx = np.clip(idx, 0, np.asarray(shape, dtype=np.int64) - 1)
        return idx


def annotation_points(annotation) -> tuple[str, np.ndarray] | None:
    """``(kind, points)`` of a Neuroglancer annotation, or None for types that are not strokes."""
    kind = annotation.type
    if kind == "point":
        pts = [annotation.point]
    elif kind == "line":
        pts = [annotation.point_a, annotation.point_b]
    elif kind == "polyline":
        pts = list(annotation.points)
        kind = "polyline"
    else:
        return None
    arr = np.asarray([[float(v) for v in p] for p in pts], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
        return None
    return kind, arr


def strokes_from_state(state, layers: Mapping[str, int]) -> list[Stroke]:
    """All strokes in the annotation layers ``layers`` (``{layer name: class id}``) of ``state``, in order."""
    out = []
    for layer_name, label in layers.items():
        if layer_name not in state.layers:
            continue
        layer = state.layers[layer_name]
        for ann in getattr(layer, "annotations", None) or []:
            got = annotation_points(ann)
            if got is None:
                continue
            kind, pts = got
            out.append(Stroke(id=str(ann.id), label=int(label), kind=kind, points_zyx=pts, layer=layer_name))
    return out
