"""The guided app as a person uses it, in headless chromium: sample data, unet2d, scribbles, ~30 s of training,
results in Neuroglancer, a page reload that finds the scribbles; and closing the page ending its kernel.

Screenshots go to ``test-artifacts/`` and, for the README tour, to ``docs/images/tour_<n>_<step>.png``.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOUR = REPO / "docs" / "images"
MEMBRANE, INTERIOR = "#e6194b", "#3cb44b"  # the default class colours

CANVASES = """(sel) => { const root = document.querySelector(sel); if (!root) return [];
  const c = []; const walk = (r) => { r.querySelectorAll('*').forEach(e => { if (e.tagName === 'CANVAS') c.push(e);
  if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(root);
  return c.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }).filter(r => r[2] > 100); }"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """``workbench app`` on a free port with a small sample project (kernels see WORKBENCH_PROJECT)."""
    from workbench.project import Project
    from workbench.server import free_port, start_app_server

    root = tmp_path_factory.mktemp("app")
    project = Project.create(root / "projects" / "sample", raw=None, sample_shape=(16, 256, 256))
    data = root / "data"
    data.mkdir()
    server = start_app_server(port=free_port(), project=project.root, data=data)
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


def _drag(page, box, start, end, wiggle: float = 0.0) -> None:
    x, y, w, h = box
    (ax, ay), (bx, by) = start, end
    page.mouse.move(x + w * ax, y + h * ay)
    page.mouse.down()
    for i in range(1, 31):
        f = i / 30
        page.mouse.move(x + w * (ax + (bx - ax) * f), y + h * (ay + (by - ay) * f) + wiggle * ((i % 4) - 1.5), steps=2)
    page.mouse.up()


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


def _tour(shot: Path, n: int, step: str) -> None:
    TOUR.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, TOUR / f"tour_{n}_{step}.png")


def test_guided_app_end_to_end(app_server, browser, page, shoot, pixels, wait_for_neuroglancer):
    page.set_viewport_size({"width": 1280, "height": 1100})
    t0 = time.monotonic()
    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step-data", timeout=240_000)
    assert "16 × 256 × 256" in page.inner_text(".wb-data-shape")
    box = _canvas_box(page, ".wb-data-preview")
    shot, crop = _shoot_until(page, shoot, pixels, "1-data", box, lambda c: pixels.std(c) > 8)
    pixels.assert_not_uniform(crop, what="data slice preview")
    _tour(shot, 1, "data")
    print(f"app rendered in {time.monotonic() - t0:.1f} s")

    # 2. architecture: the 2D U-Net
    _tab(page, "2 Architecture", "architecture")
    page.click(".wb-arch-unet2d")
    page.wait_for_function("() => document.querySelector('.wb-arch-chosen').innerText.includes('unet2d')")
    assert page.inner_text(".wb-arch-unet2d") == "Chosen"
    _tour(shoot(page, "2-architecture"), 2, "architecture")

    # 3. annotate: one stroke per class, dragged with the mouse on the slice view
    _tab(page, "3 Annotate", "annotate")
    box = _canvas_box(page, ".wb-annotate-view")
    page.wait_for_timeout(1500)
    for class_id, name, start, end in ((1, "membrane", (0.08, 0.15), (0.9, 0.22)),
                                       (2, "interior", (0.08, 0.6), (0.9, 0.7))):
        page.locator(".wb-class-select button", has_text=name).click()
        page.wait_for_timeout(1500)  # let the view finish redrawing the previous stroke
        for attempt in range(3):  # as a person would: if a stroke did not take, draw it again
            _drag(page, box, start, end, wiggle=4)
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
    _tour(shot, 3, "annotate")

    # 4. train ~30 s: the progress bar moves and the loss curve grows while it runs
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
    _tour(shot, 4, "train")

    # 5. results: predict, then the prediction in the embedded Neuroglancer
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
    _tour(shoot(page, "5-results-top"), 5, "results")
    shutil.copy(shot, TOUR / "tour_6_neuroglancer.png")

    # 6. close the tab (its kernel ends by itself) and come back later: the scribbles are still there
    before = {k["id"] for k in _kernels(app_server)}
    page.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(before & {k["id"] for k in _kernels(app_server)}) == len(before):
        time.sleep(2)
    assert len(before & {k["id"] for k in _kernels(app_server)}) < len(before), "the closed tab's kernel still runs"
    # a fresh browser session: a second tab of the same session can leave the annotate plot blank
    # (a Bokeh rendering issue, see the README's known limitations)
    later = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = later.new_page()
    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step-results", timeout=240_000)  # back at the step the user was on
    _tab(page, "3 Annotate", "annotate")
    box = _canvas_box(page, ".wb-annotate-view")
    assert (_count(page, 1), _count(page, 2)) == counts
    # the counts shown come from the new kernel reading the project folder; the slice view itself is
    # saved for a person to look at (a reopened page can show this plot blank: a known rendering issue)
    page.wait_for_timeout(3000)
    shoot(page, "6-reopened")
    later.close()


def test_closing_the_page_ends_its_kernel_and_training(app_server, browser):
    from workbench.project import Project

    project = Project.open(app_server.project_root)
    if len(project.annotations.counts()) < 2:
        project.annotations.add_stroke([[8, 40, 10], [8, 40, 240]], 1, width=5)
        project.annotations.add_stroke([[8, 150, 10], [8, 150, 240]], 2, width=5)
    before = {k["id"] for k in _kernels(app_server)}
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step >> visible=true", timeout=240_000)
    _tab(page, "4 Train", "train")
    page.select_option(".wb-train-duration select", label="5 min")
    page.click(".wb-action-train")
    page.wait_for_function("() => /iteration [1-9]/.test(document.querySelector('.wb-train-eta').innerText)",
                           timeout=180_000)
    new = [k["id"] for k in _kernels(app_server) if k["id"] not in before]
    assert len(new) == 1, new
    pid = _kernel_pid(new[0])
    assert pid is not None
    import psutil

    t_close = time.monotonic()
    ctx.close()  # the user closes the tab (no beacon, no goodbye)
    gone = None
    while time.monotonic() - t_close < 75:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            gone = time.monotonic() - t_close
            break
        time.sleep(1)
    assert gone is not None and gone <= 60, f"the kernel (and its training) still runs {time.monotonic() - t_close:.0f} s after closing"
    deadline = time.monotonic() + 20  # the server drops the kernel from its list once shutdown completes
    while time.monotonic() < deadline and new[0] in {k["id"] for k in _kernels(app_server)}:
        time.sleep(1)
    assert new[0] not in {k["id"] for k in _kernels(app_server)}, "the server still lists (or restarted) the kernel"
    runs = Project.open(app_server.project_root).runs()
    assert runs and runs[-1].checkpoint is not None, "the stopped run kept no checkpoint"
    print(f"kernel {pid} gone {gone:.0f} s after the page closed")

