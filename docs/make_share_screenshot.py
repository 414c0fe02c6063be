"""Make the README's "Share your results" pictures, ``docs/images/share_*.png``, from a reproducible share.

    .venv/bin/python docs/make_share_screenshot.py [--shape Z Y X]

1. A project of the built-in sample (seed 0, default 16 x 256 x 256) with two small U-Net runs (40 and 400
   iterations), each predicted and segmented (connected components of the interior class above 0.7;
   ``tests/share_sample.py``), in a temporary folder.
2. ``workbench share`` writes its static site; ``python -m http.server`` serves it.
3. Headless chromium (``/usr/bin/chromium`` or ``WORKBENCH_CHROMIUM``) photographs the page's runs and plots
   (``share_runs.png``), the slice views (``share_slices.png``) and the Neuroglancer link
   (``share_neuroglancer.png``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist"]
NG_READY_JS = """() => { const v = window.viewer; if (v === undefined || !document.querySelector('canvas')) return false;
  try { return v.display.isReady(); } catch (e) { return true; } }"""


def log(text: str) -> None:
    print(f"[share screenshot {time.strftime('%H:%M:%S')}] {text}", flush=True)


def shoot_between(page, first: str, last: str, name: str, width: int = 1320, pad: int = 16) -> None:
    """Photograph the page from the element ``first`` down to the end of the element ``last``."""
    top = page.locator(first).first.bounding_box()
    bottom = page.locator(last).first.bounding_box()
    page.screenshot(path=str(IMAGES / name), full_page=True,
                    clip={"x": 0, "y": max(0, top["y"] - pad), "width": width,
                          "height": bottom["y"] + bottom["height"] - top["y"] + 2 * pad})
    log(f"wrote docs/images/{name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=3, type=int, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from playwright.sync_api import sync_playwright
    from share_sample import make_sample_project

    work = Path(tempfile.mkdtemp(prefix="share-screenshot-"))
    try:
        log("making the sample project with two runs")
        project = make_sample_project(work / "em-sample", shape=tuple(args.shape), iterations=(40, 400),
                                      threshold=0.7)
        site = work / "site"
        subprocess.run([sys.executable, "-m", "workbench", "share", str(project.root), str(site)], check=True,
                       env=dict(os.environ, WORKBENCH_NO_REEXEC="1"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d",
                                   str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "share.json", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.2)
            IMAGES.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1320, "height": 1000})
                page.goto(base + "index.html")
                page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=120_000)
                page.wait_for_timeout(3000)
                shoot_between(page, "table.wb-runs", ".plots", "share_runs.png")
                shoot_between(page, "h2#slices", "#ng-current", "share_slices.png")
                page.goto(page.evaluate("() => document.getElementById('ng-current').href"))
                page.wait_for_function(NG_READY_JS, timeout=120_000, polling=200)
                page.wait_for_timeout(2000)
                page.screenshot(path=str(IMAGES / "share_neuroglancer.png"))
                log("wrote docs/images/share_neuroglancer.png")
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
