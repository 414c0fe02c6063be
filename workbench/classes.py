"""Annotation classes and their colours: the one palette, the one class record, and the colour maps.

Every view of labels uses this module: the app's slice views, Neuroglancer, plots and exports. Class ids are
``1..K``; ``0`` is "unlabelled" and never drawn. Colours are ``#rrggbb`` strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

#: Colours for class ids 1, 2, 3, ... (cycling after 16): Trubetskoy's distinct colours, red (membrane) and
#: green (interior) first as users expect; saved projects and tests rely on ``#e6194b`` and ``#3cb44b``.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
           "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#aaffc3", "#000075")

#: Colour of a channel or label without a class.
GREY = "#888888"


@dataclass(frozen=True)
class LabelClass:
    """One annotation class: label value ``id`` (1..K), display ``name`` and ``color`` (``#rrggbb``)."""

    id: int
    name: str
    color: str


#: The name the viewer used for the class record (the same class).
ClassInfo = LabelClass


def default_color(class_id: int) -> str:
    """The palette colour of class ``class_id`` (1-based; cycles after the palette's end)."""
    return PALETTE[(int(class_id) - 1) % len(PALETTE)]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` (or ``#rgb``) to an (r, g, b) tuple of 0..255 ints.

    Raises:
        ValueError: not a hex colour.
    """
    c = str(color).strip().lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", c):
        raise ValueError(f"not a #rrggbb colour: {color!r}")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def rgb_to_hex(rgb: Sequence[int]) -> str:
    """(r, g, b) of 0..255 ints (a 4th value is ignored) to ``#rrggbb``."""
    return "#" + "".join(f"{int(v):02x}" for v in list(rgb)[:3])


def normalize_color(color: Any) -> str:
    """``#rrggbb`` (lower case) from ``#rgb``, ``#rrggbb`` or an (r, g, b) tuple of 0..255 ints.

    Raises:
        WorkbenchError: anything else.
    """
    if isinstance(color, (tuple, list)) and len(color) in (3, 4):
        if not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in color[:3]):
            raise WorkbenchError(f"colour components must be integers 0..255, got {color}")
        return rgb_to_hex(color)
    if isinstance(color, str) and re.fullmatch(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})", color.strip()):
        return rgb_to_hex(hex_to_rgb(color))
    raise WorkbenchError(f"colour must be '#rrggbb' or (r, g, b), got {color!r}")


def as_class(item: Any, index: int) -> LabelClass:
    """One class record from any form :func:`normalize_classes` accepts (``index``: its id when unsaid)."""
    if isinstance(item, LabelClass):
        return item
    if isinstance(item, str):
        return LabelClass(index, item, default_color(index))
    if isinstance(item, Mapping):
        cid = int(item.get("id", index))
        return LabelClass(cid, str(item.get("name", f"class {cid}")), str(item.get("color") or default_color(cid)))
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
        return LabelClass(index, item[0], item[1] if isinstance(item[1], str) else normalize_color(item[1]))
    cid = int(getattr(item, "id", index))
    return LabelClass(cid, str(getattr(item, "name", f"class {cid}")),
                      str(getattr(item, "color", None) or default_color(cid)))


def normalize_classes(classes: Iterable | Mapping | None, n_default: int = 2) -> list[LabelClass]:
    """The project's class list as :class:`LabelClass` records, sorted by id.

    Args:
        classes: ``[{id, name, color}]`` dicts (``project.json``), LabelClass records, objects with ``id``,
            ``name``, ``color`` attributes, ``(name, color)`` pairs, a ``{id: name}`` mapping, a list of names
            (ids 1..K), or None for ``n_default`` generic classes.
        n_default: how many classes None stands for.
    Returns:
        the classes; missing colours come from :data:`PALETTE`. Id 0 (unlabelled) is dropped.
    """
    if classes is None:
        classes = [f"class {i}" for i in range(1, n_default + 1)]
    if isinstance(classes, Mapping):
        classes = [{"id": int(k), "name": str(v)} for k, v in classes.items()]
    out = [as_class(c, i) for i, c in enumerate(classes, start=1)]
    return sorted((c for c in out if c.id > 0), key=lambda c: c.id)


def class_colors(classes: Iterable | Mapping | None) -> dict[int, str]:
    """``{id: colour}`` of the classes (anything :func:`normalize_classes` accepts)."""
    return {c.id: c.color for c in normalize_classes(classes)}


def prediction_colors(channel_names: Sequence[str], classes) -> list[str]:
    """Colours of prediction channels: the class of the same name, else the class at that position, else grey."""
    infos = normalize_classes(classes)
    by_name = {c.name: c.color for c in infos}
    ordered = [c.color for c in infos]
    return [by_name.get(n, ordered[i] if i < len(ordered) else GREY) for i, n in enumerate(channel_names)]


def channel_class_ids(channel_names: Sequence[str], classes) -> list[int]:
    """The class id each prediction channel stands for: the class of the same name, else channel + 1."""
    by_name = {c.name: c.id for c in normalize_classes(classes)}
    return [by_name.get(n, i + 1) for i, n in enumerate(channel_names)]


# ---------------------------------------------------------------------------------------- colour maps
def _rgb_or_grey(color: str) -> tuple[int, int, int]:
    try:
        return hex_to_rgb(color)
    except ValueError:
        return hex_to_rgb(GREY)


def label_rgba(labels: np.ndarray, colors: Mapping[int, str], alpha: int = 150) -> np.ndarray:
    """A label image as RGBA (uint8, ``(..., 4)``): label k in ``colors[k]`` (else its palette colour), 0 transparent."""
    labels = np.asarray(labels)
    n = max([int(labels.max()) if labels.size else 0, *colors.keys(), 0]) + 1
    lut = np.zeros((n, 4), np.uint8)
    for k in range(1, n):
        lut[k] = (*_rgb_or_grey(colors.get(k) or default_color(k)), alpha)
    return lut[labels.astype(np.intp, copy=False)]


def class_map(probs: Any) -> Any:
    """The most likely class id (channel + 1, uint8) of class probabilities ``(C, ...)``.

    ``probs`` is an array (numpy or dask: the result is the same kind); for a stored prediction use
    :func:`workbench.inference.prediction_class_map`.
    """
    return (probs.argmax(axis=0) + 1).astype(np.uint8)


def class_rgba(probs: np.ndarray, colors: Sequence[str], alpha: int = 140) -> np.ndarray:
    """``(C, y, x)`` class probabilities as RGBA of the most likely class (channel c in ``colors[c]``)."""
    lut = np.array([(*_rgb_or_grey(c), alpha) for c in colors], np.uint8)
    return lut[np.argmax(probs, axis=0)]


def instance_rgba(ids: np.ndarray, alpha: int = 255) -> np.ndarray:
    """Instance ids as random but stable colours (RGBA uint8); id 0 is transparent."""
    ids = np.asarray(ids).astype(np.uint64, copy=False)
    h = (ids * np.uint64(2654435761)) & np.uint64(0xFFFFFF)
    rgba = np.zeros((*ids.shape, 4), np.uint8)
    rgba[..., 0] = (h >> np.uint64(16)) & np.uint64(255)
    rgba[..., 1] = (h >> np.uint64(8)) & np.uint64(255)
    rgba[..., 2] = h & np.uint64(255)
    rgba[..., :3] = 60 + (rgba[..., :3].astype(np.uint16) * 195 // 255).astype(np.uint8)
    rgba[..., 3] = np.where(ids > 0, alpha, 0)
    return rgba
