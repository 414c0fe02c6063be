"""A Voila page served by ``workbench app``'s server embeds the viewer through the proxy (one port)."""

from __future__ import annotations

import urllib.error
import urllib.request

import nbformat
import numpy as np
import pytest

from widgets.serve import AppServerOptions, start_app_server
from workbench.ports import free_port

pytestmark = pytest.mark.browser

NOTEBOOK = r'''
import numpy as np, ipywidgets as W
from IPython.display import display
from workbench.viewer import WorkbenchViewer
from widgets.neuroglancer import NeuroglancerFrame

shape = (8, 128, 128)
rng = np.random.default_rng(0)
raw = (rng.integers(60, 110, shape) + np.arange(shape[2])[None, None, :] // 4).astype(np.uint8)
labels = np.zeros(shape, np.uint8)
labels[:, 10:50, 10:50] = 1
labels[:, 78:118, 78:118] = 2
prob = np.zeros((1, *shape), np.float32)
prob[0, :, 10:50, 78:118] = 1.0
viewer = WorkbenchViewer(voxel_size=(40, 8, 8), layout="xy",
                         classes=[{"id": 1, "name": "membrane", "color": "#ff0000"},
                                  {"id": 2, "name": "mito", "color": "#00ff00"}])
viewer.set_raw(raw)
viewer.set_labels(labels)
viewer.set_probabilities(prob, names=["mito"], colors=["#0000ff"])
with viewer.viewer.txn() as s:
    s.show_axis_lines = False
    s.show_default_annotations = False
frame = NeuroglancerFrame(viewer, height=560)
info = W.Label(value=frame.url)
info.add_class("embed-url")
display(W.VBox([info, frame.widget]))
'''


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    nb_dir = tmp_path_factory.mktemp("notebooks")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "embed.ipynb")
    server = start_app_server(AppServerOptions(port=free_port(), notebook_dir=nb_dir, notebook="embed.ipynb"))
    yield server
    server.stop()


def test_voila_page_embeds_viewer_through_proxy(app_server, page, shoot, pixels, wait_for_neuroglancer):
    external = []
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
            else external.append(r.url))
    page.goto(app_server.url, timeout=120_000)
    page.wait_for_selector(".embed-url", timeout=120_000)
    src = page.get_attribute("iframe.wb-ng-frame", "src")
    assert src.startswith("/proxy/") and "/v/" in src, f"iframe should use the proxy, got {src}"
    frame_el = page.wait_for_selector("iframe.wb-ng-frame", timeout=30_000)
    frame = frame_el.content_frame()
    wait_for_neuroglancer(frame, timeout=90)
    frame.wait_for_function(
        "() => JSON.stringify(window.viewer.state.toJSON().displayDimensions) === JSON.stringify(['x','y','z'])",
        timeout=20_000,
    )
    wait_for_neuroglancer(frame)
    page.wait_for_timeout(800)
    path = shoot(page, "voila-embed")
    pixels.assert_not_error_panel(frame)
    img = pixels.crop(pixels.load(path), frame_el.bounding_box())
    panel = frame.evaluate(
        """() => { const p = [...document.querySelectorAll('.neuroglancer-rendered-data-panel')]
              .map(e => e.getBoundingClientRect()).filter(r => r.width > 100);
           p.sort((a, b) => b.width * b.height - a.width * a.height);
           const r = p[0]; return {x: r.x, y: r.y, width: r.width, height: r.height}; }"""
    )
    img = pixels.crop(img, panel)
    pixels.assert_not_uniform(img, what="Neuroglancer panel in the Voila page")
    masks = {c: pixels.hue_mask(img, c) for c in "rgb"}
    for c, m in masks.items():
        assert m.sum() > 200, f"colour {c}: only {m.sum()} pixels in the embedded panel ({path})"
    cx = {c: float(np.nonzero(m)[1].mean()) for c, m in masks.items()}
    cy = {c: float(np.nonzero(m)[0].mean()) for c, m in masks.items()}
    assert cx["r"] < cx["g"] and cy["r"] < cy["g"], f"labels misplaced ({path})"
    assert cx["b"] > cx["r"] and abs(cy["b"] - cy["r"]) < 0.25 * img.shape[0], f"probability misplaced ({path})"
    assert external == [], f"the app page should work offline, but asked for {external[:5]}"


def test_proxy_refuses_ports_no_viewer_registered(app_server):
    url = f"{app_server.base_url}proxy/{app_server.port}/api/status?token={app_server.token}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 403
