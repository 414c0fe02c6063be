"""The served dashboard in headless chromium: the projects list, a project's page with every plot drawn, the
slider, the linked comparison and Neuroglancer reading the data from the dashboard; all from its origin."""

from __future__ import annotations

import threading

import pytest
from share_checks import check_neuroglancer, check_site_page

from widgets.site import build_site, projects_html
from workbench.commands.dashboard import _live_state
from workbench.share import ShareOptions
from workbench.share.server import DashboardConfig, make_server

TOKEN = "dashboard-test-token"


@pytest.fixture(scope="module")
def dashboard(share_sample_project, tmp_path_factory):
    config = DashboardConfig(projects=share_sample_project.root.parent, cache=tmp_path_factory.mktemp("dash-cache"),
                             build=lambda root, out: build_site(root, out, ShareOptions(max_mb=100)),
                             front_page=projects_html, token=TOKEN, live=_live_state)
    server = make_server(config, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", share_sample_project
    server.shutdown()
    server.server_close()


def test_dashboard_pages(dashboard, page, shoot, pixels, wait_for_neuroglancer):
    base, project = dashboard
    page.goto(base)
    assert "valid token" in page.inner_text("body")  # no token: nothing
    page.goto(base + f"?token={TOKEN}")
    link = page.locator("a.wb-project-link")
    assert link.count() == 1 and link.inner_text() == project.name
    href = link.get_attribute("href")
    result = check_site_page(page, base.rstrip("/") + href, shoot, pixels, "dashboard")
    requests = list(page.requests)
    live = page.evaluate("() => { const a = document.getElementById('ng-live'); "
                         "return a && a.style.display !== 'none' ? a.href : null; }")
    assert live, "the dashboard's page offers no live Neuroglancer link"
    check_neuroglancer(page, result["neuroglancer"], wait_for_neuroglancer, shoot, pixels, "dashboard")
    requests += page.requests
    # live: the project's own data.zarr at full resolution, annotations included
    page.goto(live)
    wait_for_neuroglancer(page, timeout=90)
    page.wait_for_timeout(1500)
    names = page.evaluate("() => window.viewer.layerManager.managedLayers.map(l => l.name)")
    assert names[:3] == ["raw", "truth", "annotations"] and names[-1].endswith("/instances"), names
    img = pixels.load(shoot(page, "dashboard-live"))
    pixels.assert_not_uniform(img[100:800, 100:1200], 10.0, what="live Neuroglancer panels")
    requests += page.requests
    assert any(f"{href}project-data/" in u for u in requests), "the live view did not read the project's data"
    outside = sorted({u for u in requests if not u.startswith(base) and not u.startswith("data:")})
    assert not outside, f"requests left the dashboard's origin: {outside[:5]}"
    assert any(f"{href}data/raw.ome.zarr/" in u for u in requests)
    # the page cannot reach Jupyter: no kernels, no lab
    status = page.evaluate("""async () => (await fetch('/api/kernels', {method: 'POST', body: '{}'})).status""")
    assert status == 405
    assert page.goto(base + "lab").status == 404
