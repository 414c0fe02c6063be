"""The object table in a Voila page served by ``workbench app``'s server: the table and the size histogram
render offline, a row click selects the object in the embedded Neuroglancer (through the proxy), and the
segment properties reach the viewer through the same proxy."""

from __future__ import annotations

import nbformat
import pytest

from widgets.serve import AppServerOptions, start_app_server
from workbench.ports import free_port

pytestmark = pytest.mark.browser

NOTEBOOK = r'''
import numpy as np, ipywidgets as W
from pathlib import Path
from IPython.display import display
from widgets.neuroglancer import NeuroglancerFrame
from widgets.objects import ObjectsPanel
from workbench.io import open_volume
from workbench.io.omezarr import WriteOptions, write_ome_zarr
from workbench.viewer import WorkbenchViewer

seg_path = Path({seg_dir!r}) / "seg.zarr"
seg = np.zeros((8, 96, 96), np.uint32)
seg[1:7, 8:40, 8:40] = 4      # the largest: first row of the table
seg[2:5, 60:80, 60:80] = 9
seg[0:2, 70:74, 10:14] = 12
write_ome_zarr(seg, seg_path, WriteOptions(voxel_size=(40, 8, 8), levels=1))
viewer = WorkbenchViewer(voxel_size=(40, 8, 8), layout="xy")
viewer.set_segmentation(open_volume(str(seg_path)))
panel = ObjectsPanel(seg_path=lambda: seg_path, pred_path=lambda: None, viewer=lambda: viewer,
                     export_dir=lambda: seg_path.parent / "exports")
panel.refresh()
frame = NeuroglancerFrame(viewer, height=420)
display(W.VBox([panel.widget, frame.widget]));
'''


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    nb_dir = tmp_path_factory.mktemp("notebooks")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK.replace("{seg_dir!r}", repr(str(nb_dir))))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "objects.ipynb")
    server = start_app_server(AppServerOptions(port=free_port(), notebook_dir=nb_dir, notebook="objects.ipynb"))
    yield server
    server.stop()


def test_row_click_selects_the_object_in_the_embedded_viewer(app_server, page, shoot, wait_for_neuroglancer):
    page.goto(app_server.url, timeout=120_000)
    page.wait_for_selector(".wb-objects-count", timeout=120_000)
    assert page.inner_text(".wb-objects-count") == "3"
    try:
        page.wait_for_selector(".wb-objects-table .slick-row", timeout=60_000)
    finally:
        shoot(page, "objects-loaded")
    page.wait_for_selector(".wb-objects-histogram canvas", timeout=60_000)
    rows = page.locator(".wb-objects-table .slick-row")
    assert rows.count() == 3
    assert rows.first.inner_text().split()[0] == "4", rows.first.inner_text()
    frame_el = page.wait_for_selector("iframe.wb-ng-frame", timeout=30_000)
    frame = frame_el.content_frame()
    wait_for_neuroglancer(frame, timeout=90)
    shoot(page, "objects-table")
    rows.nth(1).locator(".slick-cell").nth(1).click()  # the second row: object 9
    page.wait_for_selector(".wb-objects-picked-id", timeout=30_000)
    assert "9" in page.inner_text(".wb-objects-picked-id")
    frame.wait_for_function(
        "() => JSON.stringify(window.viewer.state.toJSON().layers[0].segments) === JSON.stringify(['9'])",
        timeout=20_000)
    # the segment properties came through the proxy: the layer's source list names them and they loaded
    src = frame.evaluate("() => window.viewer.state.toJSON().layers[0].source")
    urls = [s["url"] if isinstance(s, dict) else s for s in src]
    assert any("/proxy/" in u and "segment_properties" in u for u in urls), urls
    with_props = frame.evaluate(
        "() => { const l = window.viewer.layerManager.managedLayers[0].layer;"
        " return !!(l && l.displayState && l.displayState.segmentationGroupState.value.segmentPropertyMap"
        " && l.displayState.segmentationGroupState.value.segmentPropertyMap.value); }")
    shoot(page, "objects-picked")
    assert with_props, "Neuroglancer did not load the segment properties through the proxy"
