"""HoloViews in notebooks and Voila, offline: the one place that loads and configures it.

The default ``hv.extension('bokeh')`` fetches BokehJS from a CDN and renders nothing offline. Panel's
ipywidgets comms with inline resources (``jupyter_bokeh``) work offline, and ``pn.ipywidget(plot)`` turns a
plot into a real ipywidget that can live inside tabs and boxes. Plots get fixed pixel sizes: responsive
Bokeh plots collapse inside ipywidgets boxes. Colours and colour maps (labels, classes, instances) are the
core's: :mod:`workbench.classes`.
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


def display_range(img: np.ndarray) -> tuple[float, float]:
    """Robust grey-level range (1st and 99th percentile) for showing a slice."""
    if img.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)], [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    return float(lo), float(hi)
