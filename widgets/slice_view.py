"""A HoloViews slice view of a volume: raw grey levels, a coloured overlay, and optional scribbling.

Image coordinates: the slice is an ``hv.Image`` with ``bounds=(0, 0, X, Y)`` (x right, y up), so a drawn
point (x, y) is the voxel ``(z, Y - y, x)``. Big slices are shown strided (at most ``max_pixels`` a side);
coordinates stay in voxels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from widgets._hv import as_widget, display_range, setup


def stroke_to_voxels(xs, ys, z: int, shape_yx: tuple[int, int]) -> np.ndarray:
    """Map a stroke drawn in image coordinates to (n, 3) voxel coordinates (z, y, x), inside the slice.

    Repeated points are dropped; points outside the image are clipped to its border.
    """
    ny, nx = shape_yx
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    row = np.clip(ny - y, 0, ny - 1e-3)
    col = np.clip(x, 0, nx - 1e-3)
    pts = np.stack([np.full(row.shape, float(z)), row, col], axis=1)
    if len(pts) > 1:
        keep = np.r_[True, np.any(np.abs(np.diff(pts, axis=0)) > 1e-6, axis=1)]
        pts = pts[keep]
    return pts


def _send(stream, **values) -> None:
    """Trigger a stream (redraws a shown plot); outside a running event loop only record the values,
    since Panel schedules its updates on the loop (plain Python, unit tests)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        from widgets._common import in_kernel

        if not in_kernel():
            stream.update(**values)
            return
    stream.event(**values)


class SliceView:
    """One z slice of a volume as an interactive plot.

    Args:
        raw: a volume-like (``shape``, numpy slicing) to show in grey.
        overlay: ``overlay(z) -> RGBA (y, x, 4) uint8 or None`` drawn over the raw slice.
        draw: collect freehand strokes; ``on_stroke(points_zyx)`` gets each finished stroke.
        size: plot size in pixels (the longer side).
    """

    def __init__(
        self,
        raw,
        overlay: Callable[[int], np.ndarray | None] | None = None,
        draw: bool = False,
        on_stroke: Callable[[np.ndarray], None] | None = None,
        size: int = 512,
        max_pixels: int = 1024,
        title: str = "",
    ):
        hv = setup()
        from holoviews import streams

        self.raw = raw
        self.overlay_fn = overlay
        self.on_stroke = on_stroke
        nz, ny, nx = (int(s) for s in raw.shape)
        self.shape = (nz, ny, nx)
        self.step = max(1, math.ceil(max(ny, nx) / max_pixels))
        scale = size / max(ny, nx)
        self.width = max(120, int(round(nx * scale)))
        self.height = max(120, int(round(ny * scale)))
        self.pixels_per_voxel = scale
        self.title = title
        self.z = nz // 2
        self._range: tuple[float, float] | None = None
        self._seen: set = set()
        self._line_width = 3
        self._line_color = "#ff0000"

        self._zs = streams.Stream.define("Slice", z=self.z)()
        self._rev = streams.Stream.define("Revision", rev=0)()
        bounds = (0, 0, nx, ny)
        self.bounds = bounds
        opts = dict(width=self.width, height=self.height, xaxis=None, yaxis=None, toolbar=None,
                    default_tools=[], tools=[], shared_axes=False)

        raw_map = hv.DynamicMap(self._raw_image, streams=[self._zs]).opts(
            hv.opts.Image(cmap="gray", **opts, title=title))
        layers = raw_map
        if overlay is not None:
            over = hv.DynamicMap(self._overlay_image, streams=[self._zs, self._rev]).opts(
                hv.opts.RGB(**opts))
            layers = layers * over
        self.freehand = None
        if draw:
            path = hv.DynamicMap(self._empty_path, streams=[self._zs, self._rev])
            self.freehand = streams.FreehandDraw(source=path, num_objects=1000)
            self.freehand.add_subscriber(self._on_draw)
            layers = (layers * path).opts(hv.opts.Path(active_tools=["freehand_draw"]))
        self.plot = layers.opts(hv.opts.Overlay(toolbar=None if not draw else "right"))
        self._widget = None

    # ---- rendering (called by HoloViews)
    def _raw_image(self, z):
        import holoviews as hv

        z = int(min(max(z, 0), self.shape[0] - 1))
        img = np.asarray(self.raw[z : z + 1, :: self.step, :: self.step])[0]
        if self._range is None:
            self._range = display_range(img)
        lo, hi = self._range
        disp = np.clip((img.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        return hv.Image(disp, bounds=self.bounds, kdims=["x", "y"]).opts(clim=(0, 255))

    def _overlay_image(self, z, rev):
        import holoviews as hv

        z = int(min(max(z, 0), self.shape[0] - 1))
        rgba = self.overlay_fn(z) if self.overlay_fn is not None else None
        if rgba is None:
            rgba = np.zeros((self.shape[1], self.shape[2], 4), np.uint8)
        rgba = np.ascontiguousarray(rgba[:: self.step, :: self.step])
        return hv.RGB(rgba, bounds=self.bounds, kdims=["x", "y"], vdims=["R", "G", "B", "A"])

    def _empty_path(self, z, rev):
        import holoviews as hv

        return hv.Path([], kdims=["x", "y"]).opts(color=self._line_color, line_width=self._line_width)

    # ---- interaction
    @property
    def widget(self):
        """The plot as an ipywidget (built on first use)."""
        if self._widget is None:
            self._widget = as_widget(self.plot, self.width, self.height + (0 if self.freehand is None else 30))
        return self._widget

    def set_slice(self, z: int) -> None:
        z = int(min(max(int(z), 0), self.shape[0] - 1))
        if z == self.z and self._zs.z == z:
            return
        self.z = z
        if self._widget is None:  # nothing shown yet: the plot is first drawn with the stream's values
            self._zs.update(z=z)
        else:
            _send(self._zs, z=z)

    def refresh(self) -> None:
        """Redraw the overlay (and clear the drawn lines, which the overlay now shows)."""
        if self._widget is None:
            self._rev.update(rev=self._rev.rev + 1)
        else:
            _send(self._rev, rev=self._rev.rev + 1)

    def render(self):
        """The current slice as HoloViews elements (raw, overlay) without a browser (for checks and tests)."""
        raw = self._raw_image(self.z)
        over = self._overlay_image(self.z, self._rev.rev) if self.overlay_fn is not None else None
        return raw, over

    def set_pen(self, width_voxels: float, color: str) -> None:
        """Width (voxels) and colour of the line shown while drawing."""
        self._line_width = max(1, int(round(width_voxels * self.pixels_per_voxel)))
        self._line_color = color

    def _on_draw(self, data=None, **_):
        if not data or self.on_stroke is None:
            return
        for xs, ys in zip(data.get("xs", []), data.get("ys", [])):
            xs = list(xs)
            ys = list(ys)
            if len(xs) < 1:
                continue
            # the stream holds every stroke drawn since the plot was last redrawn: handle each once
            key = (self._rev.rev, self.z, hash(tuple(np.round(np.asarray(xs, float), 2))),
                   hash(tuple(np.round(np.asarray(ys, float), 2))))
            if key in self._seen:
                continue
            self._seen.add(key)
            self.on_stroke(stroke_to_voxels(xs, ys, self.z, self.shape[1:]))

    def simulate_stroke(self, xs, ys) -> None:
        """Feed a stroke as if drawn with the mouse (image coordinates); for tests and scripting."""
        if self.on_stroke is not None:
            self.on_stroke(stroke_to_voxels(xs, ys, self.z, self.shape[1:]))
