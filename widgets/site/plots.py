"""The site's interactive plots, as standalone Bokeh (made with HoloViews): training curves, the run
comparison and the slice views. No kernel: a slider and a run chooser swap the slice pictures that lie
beside the page (a CustomJS callback), and a click on a run in the comparison shows that run's slices.
"""

from __future__ import annotations

import math

#: size of one slice panel (pixels; fixed sizes: standalone pages have no container to fill)
PANEL = 300
#: the panels of the slice view: (key, title); prediction and instances follow the chosen run
PANELS = (("raw", "raw"), ("prediction", "prediction"), ("truth", "ground truth"), ("instances", "instances"))
#: line dash per curve
DASH = {"loss": "solid", "val_loss": "dashed"}
CATEGORY = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")

SLICE_JS = """
const i = Math.max(0, Math.min(slider.value, zs.length - 1));
const run = chooser.value;
for (const key of Object.keys(sources)) {
  const base = (key === 'raw' || key === 'truth') ? fixed[key] : (perrun[run] || {})[key];
  sources[key].data = {url: [base ? base + '/' + i + '.jpg' : ''], x: [0], y: [height], w: [width], h: [height]};
  titles[key].text = labels[key] + (base ? '' : ' (none)') + '  z ' + zs[i];
}
zlabel.text = 'slice z = ' + zs[i];
if (window.wbOnRun) { window.wbOnRun(run); }
"""

TAP_JS = """
const idx = src.selected.indices;
if (idx.length > 0) { chooser.value = runs[idx[0]]; }
"""


def _hv():
    import holoviews as hv
    import holoviews.plotting.bokeh

    return hv


def curves_plot(runs: list[dict], width: int = 620, height: int = 300):
    """Training loss (solid) and validation loss (dashed) of every run against the iteration."""
    hv = _hv()
    items = []
    for i, run in enumerate(runs):
        color = CATEGORY[i % len(CATEGORY)]
        for key, dash in DASH.items():
            pts = run.get("curves", {}).get(key) or []
            if pts:
                items.append(hv.Curve(pts, "iteration", "loss", label=f"{run['id']} {key.replace('_', ' ')}")
                             .opts(color=color, line_dash=dash, line_width=2))
    if not items:
        items = [hv.Curve([], "iteration", "loss")]
    overlay = hv.Overlay(items).opts(width=width, height=height, title="training curves", show_grid=True,
                                     legend_position="top_right", toolbar="above")
    fig = hv.render(overlay, backend="bokeh")
    fig.name = "wb-curves"
    return fig


def comparison_value(run: dict) -> tuple[str, float]:
    """What the comparison plots for a run: pixel error against the truth, else the last validation or
    training loss."""
    px = (run.get("scores") or {}).get("classes", {}).get("pixel_error")
    if px is not None and math.isfinite(px):
        return "pixel error", float(px)
    final = run.get("final") or {}
    for key in ("val_loss", "loss"):
        if key in final:
            return key.replace("_", " "), float(final[key])
    return "loss", float("nan")


def comparison_plot(runs: list[dict], width: int = 420, height: int = 300):
    """One point per run (training seconds against its score); returns ``(figure, its data source)``."""
    hv = _hv()
    label = comparison_value(runs[0])[0] if runs else "score"
    rows = [(float(r.get("duration_s") or 0.0), comparison_value(r)[1], r["id"], r["architecture"]["name"])
            for r in runs]
    points = hv.Points(rows, ["training seconds", label], ["run", "architecture"]).opts(
        size=14, color="#d62728", tools=["tap", "hover"], width=width, height=height, show_grid=True,
        title="runs compared (click a run to see its slices)", nonselection_alpha=0.35, toolbar="above",
        padding=0.15)
    fig = hv.render(points, backend="bokeh")
    fig.name = "wb-compare"
    src = next(r.data_source for r in fig.renderers if hasattr(r, "data_source"))
    return fig, src


def slice_view(manifest: dict):
    """The slice panels (raw, prediction, truth, instances), the run chooser and the z slider; returns
    ``(layout, chooser)``."""
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS, Div, Range1d, Select, Slider
    from bokeh.plotting import figure

    pics = manifest["pictures"]
    n, height, width = pics["shape"]
    layers = manifest["layers"]
    runs = manifest["runs"]
    fixed = {k: layers[k]["pictures"] for k in ("raw", "truth") if k in layers}
    perrun = {r["id"]: {name.split("/", 1)[1]: layers[name]["pictures"] for name in r["layers"]} for r in runs}
    shown = [(k, t) for k, t in PANELS if k in fixed or any(k in v for v in perrun.values())]
    scale = PANEL / max(width, height)
    first = runs[-1]["id"] if runs else ""
    chooser = Select(title="run", value=first, options=[r["id"] for r in runs] or [""], width=320,
                     name="wb-run-chooser")
    slider = Slider(start=0, end=max(1, n - 1), value=n // 2, step=1, title="", width=320, name="wb-z-slider",
                    disabled=n < 2, show_value=False)
    zlabel = Div(text=f"slice z = {pics['z'][n // 2]}", name="wb-z-label", width=120)
    sources, titles, figs = {}, {}, []
    for key, title in shown:
        base = fixed.get(key) if key in fixed else perrun.get(first, {}).get(key)
        src = ColumnDataSource({"url": [f"{base}/{n // 2}.jpg" if base else ""], "x": [0], "y": [height],
                                "w": [width], "h": [height]})
        f = figure(width=int(width * scale) + 10, height=int(height * scale) + 30, title=title,
                   x_range=Range1d(0, width, bounds=(0, width)), y_range=Range1d(0, height, bounds=(0, height)),
                   tools="pan,wheel_zoom,reset", toolbar_location=None, name=f"wb-slice-{key}")
        f.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=src)
        f.axis.visible = False
        f.grid.visible = False
        sources[key], titles[key] = src, f.title
        figs.append(f)
    cb = CustomJS(args=dict(slider=slider, zlabel=zlabel, chooser=chooser, sources=sources, titles=titles, fixed=fixed,
                            perrun=perrun, zs=list(pics["z"]), labels=dict(shown), width=width, height=height),
                  code=SLICE_JS)
    slider.js_on_change("value", cb)
    chooser.js_on_change("value", cb)
    return column(row(chooser, column(zlabel, slider)), row(*figs), name="wb-slices"), chooser


def site_plots(manifest: dict) -> dict:
    """Every interactive plot of the index page in one Bokeh document (so the comparison drives the slice
    view): ``{"curves", "compare", "slices"}`` models (``compare`` only with runs)."""
    from bokeh.models import CustomJS

    runs = manifest["runs"]
    out = {}
    slices, chooser = slice_view(manifest)
    out["slices"] = slices
    if runs:
        out["curves"] = curves_plot(runs)
        compare, src = comparison_plot(runs)
        src.selected.js_on_change("indices", CustomJS(args=dict(src=src, chooser=chooser,
                                                                runs=[r["id"] for r in runs]), code=TAP_JS))
        out["compare"] = compare
    return out
