"""Meshes and segment properties in headless chromium: the 3D panel draws the selected objects' meshes in
their colours, and the segment list shows the objects' names from the served segment properties."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import ellipsoid

from workbench.viewer import WorkbenchViewer

pytestmark = pytest.mark.browser

SHAPE = (24, 96, 96)
VOXEL = (16.0, 8.0, 8.0)
COLORS = {3: "#ff0000", 7: "#00ff00"}


def _segmentation() -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint32)
    ball = ellipsoid(8, 16, 16)  # (z, y, x) semi-axes in voxels: round in nm at 16 x 8 x 8 nm
    bz, by, bx = ball.shape
    seg[2:2 + bz, 8:8 + by, 8:8 + bx][ball] = 3
    seg[2:2 + bz, 55:55 + by, 55:55 + bx][ball] = 7
    seg[0:4, 0:6, 90:96] = 9  # a small third object, not selected
    return seg


def _panel(frame):
    """The 3D panel's box (the layout has only that panel)."""
    box = frame.locator(".neuroglancer-rendered-data-panel").first.bounding_box()
    assert box and box["width"] > 100, "no Neuroglancer 3D panel on the page"
    return box


@pytest.fixture
def viewer():
    v = WorkbenchViewer(voxel_size=VOXEL, layout="3d")
    v.set_segmentation(_segmentation())
    with v.viewer.txn() as s:
        s.layers["segmentation"].segments = set(COLORS)
        s.layers["segmentation"].segment_colors = dict(COLORS)
        s.show_axis_lines = False
        s.show_default_annotations = False
        s.projection_scale = 150  # the objects fill the panel
    yield v
    v.close()


def test_3d_panel_draws_meshes_in_segment_colours(page, viewer, shoot, pixels, wait_for_neuroglancer):
    page.goto(viewer.url())
    wait_for_neuroglancer(page)
    assert viewer.wait_for_client(10)
    page.wait_for_timeout(1500)
    wait_for_neuroglancer(page)
    path = shoot(page, "3d")
    pixels.assert_not_error_panel(page)
    img = pixels.crop(pixels.load(path), _panel(page))
    red, green = pixels.hue_mask(img, "r"), pixels.hue_mask(img, "g")
    # a shaded mesh: many pixels of the segment's hue, and more than one shade (not a flat fill)
    for name, m in (("red object 3", red), ("green object 7", green)):
        assert m.sum() > 500, f"{name}: only {m.sum()} mesh pixels in the 3D panel ({path})"
    assert len(np.unique(img[red][:, 0] // 8)) > 3, f"the red mesh is not shaded ({path})"
    # the served mesh of an unknown id is refused (404), the known ones were requested by the browser
    meshes = viewer._meshes["segmentation"]
    assert {3, 7} <= set(meshes._memory), "the browser did not fetch the meshes of the selected objects"
    assert 9 not in meshes._memory, "an unselected object was meshed"


def test_segment_list_shows_served_properties(page, viewer, wait_for_neuroglancer, shoot):
    page.goto(viewer.url())
    wait_for_neuroglancer(page)
    assert viewer.wait_for_client(10)
    with viewer.viewer.txn() as s:  # the layer's side panel on its segment list
        s.selected_layer.layer = "segmentation"
        s.selected_layer.visible = True
        s.layers["segmentation"].tab = "segments"

    try:  # the label "object 9" exists only in the served segment properties
        page.wait_for_function("() => document.body.innerText.includes('object 9')", timeout=30_000)
    finally:
        shoot(page, "segment-list")
    text = page.inner_text("body")
    assert "object 3" in text and "object 7" in text and "#border" in text, text[-800:]
