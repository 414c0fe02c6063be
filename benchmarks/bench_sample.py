"""Throughput and peak memory of the synthetic sample generator (``workbench sample``).

Each shape is written as OME-Zarr (raw + labels/instances + labels/semantic, with pyramids) by the CLI
in a subprocess, into a temporary folder that is deleted afterwards; the subprocess's peak resident
memory is polled with psutil. Rendering alone (no storage) is timed in this process on a 64 x 512 x 512
slab. A plain memory-copy bandwidth is measured in the same run as the machine's ceiling, and the load
average is recorded (the machine is shared).

The machine is shared: wall-clock figures fall when other jobs run, so CPU seconds (user + system, all
threads) are recorded too; ``raw_MB_per_cpu_second`` x 2 is what an otherwise idle 2-core machine gets.

Run: ``.venv/bin/python benchmarks/bench_sample.py [--quick]``; writes ``benchmarks/results/sample.json``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPES = [(512, 512, 512), (512, 1024, 1024)]
QUICK_SHAPES = [(128, 512, 512)]


def memcopy_gbs(nbytes: int = 512 * 1024**2, repeat: int = 5) -> float:
    """Best-of-``repeat`` numpy copy bandwidth (GB/s counting read + write)."""
    a = np.ones(nbytes, np.uint8)
    b = np.empty_like(a)
    best = 1e9
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return round(2 * nbytes / best / 1e9, 1)


def render_only(shape=(64, 512, 512)) -> dict:
    """Rendering throughput without storage (in memory, 2 threads); CPU time counts all threads."""
    from workbench.synthetic import make_sample

    make_sample((4, 64, 64))  # warm up imports
    t0, c0 = time.perf_counter(), time.process_time()
    make_sample(shape, seed=0)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = int(np.prod(shape))
    return {"shape": list(shape), "seconds": round(dt, 2), "raw_MB_per_s": round(n / dt / 1e6, 1),
            "voxels_per_s": round(n / dt), "cpu_seconds": round(cpu, 2),
            "raw_MB_per_cpu_second": round(n / cpu / 1e6, 1)}


def run_cli(shape, workdir: Path) -> dict:
    """``workbench sample`` in a subprocess: wall time, throughput, peak RSS, bytes on disk."""
    out = workdir / "sample.zarr"
    cmd = [sys.executable, "-m", "workbench", "sample", str(out), "--shape", *map(str, shape), "--no-progress"]
    env = dict(os.environ, WORKBENCH_NO_REEXEC="1")
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # poll the child's resident memory (ru_maxrss from wait4 would include what the parent held at fork)
    peak = [0]
    done = threading.Event()

    def poll():
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], ps.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    dt = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"workbench sample failed: {stderr.strip()}")
    n = int(np.prod(shape))
    cpu = usage.ru_utime + usage.ru_stime
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out)
    return {
        "shape": list(shape),
        "seconds": round(dt, 1),
        "raw_MB_per_s": round(n / dt / 1e6, 1),
        "voxels_per_s": round(n / dt),
        "cpu_seconds": round(cpu, 1),
        "raw_MB_per_cpu_second": round(n / cpu / 1e6, 1),
        "peak_rss_MB": round(peak[0] / 1e6),
        "raw_GB": round(n / 1e9, 2),
        "disk_GB": round(disk / 1e9, 2),
        "cli_summary": stdout.strip(),
    }


def main() -> int:
    quick = "--quick" in sys.argv
    results: dict = {
        "what": "workbench sample: synthetic EM volume + ground truth written as OME-Zarr with pyramids",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "memcopy_GB_per_s": memcopy_gbs(),
        "write": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-sample-") as tmp:
        for shape in QUICK_SHAPES if quick else SHAPES:
            r = run_cli(shape, Path(tmp))
            print(json.dumps(r), flush=True)
            results["write"].append(r)
    results["render_only"] = render_only()  # last: its memory must not be inherited by the children
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = HERE / "results" / "sample.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
