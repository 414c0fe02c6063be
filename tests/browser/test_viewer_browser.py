"""The Neuroglancer viewer in headless chromium: layers render in their colours where the data says,
strokes drawn in the browser reach Python and the label store, labels written in Python appear."""

from __future__ import annotations

import time

import numpy as np
import pytest

from workbench.viewer import WorkbenchViewer
from workbench.viewer.sync import enable_drawing, sync_annotations_to_store, undo_last_stroke

pytestmark = pytest.mark.browser

SHAPE = (8, 128, 128)
VOXEL = (40.0, 8.0, 8.0)
CLASSES = [
    {"id": 1, "name": "membrane", "color": "#ff0000"},
    {"id": 2, "name": "mito", "color": "#00ff00"},
]
RED_BOX = (slice(None), slice(10, 50), slice(10, 50))  # labels class 1: top left
GREEN_BOX = (slice(None), slice(78, 118), slice(78, 118))  # labels class 2: bottom right
BLUE_BOX = (slice(None), slice(10, 50), slice(78, 118))  # probability channel: top right


def _data():
    rng = np.random.default_rng(0)
    raw = (rng.integers(60, 110, SHAPE) + np.arange(SHAPE[2])[None, None, :] // 4).astype(np.uint8)
    labels = np.zeros(SHAPE, np.uint8)
    labels[RED_BOX] = 1
    labels[GREEN_BOX] = 2
    prob = np.zeros((1, *SHAPE), np.float32)
    prob[(0, *BLUE_BOX)] = 1.0
    return raw, labels, prob


def _panel(frame):
    """Bounding box of the data panel (the xy slice view) inside ``frame``'s page."""
    box = frame.evaluate(
        """() => { const p = [...document.querySelectorAll('.neuroglancer-rendered-data-panel')]
              .map(e => e.getBoundingClientRect()).filter(r => r.width > 100);
           p.sort((a, b) => b.width * b.height - a.width * a.height);
           const r = p[0]; return r ? {x: r.x, y: r.y, width: r.width, height: r.height} : null; }"""
    )
    assert box, "no Neuroglancer data panel on the page"
    return box


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _wait(pred, timeout=15.0, what="condition"):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def viewer():
    raw, labels, prob = _data()
    v = WorkbenchViewer(voxel_size=VOXEL, classes=CLASSES, layout="xy")
    v.set_raw(raw)
    v.set_labels(labels)
    v.set_probabilities(prob, names=["mito"], colors=["#0000ff"])
    with v.viewer.txn() as s:  # no crosshair lines or bounding box: only data colours in the panel
        s.show_axis_lines = False
        s.show_default_annotations = False
    yield v
    v.close()


def test_layers_render_in_class_colours_where_the_data_says(page, viewer, shoot, pixels, wait_for_neuroglancer):
    page.goto(viewer.url())
    wait_for_neuroglancer(page)
    assert viewer.wait_for_client(10)
    _wait(lambda: list(page.evaluate("() => window.viewer.state.toJSON().displayDimensions || []")) == ["x", "y", "z"],
          what="display dimensions x, y, z in the browser")
    wait_for_neuroglancer(page)
    page.wait_for_timeout(500)
    path = shoot(page, "layers")
    pixels.assert_not_error_panel(page)
    img = pixels.crop(pixels.load(path), _panel(page))
    pixels.assert_not_uniform(img, what="data panel")
    # Python-side screenshot through the connected browser (no hang: it has a timeout)
    png = viewer.screenshot(timeout=60)
    pixels.assert_not_uniform(pixels.load(png), what="viewer.screenshot()")
    red, green, blue = pixels.hue_mask(img, "r"), pixels.hue_mask(img, "g"), pixels.hue_mask(img, "b")
    for name, m in (("red labels", red), ("green labels", green), ("blue probability", blue)):
        assert m.sum() > 200, f"{name}: only {m.sum()} pixels in the data panel ({path})"
    (rx, ry), (gx, gy), (bx, by) = _centroid(red), _centroid(green), _centroid(blue)
    # x right, y down: red top-left, green bottom-right, blue top-right
    assert rx < gx and ry < gy, f"labels misplaced: red at {(rx, ry)}, green at {(gx, gy)} ({path})"
    assert bx > rx + 20 and abs(by - ry) < 0.25 * img.shape[0], f"probability misplaced: blue {(bx, by)} red {(rx, ry)}"


def test_annotation_round_trip(page, viewer, shoot, pixels, wait_for_neuroglancer, tmp_path):
    from workbench.annotations.store import LabelStore

    store = LabelStore.create(tmp_path / "data.zarr" / "labels" / "annotations", tmp_path / "annotations.jsonl",
                              shape=SHAPE, voxel_size=VOXEL)
    enable_drawing(viewer, store, width=3, classes=CLASSES)
    page.goto(viewer.url())
    wait_for_neuroglancer(page)
    assert viewer.wait_for_client(10)
    # browser -> Python -> label store: ctrl+click twice with the line tool of class 2 (green)
    viewer.select_draw_tool(2, "annotateLine")
    page.wait_for_timeout(800)
    box = _panel(page)
    a = (box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.5)
    b = (box["x"] + box["width"] * 0.65, box["y"] + box["height"] * 0.5)
    for x, y in (a, b):
        page.mouse.move(x, y)
        page.wait_for_timeout(200)
        page.keyboard.down("Control")
        page.mouse.click(x, y)
        page.keyboard.up("Control")
        page.wait_for_timeout(300)
    _wait(lambda: len(viewer.read_annotations()) == 1, what="the drawn line in viewer.state")
    (stroke,) = viewer.read_annotations()
    assert stroke.label == 2 and stroke.kind == "line"
    z = int(stroke.index_points()[0, 0])
    assert 0 <= z < SHAPE[0]
    assert sync_annotations_to_store(viewer, store, width=3) == 1
    counts = store.counts()
    assert counts.get(2, 0) > 20, f"label store after sync: {counts}"
    row = store.read()[z]
    ys, xs = np.nonzero(row == 2)
    assert xs.max() - xs.min() > 20 and ys.max() - ys.min() <= 4, "the stroke should be a horizontal line"
    # Python -> browser: the labels layer shows the stroke in green
    viewer.select_draw_tool(1, "annotatePoint")  # leaves the green line layer unselected
    with viewer.viewer.txn() as s:
        for name in viewer.draw_layers:
            s.layers[name].visible = False  # hide the line annotation itself: only the painted labels remain
    page.wait_for_timeout(1500)
    wait_for_neuroglancer(page)
    path = shoot(page, "stroke-labels")
    img = pixels.crop(pixels.load(path), box)
    assert pixels.hue_mask(img, "g", min_value=100, margin=40).sum() > 50, f"painted stroke not visible ({path})"
    # undo removes the stroke from the store and from the annotation layer
    assert undo_last_stroke(viewer, store)
    assert viewer.read_annotations() == []
    assert store.counts().get(2, 0) == 0
    # the commit key (alt+c) in the browser: a point of class 1 goes to the store without Python calls
    viewer.select_draw_tool(1, "annotatePoint")
    page.wait_for_timeout(500)
    box = _panel(page)  # the selection side panel may have narrowed the data panel
    x, y = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.35
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    page.mouse.click(x, y)
    page.keyboard.up("Control")
    _wait(lambda: len(viewer.read_annotations()) == 1, what="the point in viewer.state")
    # focus the data panel (the selection panel that opened may hold the keyboard focus), then alt+c
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.keyboard.press("Alt+c")
    (point,) = viewer.read_annotations()
    assert all(0 <= v < n for v, n in zip(point.index_points()[0], SHAPE)), point
    _wait(lambda: store.counts().get(1, 0) > 0, what="alt+c to commit the point to the label store")
    assert undo_last_stroke(viewer, store) and store.counts().get(1, 0) == 0
    # write a label in Python: a red box appears in the browser
    store.fill_box((0, 8, 8), (SHAPE[0], 40, 40), 1)
    viewer.update_layer("annotations")
    page.wait_for_timeout(1500)
    wait_for_neuroglancer(page)
    path = shoot(page, "python-label")
    img = pixels.crop(pixels.load(path), box)
    red = pixels.hue_mask(img, "r", min_value=100, margin=40)
    assert red.sum() > 200, f"label written in Python not visible ({path})"
    rx, ry = _centroid(red)
    assert rx < img.shape[1] / 2 and ry < img.shape[0] / 2, "the red box should be top left"
