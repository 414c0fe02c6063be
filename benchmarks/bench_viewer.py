"""Neuroglancer viewer latency in headless chromium: `workbench view` start -> first rendered data, and
render time after a jump, on ISBI 2012 (30 x 512 x 512) and a synthetic 512 x 2048 x 2048 OME-Zarr with a
pyramid; plus a zoomed-out view of the large volume served from the pyramid vs from full resolution.

    python benchmarks/bench_viewer.py        # writes benchmarks/results/viewer.json (about 3-6 minutes)

"Rendered" means the data panel is no longer uniform (screenshots polled every ~100 ms); "settled" means
two consecutive screenshots were identical after that. The synthetic volume is written under /tmp and
deleted afterwards. Figures depend on the machine's load (reported as the 1-minute load average).
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "results" / "viewer.json"
DATA = Path(os.environ.get("WORKBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
ISBI = DATA / "isbi2012" / "train-volume.tif"
BIG_SHAPE = (512, 2048, 2048)
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist"]
PANEL_JS = """() => { const p = [...document.querySelectorAll('.neuroglancer-rendered-data-panel')]
  .map(e => e.getBoundingClientRect()).filter(r => r.width > 100);
  p.sort((a, b) => b.width * b.height - a.width * a.height);
  const r = p[0]; return r ? {x: r.x, y: r.y, width: r.width, height: r.height} : null; }"""


def _img(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def _panel_shot(page):
    box = page.evaluate(PANEL_JS)
    if not box:
        return None
    return _img(page.screenshot(clip=box))


def wait_rendered(page, t0: float, previous: np.ndarray | None = None, timeout: float = 180.0, min_std: float = 6.0):
    """Poll panel screenshots: seconds (since t0) until data shows (and differs from ``previous``), and until
    two consecutive shots are identical."""
    first = settled = None
    last = None
    while time.perf_counter() - t0 < timeout:
        shot = _panel_shot(page)
        now = time.perf_counter() - t0
        if shot is not None:
            changed = previous is None or shot.shape != previous.shape or np.abs(shot - previous).mean() > 2
            if first is None and shot.std() > min_std and changed:
                first = now
            elif first is not None and last is not None and shot.shape == last.shape and np.array_equal(shot, last):
                settled = now
                return first, settled, shot
            last = shot
        time.sleep(0.1)
    return first, settled, last


def jump(page, position):
    """Move the view like a user would (only the position changes; z, y, x voxel coordinates)."""
    page.evaluate("(p) => window.viewer.position.restoreState(p)", list(map(float, position)))


def bench_cli(browser, src: str, shape, label: str) -> dict:
    """`workbench view SRC`: start -> URL printed -> first data in the browser; then two jumps."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "view", src, "--layout", "xy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        t_url = time.perf_counter() - t0
        url = re.search(r"http://\S+", line).group(0)
        page.goto(url)
        first, settled, shot = wait_rendered(page, t0)
        res = {"source": src, "shape": list(shape), "url_printed_s": round(t_url, 2),
               "first_data_s": _r(first), "settled_s": _r(settled)}
        shot_path = REPO / "benchmarks" / "results" / f"viewer_{label}.png"
        page.screenshot(path=str(shot_path))
        res["screenshot"] = str(shot_path.relative_to(REPO))
        jumps = []
        for frac in (0.25, 0.8):
            pos = [int(shape[0] * frac) + 0.5, shape[1] * (1 - frac) + 0.5, shape[2] * frac + 0.5]
            t1 = time.perf_counter()
            jump(page, pos)
            f, s, shot = wait_rendered(page, t1, previous=shot)
            jumps.append({"position_zyx": pos, "changed_s": _r(f), "settled_s": _r(s)})
        res["jumps"] = jumps
        return res
    finally:
        proc.terminate()
        proc.wait(10)
        page.close()


def make_big_zarr(root: Path) -> tuple[Path, float]:
    """512 x 2048 x 2048 uint8 OME-Zarr with a pyramid, written with the project's writer from a lazy
    dask pattern (cell-like blobs + noise), in bounded memory."""
    import dask.array as da

    from workbench.io import WriteOptions, write_ome_zarr

    z, y, x = BIG_SHAPE

    def block(block_id=None, block_info=None):
        (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        zz, yy, xx = np.meshgrid(np.arange(z0, z1), np.arange(y0, y1), np.arange(x0, x1), indexing="ij", sparse=True)
        v = 128 + 60 * np.sin(yy / 37.0 + zz / 23.0) * np.cos(xx / 41.0 - zz / 31.0)
        rng = np.random.default_rng(z0 * 7 + y0 * 3 + x0)
        return (v + rng.integers(-20, 20, (z1 - z0, y1 - y0, x1 - x0))).clip(0, 255).astype(np.uint8)

    arr = da.map_blocks(block, dtype=np.uint8, chunks=((64,) * (z // 64), (512,) * (y // 512), (512,) * (x // 512)))
    t = time.perf_counter()
    out = write_ome_zarr(arr, root / "big.zarr", WriteOptions(voxel_size=(8, 8, 8), chunks=(64, 128, 128)))
    return out, time.perf_counter() - t


def bench_zoom_out(browser, src: Path) -> dict:
    """Whole 2048^2 slice in view: served from the pyramid vs from full resolution (on-the-fly averaging)."""
    from workbench.io import open_volume
    from workbench.viewer import WorkbenchViewer
    from workbench.viewer.sources import local_volume

    vol = open_volume(str(src))
    out = {}
    for mode in ("pyramid", "full_resolution_only"):
        v = WorkbenchViewer(voxel_size=vol.voxel_size, layout="xy")
        v.set_raw(vol, window=(0, 255))
        if mode != "pyramid":
            with v.viewer.txn() as s:
                s.layers["raw"].source = local_volume(vol, levels=[])
        with v.viewer.txn() as s:
            s.cross_section_scale = 2048 / 700  # whole slice in the panel
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.perf_counter()
        page.goto(v.url())
        f, s, shot = wait_rendered(page, t0, timeout=240)
        t1 = time.perf_counter()
        jump(page, [400.5, 1024.5, 1024.5])
        f2, s2, _ = wait_rendered(page, t1, previous=shot, timeout=240)
        out[mode] = {"first_data_s": _r(f), "settled_s": _r(s), "jump_changed_s": _r(f2), "jump_settled_s": _r(s2)}
        page.close()
        v.close()
    return out


def _r(v):
    return None if v is None else round(float(v), 2)


def main() -> int:
    from playwright.sync_api import sync_playwright

    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "load_1min_start": round(os.getloadavg()[0], 2)},
               "method": " ".join(__doc__.strip().split("\n\n")[0].split())}
    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_", dir="/tmp"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            results["isbi"] = bench_cli(browser, str(ISBI), (30, 512, 512), "isbi")
            print("isbi", json.dumps(results["isbi"]), flush=True)
            big, t_write = make_big_zarr(tmp)
            results["synthetic_2048x2048x512"] = {"write_s": round(t_write, 1),
                                                  **bench_cli(browser, str(big), BIG_SHAPE, "big")}
            print("big", json.dumps(results["synthetic_2048x2048x512"]), flush=True)
            results["synthetic_zoomed_out"] = bench_zoom_out(browser, big)
            print("zoom", json.dumps(results["synthetic_zoomed_out"]), flush=True)
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["load_1min_end"] = round(os.getloadavg()[0], 2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
