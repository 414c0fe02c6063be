"""Neuroglancer for the workbench: state builders (pure), the live viewer, and the annotation round trip.

``import workbench.viewer`` stays light; Neuroglancer is imported when a viewer or state is built.
"""

from __future__ import annotations

from workbench.classes import PALETTE, ClassInfo, default_color, normalize_classes
from workbench.viewer.state import (
    DISPLAY_DIMENSIONS,
    ProbabilityStyle,
    add_draw_layers,
    add_image_layer,
    add_instance_layer,
    add_labels_layer,
    add_probability_layers,
    add_suggestion_layer,
    add_uncertainty_layer,
    contrast_window,
    coordinate_space,
    new_state,
    set_layout,
    state_to_json,
)
from workbench.viewer.strokes import Stroke, strokes_from_state

__all__ = [
    "DISPLAY_DIMENSIONS",
    "PALETTE",
    "ProbabilityStyle",
    "ClassInfo",
    "Stroke",
    "WorkbenchViewer",
    "add_draw_layers",
    "add_image_layer",
    "add_instance_layer",
    "add_labels_layer",
    "add_probability_layers",
    "add_suggestion_layer",
    "add_uncertainty_layer",
    "contrast_window",
    "coordinate_space",
    "default_color",
    "enable_drawing",
    "new_state",
    "normalize_classes",
    "set_layout",
    "state_to_json",
    "strokes_from_state",
    "sync_annotations_to_store",
    "undo_last_stroke",
]


def __getattr__(name):
    if name == "WorkbenchViewer":
        from workbench.viewer.live import WorkbenchViewer

        return WorkbenchViewer
    if name in ("sync_annotations_to_store", "undo_last_stroke", "enable_drawing"):
        from workbench.viewer import sync

        return getattr(sync, name)
    raise AttributeError(f"module 'workbench.viewer' has no attribute {name!r}")
