"""Meshing speed and memory: ``workbench mesh`` on a 64 x 1024 x 1024 segmentation of a few thousand objects.

The segmentation is synthetic but shaped like serial-section neurites: a Voronoi tessellation of drifting
seeds in every section (about ``--seeds`` cells per section, ~20 px across), one-pixel membranes (label 0)
between cells, and every neurite cut once at a random section into two objects. It is written as an
OME-Zarr label image (chunks 32 x 256 x 256); each configuration then runs ``workbench mesh`` in a child
process, timed on the wall clock, with the child's peak RSS from ``wait4``. Targets: < 60 s, < 2 GB.

Run under the shared lock: ``flock /tmp/wb-bench.lock .venv/bin/python benchmarks/bench_meshes.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "meshes.json"
VOXEL = (40.0, 8.0, 8.0)


def make_segmentation(path: Path, shape=(64, 1024, 1024), seeds: int = 3000, seed: int = 0) -> int:
    """Write the synthetic neurite segmentation to ``path``; returns the number of objects."""
    import zarr
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    z, h, w = shape
    start = rng.uniform(0, [h, w], size=(seeds, 2))
    drift = rng.normal(0, 0.4, size=(seeds, 2))
    cut = rng.integers(z // 8, z - z // 8, size=seeds)  # neurite i is object 2i+1 above the cut, 2i+2 below
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = root.create_array("0", shape=shape, chunks=(32, 256, 256), dtype="uint32", fill_value=0,
                            chunk_key_encoding={"name": "v2", "separator": "/"})
    for k in range(z):
        pts = np.clip(start + drift * k, 0, [h - 1, w - 1])
        _, near = cKDTree(pts).query(grid, workers=2)
        cell = near.reshape(h, w)
        lab = (2 * cell + 1 + (k >= cut[cell])).astype(np.uint32)
        edge = np.zeros((h, w), bool)
        edge[:, 1:] |= cell[:, 1:] != cell[:, :-1]
        edge[1:, :] |= cell[1:, :] != cell[:-1, :]
        lab[edge] = 0
        arr[k] = lab
    root.attrs.update({
        "multiscales": [{"version": "0.4", "name": "neurites",
                         "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
                         "datasets": [{"path": "0", "coordinateTransformations": [
                             {"type": "scale", "scale": list(VOXEL)}]}]}],
        "image-label": {"version": "0.4"},
    })
    return 2 * seeds


def run_child(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds and peak RSS (MB) of that child alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return {"seconds": round(seconds, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_MB": round(usage.ru_maxrss / 1024), "summary": out.strip().splitlines()[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[64, 1024, 1024])
    ap.add_argument("--seeds", type=int, default=3000, help="neurites per section (objects = 2 x seeds)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-meshes-"))
    try:
        seg = tmp / "seg.zarr"
        t0 = time.perf_counter()
        n = make_segmentation(seg, tuple(args.shape), args.seeds)
        gen_s = time.perf_counter() - t0
        load_before = os.getloadavg()
        workbench = str(Path(sys.executable).with_name("workbench"))
        runs = []
        for label, extra in (("marching cubes only", []),
                             ("smooth 5, simplify 0.5", ["--smooth", "5", "--simplify", "0.5"])):
            shutil.rmtree(seg / "meshes", ignore_errors=True)
            res = run_child([workbench, "mesh", str(seg), "--no-progress", *extra])
            files = list((seg / "meshes").glob("*:0"))
            res.update(options=label, meshes_written=len(files),
                       disk_MB=round(sum(p.stat().st_size for p in (seg / "meshes").iterdir()) / 1e6, 1),
                       objects_per_s=round(len(files) / res["seconds"], 1))
            runs.append(res)
            print(json.dumps(res))
        try:
            import bioimage_cpp  # noqa: F401

            backend = "bioimage-cpp marching cubes and smoothing, fast-simplification"
        except ImportError:
            backend = "scikit-image marching cubes, numpy smoothing, fast-simplification"
        result = {
            "what": "workbench mesh: legacy precomputed meshes of every object of a synthetic neurite segmentation",
            "command": "flock /tmp/wb-bench.lock .venv/bin/python benchmarks/bench_meshes.py",
            "shape": list(args.shape), "voxel_size_nm": list(VOXEL), "objects": n,
            "segmentation": "Voronoi cells of drifting seeds per section, 1 px membranes, each neurite cut in two",
            "generation_seconds": round(gen_s, 1),
            "backend": backend,
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "targets": {"seconds": 60, "peak_rss_MB": 2048},
            "note": "seconds is wall time on a machine shared with other jobs (see the load averages); "
                    "cpu_seconds is what the run itself used, over 2 cores",
            "runs": runs,
            "met": all(r["seconds"] < 60 and r["peak_rss_MB"] < 2048 for r in runs),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
