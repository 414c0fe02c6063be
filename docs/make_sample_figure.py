"""Render ``docs/images/sample_vs_isbi.png``: a synthetic sample section beside a real ISBI 2012 section.

Both panels show the same field of view (2.048 x 2.048 um) at the same scale; the third panel is the
sample's ground truth (semantic classes) over the same section.

Run: ``.venv/bin/python docs/make_sample_figure.py`` (needs matplotlib, in the ``bench`` extra, and the
ISBI data in ``WORKBENCH_DATA_DIR``, default ``../shared/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIELD_NM = 2048.0


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile
    from matplotlib.colors import ListedColormap

    from workbench.synthetic import SEMANTIC_CLASSES, make_sample

    data = Path(os.environ.get("WORKBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
    isbi = tifffile.imread(data / "isbi2012" / "train-volume.tif")[15]  # 512 x 512 at 4 nm
    sample = make_sample((32, 256, 256), seed=0)
    z = 16
    raw, sem = sample.raw[z], sample.semantic[z]

    ext = [0, FIELD_NM / 1000, FIELD_NM / 1000, 0]
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.4), dpi=90)
    axes[0].imshow(raw, cmap="gray", vmin=0, vmax=255, extent=ext, interpolation="bilinear")
    axes[1].imshow(isbi, cmap="gray", vmin=0, vmax=255, extent=ext, interpolation="bilinear")
    colours = [c["color"] for c in SEMANTIC_CLASSES]
    axes[2].imshow(raw, cmap="gray", vmin=0, vmax=255, extent=ext, interpolation="bilinear")
    overlay = np.ma.masked_equal(sem, 0)
    axes[2].imshow(overlay, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5, alpha=0.55,
                   extent=ext, interpolation="nearest")
    captions = [
        "synthetic sample (workbench sample, seed 0)\n8 x 8 nm pixels, 40 nm sections",
        "real ssTEM: ISBI 2012 training volume, section 15\n4 x 4 nm pixels, 50 nm sections",
        "sample ground truth: membrane (yellow), mitochondrion (red),\nvesicle (blue), synaptic cleft (green)",
    ]
    for ax, text in zip(axes, captions):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(text, fontsize=10)
        ax.plot([0.1, 0.6], [1.93, 1.93], color="white", lw=4, solid_capstyle="butt")
        ax.text(0.35, 1.86, "500 nm", color="white", ha="center", va="bottom", fontsize=9)
    fig.suptitle("Same field of view (2 x 2 um), same scale", fontsize=11)
    fig.tight_layout()
    out = REPO / "docs" / "images" / "sample_vs_isbi.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
