"""Import throughput and peak memory of ``workbench import`` on large multipage TIFF stacks.

Builds ~0.5 GB and ~2 GB uncompressed uint8 TIFF stacks (ISBI 2012 slices tiled 4 x 4 to 2048^2, one
page per z) under a temporary folder in /tmp, imports each with the CLI in a subprocess, and records
wall time, throughput, CPU time (``os.wait4`` rusage) and the subprocess's peak resident memory (its
kernel high-water mark VmHWM, polled until exit, cross-checked by polled RSS). A plain memory-copy
bandwidth is measured in the same run as the ceiling. Writes ``benchmarks/results/import.json``; deletes the temporary files.

Run: ``.venv/bin/python benchmarks/bench_import.py`` (about a minute or two).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WORKBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
PLANE = 2048


def memcopy_gbps(nbytes: int = 512 * 1024**2, repeats: int = 5) -> float:
    """Best-of-N bandwidth of a large numpy copy (bytes read + written counted once, as 'copy' speed)."""
    a = np.ones(nbytes, np.uint8)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return nbytes / best / 1e9


def build_stack(path: Path, depth: int) -> int:
    """A (depth, 2048, 2048) uint8 TIFF, one uncompressed page per z, from tiled ISBI slices."""
    import tifffile

    isbi = tifffile.imread(DATA / "isbi2012" / "train-volume.tif")
    reps = PLANE // isbi.shape[1]
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for z in range(depth):
            plane = np.tile(isbi[z % isbi.shape[0]], (reps, reps))
            plane = np.roll(plane, z * 7, axis=1)  # no two slices alike
            tw.write(plane, contiguous=True, photometric="minisblack")
    return depth * PLANE * PLANE


def run_import(src: Path, out: Path) -> dict:
    """Run the CLI on ``src`` and measure it."""
    import psutil

    cmd = [sys.executable, "-m", "workbench", "import", str(src), str(out), "--voxel-size", "50", "4", "4",
           "--no-progress"]
    env = dict(os.environ, WORKBENCH_NO_REEXEC="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = [0, 0]  # VmHWM (kernel high-water mark of this process image), polled RSS

    def poll():
        status = Path(f"/proc/{proc.pid}/status")
        try:
            p = psutil.Process(proc.pid)
            while proc.returncode is None:
                peak[1] = max(peak[1], p.memory_info().rss)
                m = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
                if m:
                    peak[0] = max(peak[0], int(m.group(1)) * 1024)
                time.sleep(0.02)
        except (psutil.Error, OSError):
            pass

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    stdout = proc.stdout.read().decode()
    stderr = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}): {stderr}")
    m = re.search(r"in ([\d.]+) s", stdout)
    out_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "wall_s": round(wall, 2),
        "reported_s": float(m.group(1)) if m else None,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(peak[0] / 2**20, 1),
        "peak_rss_polled_mb": round(peak[1] / 2**20, 1),
        # wait4's ru_maxrss keeps the parent's high-water mark from before exec (vfork): an upper bound only
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "output_mb": round(out_bytes / 2**20, 1),
        "summary": stdout.strip(),
    }


def main() -> int:
    import tifffile

    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "notes": (
            "uncompressed uint8 TIFF, one page per z, 2048 x 2048 planes; source files freshly written, so "
            "mostly read from the page cache; output OME-Zarr (zarr v2, Blosc-lz4, chunks 16x256x256) with "
            "a pyramid (voxel size 50 x 4 x 4 nm) on the same disk. Throughput = source bytes / wall time of the "
            "whole CLI process (includes ~1 s of interpreter start and imports); throughput_per_cpu_s_mb = source "
            "bytes / CPU seconds of the import process (less sensitive to other load on the shared 2 cores). "
            "Peak RSS = VmHWM of the import process (/proc/PID/status, polled every 20 ms until exit), cross-checked "
            "by polled RSS."
        ),
        "runs": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-import-", dir="/tmp"))
    try:
        for depth in (128, 512):  # ~0.5 GB and ~2.1 GB
            src = tmp / f"stack_{depth}.tif"
            t = time.perf_counter()
            nbytes = build_stack(src, depth)
            build_s = time.perf_counter() - t
            assert tifffile.TiffFile(src).series[0].shape == (depth, PLANE, PLANE)
            out = tmp / f"stack_{depth}.zarr"
            r = run_import(src, out)
            r.update(
                shape=[depth, PLANE, PLANE],
                source_mb=round(nbytes / 2**20, 1),
                build_s=round(build_s, 1),
                throughput_mb_s=round(nbytes / 2**20 / r["wall_s"], 1),
                throughput_per_cpu_s_mb=round(nbytes / 2**20 / r["cpu_s"], 1),
                load_average_1min=round(os.getloadavg()[0], 2),
                throughput_excl_startup_mb_s=round(nbytes / 2**20 / r["reported_s"], 1) if r["reported_s"] else None,
            )
            results["runs"].append(r)
            print(json.dumps(r), flush=True)
            shutil.rmtree(out)
            src.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["memcopy_gbps"] = round(memcopy_gbps(), 1)  # after the imports: keeps the parent small when spawning
    runs = results["runs"]
    results["peak_rss_ratio_2gb_vs_05gb"] = round(runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 2)
    results["throughput_vs_memcopy"] = round(runs[1]["throughput_mb_s"] / 1024 / results["memcopy_gbps"], 4)
    dest = REPO / "benchmarks" / "results" / "import.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
