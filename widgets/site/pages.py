"""The HTML pages of a share: ``index.html`` (interactive: plots, slice views, Neuroglancer links) and
``summary.html`` (a report that prints well), made from the manifest of :func:`workbench.share.write_share`.

Everything the pages load lies in the site: BokehJS is written once to ``static/bokeh.js`` (Bokeh's inline
resources), the styles to ``static/site.css``; no request leaves the site's origin.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from widgets.site.plots import comparison_value, site_plots

BOKEH_JS = "static/bokeh.js"
CSS = "static/site.css"
SITE_JS = "static/site.js"

STYLE = """
:root { --fg: #1d2430; --muted: #5b6472; --line: #d8dde6; --accent: #2b6cb0; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1320px; padding: 18px 28px 40px; }
h1 { font-size: 1.7em; margin: 0.2em 0; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.muted { color: var(--muted); } a { color: var(--accent); }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.93em; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f3f5f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: -2px;
          margin-right: 6px; border: 1px solid #0003; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 10px 0; }
.card p { margin: 4px 0; } .pill { background: #eef2f8; border-radius: 10px; padding: 1px 8px; font-size: .85em; }
.ng-link { display: inline-block; background: var(--accent); color: #fff; padding: 5px 12px; border-radius: 6px;
           text-decoration: none; margin: 4px 6px 4px 0; }
nav a { margin-right: 14px; }
figure { margin: 0 10px 10px 0; display: inline-block; vertical-align: top; width: 220px; }
figcaption { font-size: .85em; color: var(--muted); overflow-wrap: anywhere; }
.pictures img { width: 100%; height: auto; border: 1px solid var(--line); }
@media print {
  @page { size: A4; margin: 14mm; }
  body { max-width: none; padding: 0; font-size: 11pt; }
  nav, .no-print, .ng-link { display: none !important; }
  h2 { break-after: avoid; } table, figure, .card, svg { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  figure { width: 31%; } table { font-size: 8.5pt; } th, td { padding: 2px 5px; }
}
"""

#: builds the "Open in Neuroglancer" links: the states' {SITE} becomes this site's absolute URL
SITE_SCRIPT = """
(function () {
  const site = new URL('.', document.currentScript ? document.currentScript.src.replace(/static\\/site\\.js.*$/, '') :
                       window.location.href).href;
  function link(state) {
    const text = JSON.stringify(state).split('{SITE}').join(site);
    return site + CLIENT + '#!' + encodeURIComponent(text);
  }
  window.wbNeuroglancerUrl = function (key) { return link(STATES[key]); };
  document.querySelectorAll('a.ng-link[data-state]').forEach(function (a) { a.href = link(STATES[a.dataset.state]); });
  // served by the dashboard: the project as it is now, full resolution (a static server has no live.json)
  fetch(site + 'live.json', {cache: 'no-store'}).then(function (r) { return r.ok ? r.json() : null; })
    .then(function (state) { const a = document.getElementById('ng-live');
      if (state && a) { STATES.live = state; a.href = link(state); a.style.display = ''; } })
    .catch(function () {});
  window.wbOnRun = function (run) {
    const a = document.getElementById('ng-current');
    if (a && STATES[run]) { a.href = link(STATES[run]); a.textContent = 'Open ' + run + ' in Neuroglancer'; }
  };
})();
"""


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return _e(v)


def _duration(s) -> str:
    if s is None:
        return "–"
    s = float(s)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def bokeh_js() -> str:
    """BokehJS (core and widgets) from Bokeh's inline resources: no CDN."""
    from bokeh.resources import Resources

    return "\n".join(Resources(mode="inline", components=["bokeh", "bokeh-widgets"]).js_raw)


class StaticPages:
    """Writes ``index.html``, ``summary.html`` and ``static/`` (implements :class:`workbench.share.SitePages`)."""

    def fixed_bytes(self) -> int:
        return len(bokeh_js().encode()) + 60_000

    def write(self, site: Path, manifest: dict) -> list[Path]:
        site = Path(site)
        (site / "static").mkdir(exist_ok=True)
        (site / BOKEH_JS).write_text(bokeh_js(), encoding="utf-8")
        (site / CSS).write_text(STYLE, encoding="utf-8")
        states = {"project": manifest["neuroglancer"]["project"]}
        states.update({r["id"]: r["neuroglancer"] for r in manifest["runs"]})
        script = (f"const CLIENT = {json.dumps(manifest['neuroglancer']['client'])};\n"
                  f"const STATES = {json.dumps(states)};\n" + SITE_SCRIPT)
        (site / SITE_JS).write_text(script, encoding="utf-8")
        index, summary = site / "index.html", site / "summary.html"
        index.write_text(index_html(manifest), encoding="utf-8")
        summary.write_text(summary_html(manifest), encoding="utf-8")
        return [index, summary]


def _head(title: str, bokeh: bool) -> str:
    scripts = f'<script src="{BOKEH_JS}"></script>' if bokeh else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="{CSS}">{scripts}</head><body>')


def _project_section(m: dict) -> str:
    p = m["project"]
    plan = m["plan"]
    vs = " × ".join(f"{v:g}" for v in p["voxel_size"])
    shown = " × ".join(str(s) for s in plan["shape"])
    rows = [("shape (z, y, x)", " × ".join(str(s) for s in p["shape"])), ("voxel size (nm)", vs),
            ("data type", p.get("dtype")), ("source", f"built-in sample (seed {p['sample'].get('seed', 0)})" if p.get("sample") else (p.get("source") or "–")),
            ("ground truth", "yes" if p.get("has_truth") else "no"),
            ("in this share", f"{shown} voxels at {' × '.join(f'{v:g}' for v in m['voxel_size'])} nm"
             + (f" ({'; '.join(plan['steps'])} to fit {plan['budget_bytes'] / 1e6:.0f} MB)" if plan["steps"] else ""))]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    classes = "".join(f'<tr><td class="num">{c["id"]}</td><td><span class="swatch" style="background:{_e(c["color"])}">'
                      f'</span>{_e(c["name"])}</td><td><code>{_e(c["color"])}</code></td></tr>' for c in p["classes"])
    a = p["annotations"]
    per = "".join(f'<tr><td>{_e(c["name"])}</td><td class="num">{c["voxels"]:,}</td>'
                  f'<td class="num">{100 * c["fraction"]:.3f} %</td></tr>' for c in a["per_class"])
    slices = ", ".join(str(z) for z in a["labelled_slices"][:40]) + (" …" if len(a["labelled_slices"]) > 40 else "")
    return (f'<h2 id="data">Data</h2><table class="wb-project">{body}</table>'
            f'<h2 id="classes">Classes</h2><table class="wb-classes"><tr><th>id</th><th>class</th><th>colour</th></tr>{classes}</table>'
            f'<h2 id="annotations">Annotations</h2><p>{a["labelled"]:,} of {a["voxels"]:,} voxels labelled '
            f'({100 * a["fraction"]:.3f} %), on {len(a["labelled_slices"])} slices ({_e(slices) or "none"}); '
            f'{a["edits"]} edit{"" if a["edits"] == 1 else "s"}.</p><table class="wb-annotations"><tr><th>class</th><th>voxels</th><th>share</th></tr>{per}</table>')


def runs_table(m: dict) -> str:
    """All runs in one table: architecture, iterations, time, device, last losses, scores, uncertainty."""
    if not m["runs"]:
        return "<p class='muted'>No trained runs in this share.</p>"
    head = ("<tr><th>run</th><th>architecture</th><th>iterations</th><th>training time</th><th>device</th>"
            "<th>loss</th><th>val loss</th><th>pixel error</th><th>mean IoU</th><th>adapted Rand</th>"
            "<th>uncertain voxels</th></tr>")
    rows = []
    for r in m["runs"]:
        s = r.get("scores") or {}
        cls, inst = s.get("classes") or {}, s.get("instances") or {}
        u = r.get("uncertainty") or {}
        rows.append(
            f'<tr data-run="{_e(r["id"])}"><td><code>{_e(r["id"])}</code></td><td>{_e(r["architecture"].get("title") or r["architecture"]["name"])}</td>'
            f'<td class="num">{r["iterations"]}</td><td class="num">{_duration(r.get("duration_s"))}</td>'
            f'<td>{_e(r.get("device") or "–")}{" · " + _e(r["precision"]) if r.get("precision") else ""}</td>'
            f'<td class="num">{_fmt(r["final"].get("loss"))}</td><td class="num">{_fmt(r["final"].get("val_loss"))}</td>'
            f'<td class="num">{_fmt(cls.get("pixel_error"), 4)}</td><td class="num">{_fmt(cls.get("mean_iou"))}</td>'
            f'<td class="num">{_fmt(inst.get("are"))}</td>'
            f'<td class="num">{_fmt(100 * u["uncertain_fraction"], 1) + " %" if u else "–"}</td></tr>')
    return f'<table class="wb-runs">{head}{"".join(rows)}</table>'


def run_cards(m: dict) -> str:
    """One card per run: architecture card, options, Neuroglancer link."""
    out = []
    for r in m["runs"]:
        a = r["architecture"]
        opts = ", ".join(f"{_e(k)}={_e(v)}" for k, v in (a.get("options") or {}).items())
        o = r.get("options") or {}
        train = ", ".join(f"{k}={_e(o[k])}" for k in ("target", "iterations", "minutes", "batch_size", "patch_shape",
                                                       "lr", "optimizer", "schedule", "seed") if o.get(k) is not None)
        u = r.get("uncertainty")
        unc = (f"<p>Uncertainty: mean normalised entropy {u['mean_entropy']:.3f}, mean top probability "
               f"{u['mean_top_probability']:.3f}, {100 * u['uncertain_fraction']:.1f} % of voxels below "
               f"{u['uncertain_below']:g}.</p>") if u else ""
        out.append(
            f'<div class="card wb-run-card" id="run-{_e(r["id"])}"><p><b>{_e(r["id"])}</b> <span class="pill">'
            f'{_e(a.get("title") or a["name"])}</span> <span class="muted">{_e(r["created"])}</span></p>'
            f'<p class="muted">{_e(a.get("description", ""))}</p>'
            + (f'<p class="muted">Paper: {_e(a["paper"])}</p>' if a.get("paper") else "")
            + f'<p>Architecture options: {opts or "defaults"}</p><p>Training: {train}</p>{unc}'
            + objects_html(r.get("objects"))
            +             f'<a class="ng-link" data-state="{_e(r["id"])}" href="#">Open {_e(r["id"])} in Neuroglancer</a></div>')
    return "".join(out)


#: the object table's columns shown on the page (the CSV holds them all)
OBJECT_COLUMNS = (("id", "id"), ("class", "class"), ("voxels", "voxels"), ("volume_um3", "volume (µm³)"),
                  ("centroid_z", "z"), ("centroid_y", "y"), ("centroid_x", "x"), ("mean_probability", "mean p"))


def objects_html(objects: dict | None) -> str:
    """A run's objects: count, per class, median volume, the largest objects and a link to the CSV."""
    if not objects:
        return ""
    per = ", ".join(f"{_e(k)} {v}" for k, v in sorted(objects["per_class"].items()))
    head = "".join(f"<th>{_e(t)}</th>" for _, t in OBJECT_COLUMNS)
    rows = "".join("<tr>" + "".join(f'<td class="num">{_fmt(r.get(k), 2)}</td>' if k != "class"
                                    else f"<td>{_e(r.get(k))}</td>" for k, _ in OBJECT_COLUMNS) + "</tr>"
                   for r in objects["largest"])
    median = objects.get("median_volume_um3")
    return (f'<p>Objects: {objects["count"]:,} ({per}); median volume '
            f'{_fmt(median, 4)} µm³. The {len(objects["largest"])} largest '
            f'(<a class="wb-objects-csv" href="{_e(objects["csv"])}">all {objects["csv_rows"]:,} as CSV</a>):</p>'
            f'<table class="wb-objects">{head and "<tr>" + head + "</tr>"}{rows}</table>')


def index_html(m: dict) -> str:
    """The interactive page: summary tables, curves, run comparison (click: slices), slice views, Neuroglancer."""
    from bokeh.embed import components

    plots = site_plots(m)
    script, divs = components(plots)
    name = m["project"]["name"]
    last = m["runs"][-1]["id"] if m["runs"] else "project"
    plot_row = (f'<div class="plots">{divs.get("curves", "")}{divs.get("compare", "")}</div>' if m["runs"] else "")
    return (_head(f"{name} · EM Workbench results", True)
            + f'<h1>{_e(name)}</h1><p class="muted">Results shared from EM Workbench on {_e(m["created"])}.</p>'
            '<nav class="no-print"><a href="#data">data</a><a href="#runs">runs</a><a href="#slices">slices</a>'
            '<a href="summary.html">printable summary</a></nav>'
            + _project_section(m)
            + f'<h2 id="runs">Runs</h2>{runs_table(m)}{plot_row}{run_cards(m)}'
            + f'<h2 id="slices">Slices</h2><p class="no-print">Move the slider to change the slice; choose a run, '
            f'or click it in the comparison above.</p>{divs["slices"]}'
            + f'<p><a class="ng-link" id="ng-current" data-state="{_e(last)}" href="#">Open in Neuroglancer</a>'
            f'<a class="ng-link" data-state="project" href="#">Raw and truth in Neuroglancer</a>'
            f'<a class="ng-link" id="ng-live" style="display:none" href="#">Live project, full resolution, in '
            f'Neuroglancer</a></p>'
            + f'{script}<script src="{SITE_JS}"></script></body></html>')


def _svg_curves(runs: list[dict], width: int = 640, height: int = 220) -> str:
    """The loss curves as an inline SVG (prints crisply, needs no script)."""
    from widgets.site.plots import CATEGORY

    pts = [(x, y) for r in runs for k in ("loss", "val_loss") for x, y in r.get("curves", {}).get(k, [])]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad = 36

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y):
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    lines, legend = [], []
    for i, r in enumerate(runs):
        color = CATEGORY[i % len(CATEGORY)]
        for k, dash in (("loss", ""), ("val_loss", ' stroke-dasharray="6 4"')):
            c = r.get("curves", {}).get(k, [])
            if c:
                path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in c)
                lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{path}"/>')
        legend.append(f'<text x="{width - pad - 250}" y="{18 + 16 * i}" fill="{color}" font-size="12">'
                      f'{_e(r["id"])} (dashed: validation)</text>')
    axes = (f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>'
            f'<text x="{width / 2}" y="{height - 8}" font-size="12" text-anchor="middle">iteration ({x0:g} to {x1:g})</text>'
            f'<text x="4" y="{pad - 8}" font-size="12">loss ({y0:.3g} to {y1:.3g})</text>')
    return (f'<svg class="wb-curves-svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{axes}{"".join(lines)}{"".join(legend)}</svg>')


def summary_html(m: dict) -> str:
    """The printable report: data, classes, annotations, runs compared, curves, the middle slice of each layer."""
    name = m["project"]["name"]
    pics = m["pictures"]
    mid = len(pics["slices"]) // 2
    figs = []
    for key, layer in m["layers"].items():
        figs.append(f'<figure><img src="{_e(layer["pictures"])}/{mid}.jpg" alt="{_e(key)}">'
                    f'<figcaption>{_e(key)}, z {pics["z"][mid]}</figcaption></figure>')
    best = min(m["runs"], key=lambda r: comparison_value(r)[1], default=None) if m["runs"] else None
    verdict = (f"<p>Best run by {comparison_value(best)[0]}: <b>{_e(best['id'])}</b> "
               f"({comparison_value(best)[1]:.4f}).</p>") if best else ""
    return (_head(f"{name} · summary", False)
            + f'<h1>{_e(name)}: results summary</h1><p class="muted">EM Workbench · {_e(m["created"])} · '
            '<a class="no-print" href="index.html">interactive page</a></p>'
            + _project_section(m)
            + f'<h2 id="runs">Runs</h2>{verdict}{runs_table(m)}{_svg_curves(m["runs"])}'
            + f'<h2>Slices</h2><div class="pictures">{"".join(figs)}</div></body></html>')


def projects_html(entries: list[dict], title: str = "EM Workbench dashboard") -> str:
    """The dashboard's front page: one row per project (``{"name", "href", "runs", "shape"}``)."""
    rows = "".join(
        f'<tr><td><a class="wb-project-link" href="{_e(e["href"])}">{_e(e["name"])}</a></td>'
        f'<td>{_e(" × ".join(str(s) for s in e.get("shape") or []))}</td>'
        f'<td>{_e(", ".join(e.get("runs") or []) or "–")}</td></tr>' for e in entries)
    body = (f'<table class="wb-projects"><tr><th>project</th><th>shape</th><th>runs</th></tr>{rows}</table>'
            if entries else "<p>No projects in this folder.</p>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body><h1>{_e(title)}</h1>'
            '<p class="muted">Read-only: results, plots, slices and Neuroglancer of every project.</p>'
            f'{body}</body></html>')
