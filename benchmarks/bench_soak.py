"""Robustness of the app's process lifecycle: signals, parent death, and a soak of many sessions.

Two parts, both written to ``benchmarks/results/robustness_lifecycle.json``:

* **signals**: ``workbench app`` (the real command) with a one-cell notebook whose kernel starts a child
  process of its own; the page is loaded once, then the launcher gets SIGTERM, SIGINT, SIGHUP or
  ``kill -9`` (``--repeats`` times each). Counted: processes of the family still alive 10 s later
  (orphans, target 0), seconds until all were gone, the port free again, the temporary folder removed.
* **soak**: one app server on a sample project and ``--sessions`` browser sessions (headless chromium)
  for ``--minutes``, each repeating: open the page, choose the 2D U-Net, draw one stroke per class, train
  30 s, predict, reload the page (the strokes must still be counted), close it. At the end, once every
  page is closed and its kernel has ended: kernels, server threads, open files and listening ports
  against the figures after a warm-up session (leaks, target 0), the server's RSS growth (target
  < 10 %), and every session's strokes, runs and prediction on disk.

Usage: ``python benchmarks/bench_soak.py [--sessions 6] [--minutes 30] [--repeats 2] [--skip-signals]``
(run figures to report under ``flock /tmp/wb-bench.lock``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "robustness_lifecycle.json"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGKILL")
DEADLINE_SECONDS = 10.0
WORKER_CELL = ("import subprocess, sys\n"
               "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
               "print('worker', worker.pid)\n")


# ----------------------------------------------------------------------------- signals
def _launch(nb_dir: Path, log: Path) -> tuple[subprocess.Popen, str, int]:
    from workbench.ports import free_port

    port = free_port()
    with open(log, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--port", str(port),
                                 "--notebook-dir", str(nb_dir)], stdout=fo, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        m = re.search(r"http://\S+token=\w+", log.read_text())
        if m:
            return proc, m.group(0), port
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"workbench app did not start: {log.read_text()[-500:]}")
        time.sleep(0.2)


def signal_round(how: str, nb_dir: Path, work: Path) -> dict:
    """One launch, one page load, one signal: what is left after DEADLINE_SECONDS."""
    from workbench.ports import port_is_free

    proc, url, port = _launch(nb_dir, work / f"{how}.log")
    launcher = psutil.Process(proc.pid)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(url, timeout=180) as r:
        r.read()
    deadline = time.monotonic() + 60
    family = launcher.children(recursive=True)
    while len(family) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
        family = launcher.children(recursive=True)
    server = next(p for p in family if any(a.startswith("--config=") for a in p.cmdline()))
    runtime = Path(next(a for a in server.cmdline() if a.startswith("--config=")).split("=", 1)[1]).parent
    t0 = time.monotonic()
    if how == "SIGKILL":
        proc.kill()
    else:
        proc.send_signal(getattr(signal, how))
    gone, alive = psutil.wait_procs([launcher, *family], timeout=DEADLINE_SECONDS)
    seconds = time.monotonic() - t0  # wait_procs returns as soon as the last one has gone
    while (runtime.exists() or not port_is_free("127.0.0.1", port)) and time.monotonic() < t0 + DEADLINE_SECONDS:
        time.sleep(0.1)
    row = {"signal": how, "family": len(family) + 1, "orphans": len(alive), "seconds_until_all_gone": round(seconds, 2),
           "port_free": port_is_free("127.0.0.1", port), "runtime_removed": not runtime.exists()}
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return row


def run_signals(repeats: int) -> dict:
    import nbformat

    work = Path(tempfile.mkdtemp(prefix="wb-soak-signals-"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(WORKER_CELL)]
    nbformat.write(nb, work / "workbench.ipynb")
    rows = []
    for _ in range(repeats):
        for how in SIGNALS:
            rows.append(signal_round(how, work, work))
            print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    by_signal = {}
    for how in SIGNALS:
        mine = [r for r in rows if r["signal"] == how]
        by_signal[how] = {"runs": len(mine), "orphans": sum(r["orphans"] for r in mine),
                          "max_seconds_until_all_gone": max(r["seconds_until_all_gone"] for r in mine),
                          "port_free": all(r["port_free"] for r in mine),
                          "runtime_removed": all(r["runtime_removed"] for r in mine)}
    return {"rounds": rows, "by_signal": by_signal, "orphans_total": sum(r["orphans"] for r in rows)}


# ----------------------------------------------------------------------------- soak
def _fd_kinds(pid: int) -> dict[str, int]:
    """What the process's open descriptors are: a file's path, or "socket", "pipe", "anon_inode:[...]"."""
    kinds: dict[str, int] = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def _server_figures(server) -> dict:
    """Threads, open files, listening ports and RSS of the server, and its kernels and descendants."""
    proc = psutil.Process(server.process.pid)
    listening = sorted({c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN})
    ports_dir = Path(server.runtime_dir) / "viewer-ports"
    return {"threads": proc.num_threads(), "open_files": proc.num_fds(), "listening_ports": listening,
            "rss_mb": round(proc.memory_info().rss / 2**20, 1), "kernels": len(server.kernel_ids()),
            "descendants": len(proc.children(recursive=True)),
            "viewer_ports_registered": len(list(ports_dir.iterdir())) if ports_dir.exists() else 0,
            "fd_kinds": _fd_kinds(proc.pid)}


async def _tab(page, title: str, panel: str) -> None:
    await page.locator(".lm-TabBar-tab", has_text=title).click()
    await page.wait_for_selector(f".wb-step-{panel}", state="visible", timeout=300_000)


async def _count(page, class_id: int) -> int:
    txt = await page.inner_text(f".wb-step-annotate .wb-count-{class_id}")
    return int(txt.strip() or 0)


CANVASES = """(sel) => { const root = document.querySelector(sel); if (!root) return [];
  const c = []; const walk = (r) => { r.querySelectorAll('*').forEach(e => { if (e.tagName === 'CANVAS') c.push(e);
  if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(root);
  return c.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }).filter(r => r[2] > 100); }"""


async def _stroke(page, class_name: str, class_id: int, offset: float) -> int:
    """Draw one stroke of ``class_name`` across the slice view; returns the class's labelled count after it."""
    for _ in range(120):
        boxes = await page.evaluate(CANVASES, ".wb-annotate-view")
        if boxes:
            break
        await page.wait_for_timeout(500)
    x, y, w, h = boxes[0]
    await page.locator(".wb-class-select button", has_text=class_name).click()
    await page.wait_for_timeout(1500)
    before = await _count(page, class_id)
    for attempt in range(3):
        await page.mouse.move(x + w * 0.2, y + h * offset)
        await page.mouse.down()
        for i in range(1, 25):
            await page.mouse.move(x + w * (0.2 + 0.6 * i / 24), y + h * (offset + 0.05 * (i % 2)), steps=2)
        await page.mouse.up()
        try:
            await page.wait_for_function(f"(n) => +document.querySelector('.wb-step-annotate .wb-count-{class_id}')"
                                         ".innerText > n", arg=before, timeout=60_000)
            break
        except Exception:
            if attempt == 2:
                raise
    return await _count(page, class_id)


async def _until_done(page, step: str, action: str | None = None) -> None:
    """Wait until the step's ETA line says done; raise with the status line if the step shows an error."""
    action = action or step
    await page.wait_for_function(
        f"""() => document.querySelector('.wb-{action}-eta').innerText.startsWith('done')
                 || document.querySelector('.wb-status-{step} .wb-status-error') !== null""",
        timeout=900_000, polling=1000)
    error = await page.query_selector(f".wb-status-{step} .wb-status-error")
    if error is not None:
        raise RuntimeError(f"{action} failed in the app: {(await error.inner_text()).strip()}")


async def _cycle(ctx, server, sid: int, cycle: int, log: list) -> dict:
    t0 = time.monotonic()
    row = {"session": sid, "cycle": cycle}
    page = await ctx.new_page()
    try:
        await page.goto(server.url, timeout=300_000)
        await page.wait_for_selector(".wb-step >> visible=true", timeout=300_000)  # the project's last step
        row["clean_url"] = "token=" not in page.url
        await _tab(page, "2 Architecture", "architecture")
        await page.click(".wb-arch-unet2d")
        await _tab(page, "3 Annotate", "annotate")
        offset = 0.15 + 0.1 * ((sid * 3 + cycle) % 7)
        counts = (await _stroke(page, "membrane", 1, offset), await _stroke(page, "interior", 2, offset + 0.04))
        row["counts"] = counts
        await _tab(page, "4 Train", "train")
        await page.select_option(".wb-train-duration select", label="30 s")
        await page.click(".wb-action-train")
        await _until_done(page, "train")
        row["trained"] = True
        await _tab(page, "5 Results", "results")
        await page.click(".wb-action-predict")
        await _until_done(page, "results", "predict")
        row["predicted"] = True
        await page.reload(timeout=300_000)
        await page.wait_for_selector(".wb-step >> visible=true", timeout=300_000)  # back at the last step
        await _tab(page, "3 Annotate", "annotate")
        await page.wait_for_function("() => +document.querySelector('.wb-step-annotate .wb-count-1').innerText > 0",
                                     timeout=120_000)
        row["counts_after_reload"] = (await _count(page, 1), await _count(page, 2))
        # the sessions share one project and paint over each other's strokes at the same places, so a count
        # can drop between a page's stroke and its reload without anything lost (work_on_disk checks the disk)
        row["reloaded"] = row["counts_after_reload"][0] >= counts[0] and row["counts_after_reload"][1] >= counts[1]
    except Exception as err:  # recorded: a failed cycle is a finding, the soak goes on
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        row["server_log_tail"] = server.log_text()[-3000:]  # the kernels' warnings and errors land there
    finally:
        await page.close()
        row["seconds"] = round(time.monotonic() - t0, 1)
        row["server_rss_mb"] = round(psutil.Process(server.process.pid).memory_info().rss / 2**20, 1)
        row["server_fds"] = psutil.Process(server.process.pid).num_fds()
        log.append(row)
        print(json.dumps(row), flush=True)
    return row


async def _session(browser, server, sid: int, until: float, log: list) -> None:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 1100})
    cycle = 0
    while time.monotonic() < until:
        await _cycle(ctx, server, sid, cycle, log)
        cycle += 1
    await ctx.close()


