"""Class colours: one fixed, distinguishable colour per class id, shared by every view of the labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Colours for class ids 1, 2, 3, ... (id 0 is "unlabelled" and never drawn). Picked to stay apart
#: on a grey EM background and from each other (a Tableau-like palette, saturated).
PALETTE = (
    "#ff3b30",  # 1 red
    "#34c759",  # 2 green
    "#007aff",  # 3 blue
    "#ffcc00",  # 4 yellow
    "#af52de",  # 5 purple
    "#ff9500",  # 6 orange
    "#5ac8fa",  # 7 cyan
    "#ff2d92",  # 8 pink
    "#a2845e",  # 9 brown
    "#8e8e93",  # 10 grey
)


@dataclass(frozen=True)
class ClassInfo:
    """One annotation class: ``id`` (1..K), display ``name`` and ``color`` (``#rrggbb``)."""

    id: int
    name: str
    color: str


def default_color(class_id: int) -> str:
    """The palette colour of a class id (cycles after ten classes)."""
    return PALETTE[(int(class_id) - 1) % len(PALETTE)]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` (or ``#rgb``) to an (r, g, b) tuple of 0..255 ints.

    Raises:
        ValueError: not a hex colour.
    """
    c = color.strip().lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    if len(c) != 6:
        raise ValueError(f"not a #rrggbb colour: {color!r}")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def normalize_classes(classes: Iterable | Mapping | None, n_default: int = 2) -> list[ClassInfo]:
    """Turn the project's class list into :class:`ClassInfo` objects.

    Args:
        classes: ``[{id, name, color}]`` dicts (``project.json``), ClassInfo objects, objects with ``id``,
            ``name``, ``color`` attributes, a ``{id: name}`` mapping, a list of names (ids 1..K), or None
            for ``n_default`` generic classes.
    Returns:
        classes sorted by id; missing colours come from :data:`PALETTE`. Id 0 (unlabelled) is dropped.
    """
    if classes is None:
        classes = [f"class {i}" for i in range(1, n_default + 1)]
    if isinstance(classes, Mapping):
        classes = [{"id": int(k), "name": str(v)} for k, v in classes.items()]
    out = []
    for i, c in enumerate(classes, start=1):
        if isinstance(c, ClassInfo):
            info = c
        elif isinstance(c, str):
            info = ClassInfo(i, c, default_color(i))
        elif isinstance(c, Mapping):
            cid = int(c.get("id", i))
            info = ClassInfo(cid, str(c.get("name", f"class {cid}")), str(c.get("color") or default_color(cid)))
        else:
            cid = int(getattr(c, "id", i))
            info = ClassInfo(cid, str(getattr(c, "name", f"class {cid}")), str(getattr(c, "color", None) or default_color(cid)))
        if info.id > 0:
            out.append(info)
    return sorted(out, key=lambda c: c.id)
