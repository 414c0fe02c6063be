"""The static results site in headless chromium, served by ``python -m http.server``: every plot drawn,
the slider changes the slice, a click on a run in the comparison shows that run's slices, Neuroglancer
shows the layers, and no request leaves the site's origin."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from share_checks import check_neuroglancer, check_site_page

from widgets.site import build_site


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_site(share_sample_project, tmp_path_factory):
    """The site of the sample with two runs, served by ``python -m http.server`` on 127.0.0.1."""
    site = build_site(share_sample_project, tmp_path_factory.mktemp("static") / "site")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d",
                             str(site.path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "share.json", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "python -m http.server did not start"
            time.sleep(0.2)
    yield base, site
    proc.terminate()
    proc.wait(10)


def test_static_site_renders_offline(served_site, page, shoot, pixels, wait_for_neuroglancer):
    base, _site = served_site
    t0 = time.monotonic()
    result = check_site_page(page, base + "index.html", shoot, pixels, "static")
    print(f"static site checked in {time.monotonic() - t0:.1f} s")
    requests = list(page.requests)
    check_neuroglancer(page, result["neuroglancer"], wait_for_neuroglancer, shoot, pixels, "static")
    requests += page.requests
    outside = sorted({u for u in requests if not u.startswith(base) and not u.startswith("data:")})
    assert not outside, f"requests left the site's origin: {outside[:5]}"
    assert any("/data/raw.ome.zarr/" in u for u in requests), "Neuroglancer did not read the share's data"


def test_summary_prints(served_site, page, pixels, artifacts_dir):
    base, _site = served_site
    page.goto(base + "summary.html")
    page.wait_for_load_state("networkidle")
    images = page.evaluate("() => [...document.images].map(i => i.naturalWidth)")
    assert len(images) >= 4 and min(images) > 0, "summary pictures missing"
    page.emulate_media(media="print")
    assert page.evaluate("() => getComputedStyle(document.querySelector('nav, a.no-print')).display") == "none"
    pdf = page.pdf(path=str(artifacts_dir / "share-summary.pdf"), format="A4")
    assert pdf[:4] == b"%PDF" and len(pdf) > 20_000