def _wait_idle(server, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.kernel_ids() and not psutil.Process(server.process.pid).children(recursive=True):
            return True
        time.sleep(2)
    return False


def run_soak(sessions: int, minutes: float) -> dict:
    from playwright.async_api import async_playwright

    from widgets.serve import AppServerOptions, start_app_server
    from workbench.project import Project, ProjectOptions

    root = Path(tempfile.mkdtemp(prefix="wb-soak-"))
    project = Project.create(root / "projects" / "soak", raw=None, options=ProjectOptions(sample_shape=(8, 256, 256)))
    server = start_app_server(AppServerOptions(port=0, project=project.root, data=root))
    log: list[dict] = []
    try:
        async def main() -> dict:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                # warm-up: one page load and close, so the server has loaded what every page needs
                ctx = await browser.new_context(viewport={"width": 1280, "height": 1100})
                page = await ctx.new_page()
                t_load = time.monotonic()
                await page.goto(server.url, timeout=600_000)
                try:
                    await page.wait_for_selector(".wb-step-data", timeout=600_000)
                except Exception:
                    await page.screenshot(path=str(root / "warm-up.png"))
                    raise RuntimeError(f"the warm-up page did not render (screenshot {root / 'warm-up.png'}; "
                                       f"server log: {server.log_text()[-800:]})") from None
                warm_up_s = time.monotonic() - t_load
                await page.wait_for_timeout(8000)  # the session watchdog sees the page (it checks every 3 s)
                await page.close()
                await ctx.close()
                idle = _wait_idle(server)
                baseline = _server_figures(server)
                baseline["idle"] = idle
                baseline["first_page_s"] = round(warm_up_s, 1)
                t0 = time.monotonic()
                until = t0 + minutes * 60
                await asyncio.gather(*[_session(browser, server, s, until, log) for s in range(sessions)])
                elapsed = time.monotonic() - t0
                await browser.close()
            # a page closed within seconds of connecting may leave its kernel's watchdog without a sight of
            # it: that kernel ends by design after the first-connect wait, so the end is checked after it
            from widgets.lifecycle import FIRST_CONNECT_TIMEOUT

            t_end = time.monotonic()
            idle = _wait_idle(server, timeout=FIRST_CONNECT_TIMEOUT + 30)
            end = _server_figures(server)
            end["idle_after_s"] = round(time.monotonic() - t_end, 1)
            end["idle"] = idle
            if not idle:  # what the kernels still alive are doing
                end["left_alive"] = [{"pid": k.pid, "status": k.status(), "cpu_s": round(sum(k.cpu_times()[:2]), 1),
                                      "threads": k.num_threads(), "cmdline": " ".join(k.cmdline())[-160:]}
                                     for k in psutil.Process(server.process.pid).children(recursive=True)]
                end["server_log_tail"] = server.log_text()[-3000:]
            return {"baseline": baseline, "end": end, "elapsed_s": round(elapsed, 1)}

        figures = asyncio.run(main())
    finally:
        on_disk = _work_on_disk(project.root)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return _soak_figures(sessions, minutes, figures, log, on_disk)


def _soak_figures(sessions: int, minutes: float, figures: dict, log: list[dict], on_disk: dict) -> dict:
    """The soak's result: cycles, leaks (end against the warm-up baseline), memory growth, work on disk."""
    base, end = figures["baseline"], figures["end"]
    done = [r for r in log if "error" not in r]
    firsts = [r["server_rss_mb"] for r in log if r["cycle"] == 0]
    later = any(r["cycle"] > 0 for r in log)
    first_rss = max(firsts) if firsts and later else None
    leaks = {"kernels": end["kernels"], "kernel_processes": end["descendants"],
             "threads": max(0, end["threads"] - base["threads"]),
             "open_files": max(0, end["open_files"] - base["open_files"]),
             "ports": len(set(end["listening_ports"]) - set(base["listening_ports"])),
             "viewer_ports_registered": end["viewer_ports_registered"]}
    return {
        "sessions": sessions, "minutes": minutes, "elapsed_s": figures["elapsed_s"],
        "cycles": len(log), "cycles_completed": len(done),
        "trainings": sum(bool(r.get("trained")) for r in log), "predictions": sum(bool(r.get("predicted")) for r in log),
        "reloads_with_strokes": sum(bool(r.get("reloaded")) for r in log),
        "clean_url": all(r.get("clean_url", True) for r in log),
        "errors": [r["error"] for r in log if "error" in r],
        "server_baseline": base, "server_end": end, "leaks": leaks, "leaks_total": sum(leaks.values()),
        "open_files_new": {k: n - base["fd_kinds"].get(k, 0) for k, n in end["fd_kinds"].items()
                           if n != base["fd_kinds"].get(k, 0)},
        "rss_growth_pct": round(100 * (end["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 1),
        # after every session's first cycle the server has loaded all it needs: growth from there is the trend
        "rss_after_first_cycles_mb": first_rss,
        "rss_growth_after_first_cycles_pct": (round(100 * (end["rss_mb"] - first_rss) / first_rss, 1)
                                              if first_rss else None),
        "work_on_disk": on_disk,
        "work_on_disk_ok": (on_disk["runs_with_checkpoint"] >= sum(bool(r.get("trained")) for r in log)
                            and on_disk["labelled"]["1"] > 0 and on_disk["labelled"]["2"] > 0
                            and (on_disk["predictions"] > 0 or not any(r.get("predicted") for r in log))),
        "log": log,
    }


def _work_on_disk(root: Path) -> dict:
    from workbench.project import Project

    project = Project.open(root)
    counts = project.annotations.counts()
    runs = project.runs()
    preds = project.data_path / "predictions"
    return {"labelled": {str(c): int(counts.get(c, 0)) for c in (1, 2)},
            "runs": len(runs), "runs_with_checkpoint": sum(r.checkpoint is not None for r in runs),
            "predictions": len(list(preds.iterdir())) if preds.exists() else 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=2, help="rounds of each signal")
    ap.add_argument("--skip-signals", action="store_true")
    ap.add_argument("--skip-soak", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--note", default="", help="a note stored in the JSON (e.g. how the run was scheduled)")
    args = ap.parse_args(argv)
    result = {"benchmark": "bench_soak", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": os.getloadavg()},
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    if args.note:
        result["note"] = args.note
    if args.sessions != 6 or args.minutes != 30:
        result["short_form"] = (f"{args.sessions} sessions x {args.minutes:g} min instead of 6 x 30 "
                                "(shared 2-core machine)")
    if not args.skip_signals:
        result["signals"] = run_signals(args.repeats)
        print(json.dumps(result["signals"]["by_signal"], indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.skip_soak:
        try:
            result["soak"] = run_soak(args.sessions, args.minutes)
        except Exception as err:  # recorded in the JSON, with the signal figures kept
            result["soak_error"] = f"{type(err).__name__}: {err}"[:2000]
    result["machine"]["loadavg_end"] = os.getloadavg()
    table = []
    if "signals" in result:
        for how, row in result["signals"]["by_signal"].items():
            table.append({"figure": f"orphans after {how} of workbench app", "value": row["orphans"], "target": 0,
                          "runs": row["runs"], "max_seconds": row["max_seconds_until_all_gone"]})
    if "soak" in result:
        soak = result["soak"]
        table.append({"figure": "soak leaks (kernels, threads, files, ports)", "value": soak["leaks_total"], "target": 0,
                      "sessions": soak["sessions"], "minutes": soak["minutes"]})
        table.append({"figure": "soak server RSS growth % (from a warm-up page load)", "value": soak["rss_growth_pct"],
                      "target": "< 10"})
        table.append({"figure": "soak server RSS growth % (after every session's first cycle)",
                      "value": soak["rss_growth_after_first_cycles_pct"], "target": "< 10"})
    result["table"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
