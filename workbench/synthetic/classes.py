"""The semantic classes of the synthetic sample's ground truth."""

from __future__ import annotations

#: ``labels/semantic`` values: id, name and display colour (hex RGB). 0 is cytoplasm/background.
SEMANTIC_CLASSES: list[dict] = [
    {"id": 0, "name": "background", "color": "#000000"},
    {"id": 1, "name": "membrane", "color": "#ffd700"},
    {"id": 2, "name": "mitochondrion", "color": "#ff4040"},
    {"id": 3, "name": "vesicle", "color": "#40c0ff"},
    {"id": 4, "name": "synaptic cleft", "color": "#40ff60"},
]

BACKGROUND, MEMBRANE, MITOCHONDRION, VESICLE, CLEFT = range(5)
