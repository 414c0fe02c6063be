"""Class colours for Neuroglancer: the workbench's one palette and class record (:mod:`workbench.classes`).

Kept so ``workbench.viewer.colors`` imports keep working; new code imports :mod:`workbench.classes`.
"""

from __future__ import annotations

from workbench.classes import PALETTE, ClassInfo, LabelClass, default_color, hex_to_rgb, normalize_classes

__all__ = ["PALETTE", "ClassInfo", "LabelClass", "default_color", "hex_to_rgb", "normalize_classes"]
