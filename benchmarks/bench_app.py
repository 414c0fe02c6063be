"""The guided app in a real browser: time to first render, click latency during training, memory, sessions.

Runs ``workbench app`` (Jupyter server + Voila) on a small sample project and drives headless chromium:

* ``first_render_s``: page request until the data step shows its slice preview (new kernel each time);
* ``click_latency_ms``: click on an architecture card's button until its label changes (a round trip
  through the kernel), idle and while a 2D U-Net trains in the background (target < 300 ms);
* ``kernel_rss_mb``: resident memory of one session's kernel, after load and while training;
* ``sessions``: click latency on the newest page with 1, 2, ... pages open (each its own kernel), stopping
  when the median doubles or at ``--max-sessions``.

Writes ``benchmarks/results/app.json``. Usage: ``python benchmarks/bench_app.py [--clicks N] [--max-sessions N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "app.json"
ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist"]

CANVAS = """(sel) => { const root = document.querySelector(sel); if (!root) return false;
  if (root.offsetParent === null) return true;  // another step is shown first: nothing to wait for
  const c = []; const walk = (r) => { r.querySelectorAll('*').forEach(e => { if (e.tagName === 'CANVAS') c.push(e);
  if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(root); return c.some(e => e.getBoundingClientRect().width > 100); }"""

CLICK = """async (name) => {
  const btn = document.querySelector('.wb-arch-' + name);
  return await new Promise(res => {
    const t0 = performance.now();
    const done = () => { obs.disconnect(); res(performance.now() - t0); };
    const obs = new MutationObserver(() => { if (btn.innerText.trim() === 'Chosen') done(); });
    obs.observe(btn, {subtree: true, childList: true, characterData: true, attributes: true});
    setTimeout(() => { obs.disconnect(); res(-1); }, 20000);
    btn.click(); }); }"""


def _tab(page, title: str, panel: str) -> None:
    page.locator(".lm-TabBar-tab", has_text=title).click()
    page.wait_for_selector(f".wb-step-{panel}", state="visible", timeout=240_000)


def open_app(ctx, url: str) -> tuple[object, float]:
    page = ctx.new_page()
    t = time.perf_counter()
    page.goto(url, timeout=300_000)
    page.wait_for_selector(".wb-step >> visible=true", timeout=300_000)
    page.wait_for_function(CANVAS, arg=".wb-step-data", timeout=300_000) if page.query_selector(".wb-step-data") else None
    return page, time.perf_counter() - t


def clicks(page, n: int) -> list[float]:
    _tab(page, "2 Architecture", "architecture")
    out = []
    for i in range(n):
        ms = page.evaluate(CLICK, "unet3d" if i % 2 == 0 else "unet2d")
        out.append(ms)
        page.wait_for_timeout(200)
    return out


def kernel_rss_mb(server, before: set[str]) -> dict:
    import urllib.request

    import psutil

    with urllib.request.urlopen(f"{server.base_url}api/kernels?token={server.token}") as r:
        ids = [k["id"] for k in json.load(r) if k["id"] not in before]
    out = {}
    for proc in psutil.process_iter(["cmdline"]):
        for kid in ids:
            if any(f"kernel-{kid}" in p for p in (proc.info["cmdline"] or [])):
                out[kid] = proc.memory_info().rss / 1e6
    return out


def summary(xs: list[float]) -> dict:
    ok = [x for x in xs if x >= 0]
    return {"median": round(statistics.median(ok), 1) if ok else None, "max": round(max(ok), 1) if ok else None,
            "min": round(min(ok), 1) if ok else None, "n": len(ok), "timeouts": len(xs) - len(ok)}


def _make_project(tmp: Path):
    """The sample project the app opens, with two strokes so training can start."""
    from workbench.project import Project, ProjectOptions

    project = Project.create(tmp / "projects" / "sample", raw=None, options=ProjectOptions(sample_shape=(16, 256, 256)))
    project.annotations.add_stroke([[8, 40, 10], [8, 40, 240]], 1, width=5)
    project.annotations.add_stroke([[8, 150, 10], [8, 150, 240]], 2, width=5)
    return project


def _first_renders(ctx, server, result: dict) -> None:
    renders = []
    for _ in range(2):
        page, dt = open_app(ctx, server.url)
        renders.append(dt)
        page.close()
    result["first_render_s"] = {"values": [round(v, 2) for v in renders], "median": round(statistics.median(renders), 2)}
    print("first render", result["first_render_s"], flush=True)


def _latency_and_memory(ctx, server, n_clicks: int, result: dict) -> None:
    """Click latency and kernel memory, idle and while training."""
    import urllib.request

    with urllib.request.urlopen(f"{server.base_url}api/kernels?token={server.token}") as r:
        before = {k["id"] for k in json.load(r)}
    page, _ = open_app(ctx, server.url)
    page.wait_for_timeout(2000)
    rss_idle = kernel_rss_mb(server, before)
    idle = clicks(page, n_clicks)
    _tab(page, "4 Train", "train")
    page.select_option(".wb-train-duration select", label="5 min")
    page.click(".wb-action-train")
    page.wait_for_function("() => /iteration [1-9]/.test(document.querySelector('.wb-train-eta').innerText)",
                           timeout=300_000)
    training = clicks(page, n_clicks)
    rss_train = kernel_rss_mb(server, before)
    _tab(page, "4 Train", "train")
    rate = page.inner_text(".wb-train-eta")
    page.click(".wb-action-stop")
    result["click_latency_ms"] = {"idle": summary(idle), "training": summary(training),
                                  "target_ms": 300, "training_status": rate}
    result["kernel_rss_mb"] = {"after_load": round(max(rss_idle.values(), default=0), 1),
                               "while_training": round(max(rss_train.values(), default=0), 1)}
    print("latency", result["click_latency_ms"], "rss", result["kernel_rss_mb"], flush=True)
    page.wait_for_timeout(3000)
    page.close()


def _sessions(ctx, server, n_clicks: int, max_sessions: int, result: dict) -> None:
    """Median click latency with 1, 2, ... open sessions, until it doubles."""
    sessions = []
    pages = []
    base = None
    for n in range(1, max_sessions + 1):
        pg, dt = open_app(ctx, server.url)
        pages.append(pg)
        lat = clicks(pg, max(6, n_clicks // 2))
        med = summary(lat)["median"]
        sessions.append({"sessions": n, "median_ms": med, "render_s": round(dt, 1)})
        print("sessions", sessions[-1], flush=True)
        base = base or med
        if med is None or (base and med > 2 * base):
            break
    result["sessions"] = {"by_count": sessions,
                          "doubled_at": next((s["sessions"] for s in sessions
                                              if s["median_ms"] is None or s["median_ms"] > 2 * base), None),
                          "max_tried": max_sessions}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--max-sessions", type=int, default=6)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from widgets.serve import AppServerOptions, start_app_server
    from workbench.ports import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    project = _make_project(tmp)
    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0], "sample_shape": [16, 256, 256]}
    t = time.perf_counter()
    server = start_app_server(AppServerOptions(port=free_port(), project=project.root))
    result["server_start_s"] = round(time.perf_counter() - t, 2)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"),
                                        args=ARGS)
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            _first_renders(ctx, server, result)
            _latency_and_memory(ctx, server, args.clicks, result)
            _sessions(ctx, server, args.clicks, args.max_sessions, result)
            browser.close()
    finally:
        server.stop()
    result["load_avg_at_end"] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
