"""The guided app as a person uses it, in headless chromium: sample data, unet2d, scribbles, ~30 s of training,
results in Neuroglancer; the annotation loop (a suggestion clicked, a correction painted over the prediction, a
warm retrain that changes the live preview); a page reload that finds the scribbles; and closing the page
ending its kernel.

Screenshots go to ``test-artifacts/`` only (git-ignored): tests never write tracked files. The README's tour
images are made by ``docs/make_tour.py`` (``make tour``).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import numpy as np
import pytest

CANVASES = """(sel) => { const root = document.querySelector(sel); if (!root) return [];
  const c = []; const walk = (r) => { r.querySelectorAll('*').forEach(e => { if (e.tagName === 'CANVAS') c.push(e);
  if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(root);
  return c.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }).filter(r => r[2] > 100); }"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """``workbench app`` on a free port with a small sample project (kernels see WORKBENCH_PROJECT)."""
    from widgets.serve import AppServerOptions, start_app_server
    from workbench.ports import free_port
    from workbench.project import Project, ProjectOptions

    root = tmp_path_factory.mktemp("app")
    project = Project.create(root / "projects" / "sample", raw=None,
                             options=ProjectOptions(sample_shape=(16, 256, 256)))
    data = root / "data"
    data.mkdir()
    server = start_app_server(AppServerOptions(port=free_port(), project=project.root, data=data))
    server.project_root = project.root
    yield server
    server.stop()


def _kernels(server) -> list[dict]:
    with urllib.request.urlopen(f"{server.base_url}api/kernels?token={server.token}", timeout=10) as r:
        return json.load(r)


def _kernel_pid(kernel_id: str) -> int | None:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if any(f"kernel-{kernel_id}" in part for part in (proc.info["cmdline"] or [])):
            return proc.pid
    return None


def _tab(page, title: str, panel: str) -> None:
    page.locator(".lm-TabBar-tab", has_text=title).click()
    page.wait_for_selector(f".wb-step-{panel}", state="visible", timeout=180_000)


def _canvas_box(page, selector: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        boxes = page.evaluate(CANVASES, selector)
        if boxes:
            return boxes[0]
        page.wait_for_timeout(300)
    raise AssertionError(f"no plot canvas rendered in {selector}")


def _drag_path(page, box, points) -> None:
    """Drag the mouse through ``points`` (fractions of the plot box, x right and y down)."""
    x, y, w, h = box
    page.mouse.move(x + w * points[0][0], y + h * points[0][1])
    page.mouse.down()
    for px, py in points[1:]:
        page.mouse.move(x + w * px, y + h * py, steps=3)
    page.mouse.up()


def _stroke_along(mask, erosion: int, length: int = 160, step: int = 4, margin: int = 24) -> list[tuple[float, float]]:
    """A stroke a person would draw on a class: along the longest path of the skeleton of ``mask`` (a 2D
    truth slice of the class, eroded by ``erosion`` pixels) away from the image border; as plot fractions."""
    from collections import deque

    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    if erosion:
        mask = ndi.binary_erosion(mask, iterations=erosion)
    skel = skeletonize(mask)
    skel[:margin], skel[-margin:], skel[:, :margin], skel[:, -margin:] = False, False, False, False
    lab, _ = ndi.label(skel, structure=np.ones((3, 3)))
    biggest = np.argmax(np.bincount(lab.ravel())[1:]) + 1
    pts = {tuple(int(v) for v in q) for q in np.argwhere(lab == biggest)}

    def farthest(start):
        parent, queue, last = {start: None}, deque([start]), start
        while queue:
            last = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (last[0] + dy, last[1] + dx)
                    if q in pts and q not in parent:
                        parent[q] = last
                        queue.append(q)
        return last, parent

    end, _ = farthest(next(iter(pts)))
    other, parent = farthest(end)
    path = [other]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    path = path[:length]
    ny, nx = mask.shape
    return [((c + 0.5) / nx, (r + 0.5) / ny) for r, c in path[::step]]


def _count(page, class_id: int) -> int:
    txt = page.inner_text(f".wb-step-annotate .wb-count-{class_id}")
    return int(txt.strip() or 0)


def _progress(page, panel_selector: str) -> float:
    w = page.evaluate("(s) => { const e = document.querySelector(s + ' .progress-bar'); return e ? e.style.width : ''; }",
                      panel_selector)
    return float(w.rstrip("%") or 0)


def _shoot_until(page, shoot, pixels, name, box, ok, timeout: float = 90.0):
    """Screenshot until ``ok(crop)`` holds for the crop at ``box`` (plots draw a little after they appear)."""
    deadline = time.monotonic() + timeout
    while True:
        shot = shoot(page, name)
        crop = pixels.crop(pixels.load(shot), box)
        if ok(crop) or time.monotonic() > deadline:
            return shot, crop
        page.wait_for_timeout(1000)


def _annotate(page, shoot, pixels, project_root) -> tuple[int, int]:
    """Step 3: one stroke per class, dragged with the mouse on the slice view; returns the labelled counts."""
    _tab(page, "3 Annotate", "annotate")
    box = _canvas_box(page, ".wb-annotate-view")
    page.wait_for_timeout(1500)
    # strokes along a membrane and through cells, where a person would draw them (taken from the truth)
    from workbench.project import Project

    truth = np.asarray(Project.open(project_root).truth[8:9])[0]
    strokes = {1: _stroke_along(truth == 1, 0), 2: _stroke_along(truth == 2, 4)}
    for class_id, name in ((1, "membrane"), (2, "interior")):
        page.locator(".wb-class-select button", has_text=name).click()
        page.wait_for_timeout(1500)  # let the view finish redrawing the previous stroke
        for attempt in range(3):  # as a person would: if a stroke did not take, draw it again
            _drag_path(page, box, strokes[class_id])
            try:
                page.wait_for_function(f"() => +document.querySelector('.wb-step-annotate .wb-count-{class_id}')"
                                       ".innerText > 0", timeout=30_000)
                break
            except Exception:
                assert attempt < 2, f"three {name} strokes drawn with the mouse never reached the project"
    counts = (_count(page, 1), _count(page, 2))
    shot, view = _shoot_until(page, shoot, pixels, "3-annotate", box,
                              lambda c: pixels.hue_mask(c, "r").sum() > 200 and pixels.hue_mask(c, "g", 120, 40).sum() > 200)
    assert pixels.hue_mask(view, "r").sum() > 200, "the membrane scribble is not drawn on the slice"
    assert pixels.hue_mask(view, "g", min_value=120, margin=40).sum() > 200, "the interior scribble is not drawn"
    return counts


def _train(page, shoot, pixels) -> None:
    """Step 4: train ~30 s; the progress bar moves and the loss curve grows while it runs."""
    _tab(page, "4 Train", "train")
    assert "CPU" in page.inner_text(".wb-train-device")
    page.select_option(".wb-train-duration select", label="30 s")
    page.click(".wb-action-train")
    page.wait_for_function("() => /iteration [1-9]/.test(document.querySelector('.wb-train-eta').innerText)",
                           timeout=180_000)
    p1 = _progress(page, ".wb-train-progress")
    curves = _canvas_box(page, ".wb-train-curves")
    early = pixels.load(shoot(page, "4-train-early"))
    page.wait_for_timeout(8000)
    p2 = _progress(page, ".wb-train-progress")
    assert p2 > p1 > 0, f"the progress bar did not move ({p1} -> {p2})"
    page.wait_for_function("() => document.querySelector('.wb-train-eta').innerText.startsWith('done')",
                           timeout=240_000)
    page.wait_for_timeout(2000)
    shot = shoot(page, "4-train")
    late = pixels.load(shot)
    blue = (48, 162, 218)  # HoloViews' first curve colour
    n_early = pixels.count_color(pixels.crop(early, curves), blue, tol=50)
    n_late = pixels.count_color(pixels.crop(late, curves), blue, tol=50)
    assert n_late > n_early and n_late > 30, f"the loss curve did not grow ({n_early} -> {n_late} px)"
    assert "training finished" in page.inner_text(".wb-status-train")


def _results(page, shoot, pixels, wait_for_neuroglancer) -> None:
    """Step 5: predict, then the prediction in the embedded Neuroglancer."""
    _tab(page, "5 Results", "results")
    page.click(".wb-action-predict")
    page.wait_for_function("() => document.querySelector('.wb-predict-eta').innerText.startsWith('done')",
                           timeout=240_000)
    assert "pixel error" in page.inner_text(".wb-metrics")
    page.click(".wb-step-results .wb-action-neuroglancer")
    frame_el = page.wait_for_selector(".wb-step-results iframe.wb-ng-frame", timeout=60_000)
    frame_el.scroll_into_view_if_needed()
    frame = frame_el.content_frame()
    frame.wait_for_function("() => window.viewer !== undefined", timeout=180_000)
    try:
        wait_for_neuroglancer(frame, timeout=90)
    except Exception:  # a loaded machine may keep loading chunks: the pixels below decide
        pass
    layers = frame.evaluate("() => window.viewer.state.toJSON().layers.map(l => l.name)")
    assert "raw" in layers and any(n.startswith("prob: ") for n in layers), layers

    def coloured(c):
        return (pixels.hue_mask(c, "r", min_value=100, margin=30).sum()
                + pixels.hue_mask(c, "g", min_value=100, margin=30).sum())

    shot, ng = _shoot_until(page, shoot, pixels, "5-results", frame_el.bounding_box(),
                            lambda c: pixels.std(c) > 8 and coloured(c) > 500, timeout=120)
    pixels.assert_not_uniform(ng, what="Neuroglancer view")
    pixels.assert_not_error_panel(frame)
    assert coloured(ng) > 500, "no class-coloured prediction pixels in Neuroglancer"
    page.evaluate("() => window.scrollTo(0, 0)")
    shoot(page, "5-results-top")


def _suggestion_and_correction(page, shoot, pixels) -> tuple[int, int]:
    """Step 3 with a model: suggestions listed, a clicked one moves the slice and draws its yellow box, the
    prediction shown under the strokes, a correction painted inside the box; returns the new counts."""
    from widgets.assist import BOX_RGB

    _tab(page, "3 Annotate", "annotate")
    box = _canvas_box(page, ".wb-annotate-view")
    page.click(".wb-step-annotate .wb-action-suggest")
    page.wait_for_function("() => document.querySelectorAll('.wb-suggestions select option').length > 1",
                           timeout=180_000)
    text = page.evaluate("() => document.querySelector('.wb-suggestions select').options[1].text").replace("\xa0", " ")
    found = re.search(r"slice (\d+), y (\d+), x (\d+)", text)
    assert found, f"a suggestion should say where it is, got {text!r}"
    z, y, x = (int(v) for v in found.groups())
    page.select_option(".wb-suggestions select", index=1)
    page.wait_for_function("(z) => document.querySelector('.wb-step-annotate .wb-slice .widget-readout')"
                           ".innerText.trim() === String(z)", arg=z, timeout=60_000)
    shot, view = _shoot_until(page, shoot, pixels, "3-suggestion", box,
                              lambda c: pixels.count_color(c, BOX_RGB, tol=40) > 40)
    assert pixels.count_color(view, BOX_RGB, tol=40) > 40, "the clicked suggestion's box is not drawn"
    page.click(".wb-show-prediction input")
    # the prediction drawn under the strokes (the kernel predicts the slice first): the view changes
    _, shown = _shoot_until(page, shoot, pixels, "3-prediction-under", box,
                            lambda c: float(np.abs(c.astype(float) - view.astype(float)).mean()) > 2, timeout=120)
    assert float(np.abs(shown.astype(float) - view.astype(float)).mean()) > 2, "the prediction is not drawn"
    before = (_count(page, 1), _count(page, 2))
    ny = nx = 256  # the sample project's slice
    cy, cx = (y + 0.5) / ny, (x + 0.5) / nx
    for attempt in range(3):  # a correction over the prediction, across the suggested box
        page.locator(".wb-class-select button", has_text="membrane").click()
        page.wait_for_timeout(1500)
        _drag_path(page, box, [(cx - 0.04, cy), (cx, cy + 0.01), (cx + 0.04, cy)])
        try:
            page.wait_for_function(f"() => +document.querySelector('.wb-step-annotate .wb-count-1').innerText > {before[0]}",
                                   timeout=45_000)
            break
        except Exception:
            assert attempt < 2, "three correction strokes never reached the project"
    for attempt in range(3):  # and one of the other class just below it
        page.locator(".wb-class-select button", has_text="interior").click()
        page.wait_for_timeout(1500)
        _drag_path(page, box, [(cx - 0.04, cy + 0.06), (cx + 0.04, cy + 0.06)])
        try:
            page.wait_for_function(f"() => +document.querySelector('.wb-step-annotate .wb-count-2').innerText > {before[1]}",
                                   timeout=30_000)
            break
        except Exception:
            assert attempt < 2, "three correction strokes never reached the project"
    shoot(page, "3-correction")
    return _count(page, 1), _count(page, 2)


def _warm_retrain(page, shoot, pixels) -> None:
    """Step 4 again: "continue from the last model" is on, a short retrain, and the live preview changes."""
    _tab(page, "4 Train", "train")
    assert page.is_checked(".wb-train-continue input"), "warm start is not the default after new strokes"
    preview = _canvas_box(page, ".wb-train-pred")
    before = pixels.crop(pixels.load(shoot(page, "4-retrain-before")), preview)
    page.select_option(".wb-train-duration select", label="30 s")
    t0 = time.monotonic()
    page.click(".wb-action-train")
    changed_after = None
    deadline = t0 + 240
    while time.monotonic() < deadline:
        now = pixels.crop(pixels.load(shoot(page, "4-retrain")), preview)
        if np.abs(now.astype(np.int16) - before.astype(np.int16)).mean() > 1.0:
            changed_after = time.monotonic() - t0
            break
        page.wait_for_timeout(500)
    assert changed_after is not None, "the live preview did not change during the warm retrain"
    print(f"warm retrain: preview updated {changed_after:.1f} s after Train was clicked")
    page.wait_for_function("() => document.querySelector('.wb-train-eta').innerText.startsWith('done')",
                           timeout=240_000)
    assert "training finished" in page.inner_text(".wb-status-train")
    _tab(page, "5 Results", "results")  # back to the results: the step a reopened page comes back to


def _reopen(browser_context, app_server, shoot, pixels, counts) -> None:
    """A new tab of the same browser: back at the step the user was on, the scribbles drawn on the slice."""
    page = browser_context.new_page()
    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step-results", timeout=240_000)
    _tab(page, "3 Annotate", "annotate")
    box = _canvas_box(page, ".wb-annotate-view")
    assert (_count(page, 1), _count(page, 2)) == counts
    shot, view = _shoot_until(page, shoot, pixels, "6-reopened", box,
                              lambda c: pixels.std(c) > 8 and pixels.hue_mask(c, "r").sum() > 200)
    pixels.assert_not_uniform(view, what="reopened annotate slice view")
    assert pixels.hue_mask(view, "r").sum() > 200, "the membrane scribble is not drawn after reopening"
    assert pixels.hue_mask(view, "g", min_value=120, margin=40).sum() > 200, "the interior scribble is not drawn"
    page.close()


def test_guided_app_end_to_end(app_server, browser, page, shoot, pixels, wait_for_neuroglancer):
    page.set_viewport_size({"width": 1280, "height": 1100})
    t0 = time.monotonic()
    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step-data", timeout=240_000)
    assert "16 × 256 × 256" in page.inner_text(".wb-data-shape")
    box = _canvas_box(page, ".wb-data-preview")
    shot, crop = _shoot_until(page, shoot, pixels, "1-data", box, lambda c: pixels.std(c) > 8)
    pixels.assert_not_uniform(crop, what="data slice preview")
    print(f"app rendered in {time.monotonic() - t0:.1f} s")

    # 2. architecture: the 2D U-Net
    _tab(page, "2 Architecture", "architecture")
    page.click(".wb-arch-unet2d")
    page.wait_for_function("() => document.querySelector('.wb-arch-chosen').innerText.includes('unet2d')")
    assert page.inner_text(".wb-arch-unet2d") == "Chosen"
    shoot(page, "2-architecture")

    counts = _annotate(page, shoot, pixels, app_server.project_root)
    _train(page, shoot, pixels)
    _results(page, shoot, pixels, wait_for_neuroglancer)
    counts = _suggestion_and_correction(page, shoot, pixels)
    _warm_retrain(page, shoot, pixels)

    # 6. close the tab (its kernel ends by itself) and come back later: the scribbles are still there
    before = {k["id"] for k in _kernels(app_server)}
    browser_context = page.context
    page.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(before & {k["id"] for k in _kernels(app_server)}) == len(before):
        time.sleep(2)
    assert len(before & {k["id"] for k in _kernels(app_server)}) < len(before), "the closed tab's kernel still runs"
    _reopen(browser_context, app_server, shoot, pixels, counts)
