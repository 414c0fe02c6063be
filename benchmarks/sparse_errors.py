"""Where a trained run's cell errors lie on ISBI 2012 sections 20-29 (the sparse benchmark's protocol).

For each run directory (written by ``workbench train`` or the Trainer, 2D semantic membrane/interior model):
- ``ws_are``: the protocol's watershed (seeds: components of gaussian(p, 1) > 0.9, flooding 1 - p);
- ``oracle_seeds``: the same flooding from one seed per true cell (the cell eroded by 3 pixels): what is left
  is due to the boundaries;
- ``splits_removed``: the model's seeds, those lying in one true cell joined;
- ``bridges_removed``: the model's seeds, those spanning several true cells cut along the truth;
- ``merged_0.5``: the watershed followed by ``merge_weak_boundaries`` at 0.5;
- ``edges``: watershed-cell contacts, how many join one true cell (false), the AUC of the mean membrane
  probability along a contact for telling false from true, and false / true contacts below 0.5, 0.6, 0.7.

    python benchmarks/sparse_errors.py RUN_DIR [RUN_DIR ...]      # one JSON line per run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sparse_pipeline as sp  # noqa: E402


def _are(truth, seg) -> float:
    from skimage.metrics import adapted_rand_error

    return float(adapted_rand_error(truth, seg)[0])


def decompose(p: np.ndarray, truth: np.ndarray) -> dict:
    """Error parts of one slice's interior probability ``p`` against true cells ``truth`` (0 = membrane)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from workbench.segmentation.watershed import merge_weak_boundaries

    seeds, n = sp.watershed_seeds(p)
    cells = watershed(1.0 - p, markers=seeds)
    oracle = np.zeros_like(truth)
    for c in range(1, int(truth.max()) + 1):
        oracle[ndi.binary_erosion(truth == c, iterations=3)] = c
    joined = np.arange(n + 1)
    cut = seeds.copy()
    nxt = n + 1
    for sid, sl in enumerate(ndi.find_objects(seeds), start=1):
        if sl is None:
            continue
        m = seeds[sl] == sid
        t = truth[sl][m]
        inside = np.bincount(t, minlength=int(truth.max()) + 1)
        inside[0] = 0
        if inside.max() > 0:
            joined[sid] = n + 1 + int(inside.argmax())
        for c in np.flatnonzero(inside)[1:]:  # a seed over several cells: cut along the truth
            region = cut[sl]
            region[m & (truth[sl] == c)] = nxt
            nxt += 1
    return {
        "ws_are": _are(truth, cells),
        "oracle_seeds": _are(truth, watershed(1.0 - p, markers=oracle)),
        "splits_removed": _are(truth, watershed(1.0 - p, markers=joined[seeds])),
        "bridges_removed": _are(truth, watershed(1.0 - p, markers=cut)),
        "merged_0.5": _are(truth, merge_weak_boundaries(cells, 1.0 - p, 0.5)),
    }


def edge_table(p: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(mean membrane probability, joins one true cell) of every contact between watershed cells."""
    from workbench.segmentation.graph import boundary_edge_affinities, region_graph

    cells = sp.watershed_cells(p)
    pairs, sums, counts = region_graph(cells, boundary_edge_affinities(1.0 - p))
    majority = np.zeros(int(cells.max()) + 1, np.int64)
    for c in range(1, int(cells.max()) + 1):
        t = np.bincount(truth[cells == c], minlength=int(truth.max()) + 1)
        t[0] = 0
        majority[c] = t.argmax() if t.max() > 0 else -c
    same = majority[pairs[:, 0]] == majority[pairs[:, 1]]
    return np.stack([1.0 - sums / counts, same], axis=1)


def analyse(run_dir: str) -> dict:
    from sklearn.metrics import roc_auc_score

    from workbench.training import load_run

    raw, dense = sp.load_isbi()
    p_all = load_run(run_dir, device="cpu").predict(raw[sp.TEST])[1]
    rows, edges = [], []
    for p, d in zip(p_all, dense[sp.TEST]):
        truth = sp.truth_cells(d)
        rows.append(decompose(p, truth))
        edges.append(edge_table(p, truth))
    e = np.concatenate(edges)
    false = e[:, 1] > 0
    out = {"run": str(run_dir), **{k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}}
    out["edges"] = {"contacts": len(e), "false": int(false.sum()),
                    "auc": round(float(roc_auc_score(false, -e[:, 0])), 3) if 0 < false.sum() < len(e) else None,
                    **{f"false_true_below_{t}": [int((false & (e[:, 0] < t)).sum()), int((~false & (e[:, 0] < t)).sum())]
                       for t in (0.5, 0.6, 0.7)}}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(json.dumps(analyse(run)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
