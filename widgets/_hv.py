"""HoloViews in notebooks and Voila, offline: the one place that loads and configures it.

The default ``hv.extension('bokeh')`` fetches BokehJS from a CDN and renders nothing offline. Panel's
ipywidgets comms with inline resources (``jupyter_bokeh``) work offline, and ``pn.ipywidget(plot)`` turns a
plot into a real ipywidget that can live inside tabs and boxes. Plots get fixed pixel sizes: responsive
Bokeh plots collapse inside ipywidgets boxes.
"""

from __future__ import annotations

import numpy as np

_READY = False


def setup():
    """Load HoloViews + Panel for ipywidgets (idempotent); returns the ``holoviews`` module."""
    global _READY
    import holoviews as hv

    if not _READY:
        import panel as pn

        pn.extension(comms="ipywidgets", inline=True)
        hv.extension("bokeh", inline=True, logo=False)
        # Bokeh's WebGL backend paints every plot through one WebGL context shared by the page: a slice view
        # opened after other image plots then stayed blank (data present, nothing painted). Images and a few
        # strokes need no WebGL; the 2D canvas draws them reliably.
        hv.renderer("bokeh").webgl = False
        _READY = True
    return hv


def as_widget(plot, width: int | None = None, height: int | None = None):
    """A HoloViews object as an ipywidget (``jupyter_bokeh`` BokehModel)."""
    import panel as pn

    setup()
    w = pn.ipywidget(plot)
    if width:
        w.layout.width = f"{width + 10}px"
    if height:
        w.layout.height = f"{height + 10}px"
    return w


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#ff8800' -> (255, 136, 0); unknown strings give grey."""
    c = str(color).lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    try:
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    except ValueError:
        return 128, 128, 128


def label_rgba(labels: np.ndarray, colors: dict[int, str], alpha: int = 150) -> np.ndarray:
    """A 2D label image as RGBA (uint8, (y, x, 4)); label 0 is transparent."""
    lut = np.zeros((max([int(labels.max()) if labels.size else 0, *colors.keys(), 0]) + 1, 4), np.uint8)
    for k, col in colors.items():
        if k > 0:
            lut[k, :3] = hex_to_rgb(col)
            lut[k, 3] = alpha
    for k in range(1, lut.shape[0]):  # labels without a colour still show
        if lut[k, 3] == 0:
            lut[k] = (*_palette(k), alpha)
    return lut[labels.astype(np.intp, copy=False)]


def instance_rgba(ids: np.ndarray, alpha: int = 255) -> np.ndarray:
    """Instance ids as random but stable colours; 0 is black/transparent."""
    ids = ids.astype(np.uint64, copy=False)
    h = (ids * np.uint64(2654435761)) & np.uint64(0xFFFFFF)
    rgba = np.zeros((*ids.shape, 4), np.uint8)
    rgba[..., 0] = (h >> np.uint64(16)) & np.uint64(255)
    rgba[..., 1] = (h >> np.uint64(8)) & np.uint64(255)
    rgba[..., 2] = h & np.uint64(255)
    rgba[..., :3] = 60 + (rgba[..., :3].astype(np.uint16) * 195 // 255).astype(np.uint8)
    rgba[..., 3] = np.where(ids > 0, alpha, 0)
    return rgba


_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]


def _palette(k: int) -> tuple[int, int, int]:
    return hex_to_rgb(_PALETTE[(k - 1) % len(_PALETTE)])


def palette_color(k: int) -> str:
    """A distinct default colour for class ``k`` (1-based)."""
    return _PALETTE[(k - 1) % len(_PALETTE)]


def display_range(img: np.ndarray) -> tuple[float, float]:
    """Robust grey-level range (1st and 99th percentile) for showing a slice."""
    if img.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)], [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    return float(lo), float(hi)
