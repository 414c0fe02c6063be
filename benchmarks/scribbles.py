"""Simulated scribbles for the benchmarks: the fractions they use and a PNG of the strokes on ISBI 2012.

The simulator itself is public: :func:`workbench.annotations.simulate_scribbles` (re-exported here, so
``from scribbles import simulate_scribbles`` with benchmarks/ on sys.path keeps working).

    python benchmarks/scribbles.py --fraction 0.01 --png /tmp/scribbles.png     # ISBI 2012 example
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from workbench.annotations.scribbles import INTERIOR, MEMBRANE, ScribbleStyle, simulate_scribbles
from workbench.classes import default_color, hex_to_rgb

__all__ = ["FRACTIONS", "INTERIOR", "MEMBRANE", "ScribbleStyle", "save_overlay_png", "simulate_scribbles"]

#: The fractions the benchmarks use (0.25 %, 0.5 %, 1 %, 5 % of the pixels).
FRACTIONS = (0.0025, 0.005, 0.01, 0.05)


def save_overlay_png(raw2d: np.ndarray, labels2d: np.ndarray, path) -> Path:
    """Save a slice in grey with the scribbles in their class colours (membrane red, interior green)."""
    from PIL import Image

    raw2d = np.asarray(raw2d, dtype=np.float32)
    lo, hi = np.percentile(raw2d, (1, 99))
    grey = np.clip((raw2d - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for cls in (MEMBRANE, INTERIOR):
        rgb[labels2d == cls] = hex_to_rgb(default_color(cls))
    path = Path(path)
    Image.fromarray(rgb).save(path)
    return path


def main(argv=None) -> int:
    import tifffile

    p = argparse.ArgumentParser(description="Simulated scribbles on ISBI 2012 ground truth")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slice", type=int, default=0, help="slice to draw in the PNG")
    p.add_argument("--png", default="/tmp/scribbles.png")
    args = p.parse_args(argv)
    data = Path(os.environ.get("WORKBENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    raw = tifffile.imread(data / "isbi2012" / "train-volume.tif")
    dense = tifffile.imread(data / "isbi2012" / "train-labels.tif")
    labels, achieved = simulate_scribbles(dense, args.fraction, seed=args.seed)
    save_overlay_png(raw[args.slice], labels[args.slice], args.png)
    print(f"target {args.fraction:.4f}: membrane {achieved[MEMBRANE]:.4f}, interior {achieved[INTERIOR]:.4f}, "
          f"total {sum(achieved.values()):.4f} -> {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
