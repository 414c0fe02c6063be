"""Checks of a share's pages in a browser, used by the static site's and the dashboard's tests."""

from __future__ import annotations

import numpy as np

#: the Bokeh models of the page, by name, and where their pixels are
PLOTS = ("wb-curves", "wb-compare", "wb-slice-raw", "wb-slice-prediction", "wb-slice-truth", "wb-slice-instances")

BOX_JS = """(name) => { const model = Bokeh.documents[0].get_model_by_name(name);
  const find = (v) => { if (v.model === model) return v;
    for (const c of (v.child_views || [])) { const f = find(c); if (f) return f; } return null; };
  for (const root of Object.values(Bokeh.index)) { const v = find(root);
    if (v) { const r = v.el.getBoundingClientRect(); const f = v.frame ? v.frame.bbox : null;
      return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height,
              fx: f ? f.left : 0, fy: f ? f.top : 0, fw: f ? f.width : r.width, fh: f ? f.height : r.height}; } }
  return null; }"""


def plot_box(page, name: str) -> dict:
    box = page.evaluate(BOX_JS, name)
    assert box is not None, f"no Bokeh view for {name}"
    return box


def check_site_page(page, url: str, shoot, pixels, tag: str) -> dict:
    """Load a share's index page at ``url``; check that every plot drew, that the slider changes the slice and
    that a click on a run in the comparison chooses it. Returns the plots' boxes and the Neuroglancer link;
    ``page.requests`` holds every URL the page asked for."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.index", timeout=60_000)
    page.wait_for_timeout(1500)
    shot = pixels.load(shoot(page, f"{tag}-page", full_page=True))
    boxes = {}
    for name in PLOTS:
        box = plot_box(page, name)
        crop = pixels.crop(shot, (box["x"] + box["fx"], box["y"] + box["fy"], box["fw"], box["fh"]))
        pixels.assert_not_uniform(crop, 4.0, what=name)
        boxes[name] = (box, crop)
    # prediction and truth panels show the class colours over the raw image
    pixels.assert_color_present(boxes["wb-slice-truth"][1], "#e6194b", 200, tol=70, what="(membrane in the truth)")
    # the slider changes the slice
    before = boxes["wb-slice-raw"][1]
    page.evaluate("() => { Bokeh.documents[0].get_model_by_name('wb-z-slider').value = 0; }")
    page.wait_for_timeout(800)
    after_shot = pixels.load(shoot(page, f"{tag}-slice0", full_page=True))
    box = boxes["wb-slice-raw"][0]
    after = pixels.crop(after_shot, (box["x"] + box["fx"], box["y"] + box["fy"], box["fw"], box["fh"]))
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 3, "the slider did not change the slice"
    label = page.evaluate("() => Bokeh.documents[0].get_model_by_name('wb-z-label').text")
    assert label == "slice z = 0"
    # a click on a run's point in the comparison chooses that run
    runs = page.evaluate("() => Bokeh.documents[0].get_model_by_name('wb-run-chooser').options")
    assert len(runs) == 2
    chosen = page.evaluate("() => Bokeh.documents[0].get_model_by_name('wb-run-chooser').value")
    box, crop = boxes["wb-compare"]
    red = pixels.hue_mask(crop, "r", min_value=150, margin=80)
    ys, xs = np.nonzero(red)
    assert xs.size > 20, "no run points drawn in the comparison"
    from scipy import ndimage

    lab, n = ndimage.label(red)
    assert n >= 2, f"expected two run points, found {n}"
    centres = ndimage.center_of_mass(red, lab, range(1, n + 1))
    page.evaluate(f"window.scrollTo(0, {max(0, box['y'] - 100)})")
    page.wait_for_timeout(300)
    for cy, cx in centres:
        page.mouse.click(box["x"] + box["fx"] + cx - page.evaluate("window.scrollX"),
                         box["y"] + box["fy"] + cy - page.evaluate("window.scrollY"))
        page.wait_for_timeout(400)
        now = page.evaluate("() => Bokeh.documents[0].get_model_by_name('wb-run-chooser').value")
        if now != chosen:
            break
    assert now != chosen and now in runs, "clicking a run in the comparison did not show its slices"
    ng_href = page.evaluate("() => document.getElementById('ng-current').href")
    assert now in page.evaluate("() => document.getElementById('ng-current').textContent")
    page.requests = requests
    return {"boxes": boxes, "neuroglancer": ng_href}


def check_neuroglancer(page, href: str, wait_for_neuroglancer, shoot, pixels, tag: str) -> None:
    """Open a share's Neuroglancer link: the share's layers are listed and the panels show data in class colours."""
    page.goto(href)
    wait_for_neuroglancer(page, timeout=90)
    page.wait_for_timeout(1500)
    names = page.evaluate("() => window.viewer.layerManager.managedLayers.map(l => l.name)")
    assert names[:2] == ["raw", "truth"] and any(n.endswith("/prediction") for n in names) and any(
        n.endswith("/instances") for n in names), names
    pixels.assert_not_error_panel(page)
    img = pixels.load(shoot(page, f"{tag}-neuroglancer"))
    pixels.assert_not_uniform(img[100:800, 100:1200], 10.0, what="Neuroglancer panels")
    coloured = pixels.hue_mask(img, "r", 120, 50).sum() + pixels.hue_mask(img, "g", 120, 50).sum()
    assert coloured > 200, "no class colour (membrane red, interior green) in Neuroglancer"


