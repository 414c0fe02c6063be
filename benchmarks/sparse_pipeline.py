"""Shared pieces of the sparse-label benchmark (ISBI 2012): data, scribbles, the instance pipeline and metrics.

Protocol: train on sections 0-19 from simulated scribbles, evaluate on sections 20-29.
- Pixel error and membrane F1 of the semantic map (interior probability p > 0.5 = interior).
- Cells: seeded watershed on p (seeds = connected components of gaussian(p, 1) > 0.9, flooding 1 - p)
  and, as a harsher number, connected components of p > 0.5. Also reported (``ws_merged_*``): the same
  watershed followed by the workbench's merging of weak boundaries (mean membrane probability along a
  contact < 0.5, ``workbench segment --method watershed --merge-threshold 0.5``).
- Adapted Rand error (skimage.metrics.adapted_rand_error) and VOI split/merge
  (skimage.metrics.variation_of_information) against the 2D connected components of the ground-truth
  interior (label 0 = membrane, ignored), computed per slice and averaged over the 10 test slices.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TRAIN = slice(0, 20)
TEST = slice(20, 30)
MEMBRANE, INTERIOR = 1, 2


def reexec_with_tunables() -> None:
    """Re-run this script with glibc malloc tuned (as the workbench CLI does), once."""
    from workbench.tuning import reexec_tuned

    # OpenMP threads that sleep instead of spinning: on a shared 2-core machine a 2-thread training step
    # was 1.6x faster with this (2.7-3.2 s vs 4.5-5.0 s per step under contention)
    reexec_tuned(sys.argv, {"OMP_WAIT_POLICY": "PASSIVE"})


def data_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_DATA_DIR", HERE.parents[1] / "shared" / "data"))


def load_isbi():
    """raw (30, 512, 512) uint8 and dense labels (1 membrane, 2 interior) uint8."""
    import tifffile

    d = data_dir() / "isbi2012"
    raw = tifffile.imread(d / "train-volume.tif")
    gt = tifffile.imread(d / "train-labels.tif")
    dense = np.where(gt > 0, INTERIOR, MEMBRANE).astype(np.uint8)
    return raw, dense


def training_labels(dense: np.ndarray, fraction: float | None, seed: int = 0):
    """Labels for the training sections (0-19) and zeros on the test sections.

    ``fraction`` None means dense labels; else simulated scribbles over about ``fraction`` of the training
    pixels (``workbench.annotations.simulate_scribbles``). Returns (labels uint8 (30, 512, 512), achieved
    fraction of the train pixels)."""
    from workbench.annotations import simulate_scribbles

    out = np.zeros_like(dense)
    if fraction is None:
        out[TRAIN] = dense[TRAIN]
        return out, 1.0
    cache = Path("/tmp/wb_sparse_cache")
    cache.mkdir(exist_ok=True)
    f = cache / f"scribbles_{fraction:g}_{seed}.npy"
    if f.exists():
        sc = np.load(f)
    else:
        sc, _ = simulate_scribbles(np.where(dense[TRAIN] == MEMBRANE, 0, 255), fraction, seed=seed)
        np.save(f, sc)
    out[TRAIN] = sc
    return out, float((sc > 0).mean())


# -- the instance pipeline and the metrics ------------------------------------------------------------------
def watershed_seeds(p: np.ndarray) -> tuple[np.ndarray, int]:
    """The protocol's watershed seeds of one slice's interior probability: connected components of
    gaussian(p, 1) > 0.9; returns (seed labels, number of seeds)."""
    from scipy import ndimage as ndi

    return ndi.label(ndi.gaussian_filter(p.astype(np.float32), 1.0) > 0.9)


def watershed_cells(p: np.ndarray) -> np.ndarray:
    """Seeded watershed of one slice's interior probability (seeds: :func:`watershed_seeds`; flood 1 - p)."""
    from skimage.segmentation import watershed

    return watershed(1.0 - p, markers=watershed_seeds(p)[0])


def cc_cells(p: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.label(p > 0.5)[0]


def truth_cells(dense2d: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.label(dense2d == INTERIOR)[0]


def _inst_scores(seg, truth):
    from skimage.metrics import adapted_rand_error, variation_of_information

    are = adapted_rand_error(truth, seg)[0]
    # VOI on the pixels the truth labels (membrane ignored, as for ARE)
    keep = truth > 0
    split, merge = variation_of_information(truth[keep], seg[keep])
    return are, split, merge


#: The label-free merge threshold of ``ws_merged_*``: a contact more likely interior than membrane on average.
MERGE_THRESHOLD = 0.5


def evaluate(p_interior: np.ndarray, dense: np.ndarray) -> dict:
    """Metrics of interior probabilities (Z, Y, X) against dense labels of the same slices (per-slice mean)."""
    from workbench.segmentation.watershed import merge_weak_boundaries

    rows = []
    for p, d in zip(p_interior, dense):
        t = truth_cells(d)
        pred_mem = p <= 0.5
        true_mem = d == MEMBRANE
        tp = np.count_nonzero(pred_mem & true_mem)
        fp = np.count_nonzero(pred_mem & ~true_mem)
        fn = np.count_nonzero(~pred_mem & true_mem)
        cells = watershed_cells(p)
        ws = _inst_scores(cells, t)
        cc = _inst_scores(cc_cells(p), t)
        wsm = _inst_scores(merge_weak_boundaries(cells, 1.0 - p, MERGE_THRESHOLD), t)
        rows.append([float((pred_mem != true_mem).mean()), 2 * tp / max(2 * tp + fp + fn, 1), *ws, *cc, *wsm])
    m = np.mean(rows, axis=0)
    keys = ["pixel_error", "f1_membrane", "ws_are", "ws_voi_split", "ws_voi_merge", "cc_are", "cc_voi_split",
            "cc_voi_merge", "ws_merged_are", "ws_merged_voi_split", "ws_merged_voi_merge"]
    return {k: round(float(v), 4) for k, v in zip(keys, m)}


def machine_load() -> float:
    return round(os.getloadavg()[0], 2)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
