"""Annotation store latency on an ISBI-sized project (30 x 512 x 512): strokes, undo, fills, import, counts,
and the simulated scribbles used by the training benchmarks.

    python benchmarks/bench_annotations.py        # writes benchmarks/results/annotations.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHAPE = (30, 512, 512)


def _ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": round(float(np.median(times)), 2), "max_ms": round(float(np.max(times)), 2),
            "n": repeat}


def main() -> int:
    from scribbles import FRACTIONS

    from workbench.annotations import simulate_scribbles
    from workbench.io.volume import Volume
    from workbench.project import Project

    rng = np.random.default_rng(0)
    results: dict = {"shape": list(SHAPE), "machine": platform.machine(), "cpus": os.cpu_count(),
                     "load_average_1min_at_start": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Volume(rng.integers(0, 255, SHAPE, dtype=np.uint8), voxel_size=(50, 4, 4))
        t0 = time.perf_counter()
        project = Project.create(Path(tmp) / "p", raw=raw)
        results["create_project_s"] = round(time.perf_counter() - t0, 3)
        store = project.annotations

        def stroke(width, plane, n_points=40, length=300):
            z = int(rng.integers(0, SHAPE[0]))
            y0, x0 = rng.uniform(50, 460, 2)
            ang = rng.uniform(0, 2 * np.pi)
            t = np.linspace(0, length, n_points)
            pts = np.column_stack([np.full(n_points, z), y0 + np.sin(ang) * t, x0 + np.cos(ang) * t])
            return lambda: store.add_stroke(pts, 1 + int(rng.integers(0, 2)), width=width, plane=plane)

        results["stroke_xy_w3_300px"] = _ms(lambda: stroke(3, "xy")(), 40)
        results["stroke_xy_w9_300px"] = _ms(lambda: stroke(9, "xy")(), 20)
        results["stroke_3d_w5_300px"] = _ms(lambda: stroke(5, "3d")(), 10)
        results["undo_stroke"] = _ms(store.undo, 20)
        results["fill_slice"] = _ms(lambda: store.fill_slice(int(rng.integers(0, SHAPE[0])), 2), 5)
        results["undo_fill_slice"] = _ms(store.undo, 5)
        results["counts_cached"] = _ms(store.counts, 20)
        dense = (rng.random(SHAPE) < 0.01).astype(np.uint8)
        results["import_dense_volume"] = _ms(lambda: store.import_labels(dense), 1)
        results["undo_import"] = _ms(store.undo, 1)
        results["counts_after_undo_import"] = _ms(store.counts, 1)
        results["clear"] = _ms(store.clear, 1)
        results["journal_bytes"] = store.journal_path.stat().st_size

    data = Path(os.environ.get("WORKBENCH_DATA_DIR", HERE.parents[1] / "shared" / "data"))
    labels_tif = data / "isbi2012" / "train-labels.tif"
    if labels_tif.exists():
        import tifffile

        dense = tifffile.imread(labels_tif)
        sims = {}
        for f in FRACTIONS:
            t0 = time.perf_counter()
            lab, achieved = simulate_scribbles(dense, f, seed=0)
            sims[str(f)] = {"seconds": round(time.perf_counter() - t0, 2),
                            "achieved": {str(k): round(v, 5) for k, v in achieved.items()},
                            "total": round(float(np.count_nonzero(lab) / lab.size), 5)}
        results["scribbles_isbi"] = sims

    out = HERE / "results" / "annotations.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
