"""Simulated scribbles: sparse labels drawn from dense ground truth, as an annotator would draw them.

Strokes follow the skeletons of the membranes and of the eroded cell interiors (so they stay well inside
their class), drawn with a round brush (3 pixels by default), in pieces of bounded length picked at random
until the target fraction of pixels is labelled. Classes: 1 = membrane, 2 = interior, 0 = unlabelled.
Deterministic from the seed.

    from scribbles import simulate_scribbles            # with benchmarks/ on sys.path
    sparse, achieved = simulate_scribbles(dense, 0.01, seed=0)

    python benchmarks/scribbles.py --fraction 0.01 --png /tmp/scribbles.png     # ISBI 2012 example
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

MEMBRANE, INTERIOR = 1, 2
#: The fractions the benchmarks use (0.25 %, 0.5 %, 1 %, 5 % of the pixels).
FRACTIONS = (0.0025, 0.005, 0.01, 0.05)
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _brush_offsets(width: float) -> np.ndarray:
    """(K, 2) pixel offsets of a round brush: pixel centres within width / 2 (3 -> a 3 x 3 square)."""
    r = width / 2.0
    k = int(np.floor(r))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    keep = dy**2 + dx**2 <= r * r + 1e-9
    return np.stack([dy[keep], dx[keep]], axis=1)


def _class_skeletons(class_mask2d: np.ndarray, erosion: int) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.morphology import disk, skeletonize

    m = class_mask2d
    if erosion > 0:
        m = ndi.binary_erosion(m, structure=disk(erosion), border_value=0)
    return skeletonize(m)


def _grow_piece(skel: np.ndarray, start, length: int, taken: np.ndarray) -> list[tuple[int, int]]:
    """A stroke along the skeleton through ``start``: walks both ways, going as straight as the skeleton
    allows at branch points, until ``length`` pixels or a dead end (a line, as a person would draw)."""
    h, w = skel.shape
    seen = {start}
    halves: list[list[tuple[int, int]]] = []
    for _ in range(2):
        half: list[tuple[int, int]] = []
        cur, direction = start, None
        while len(seen) < length:
            best, best_score = None, -np.inf
            for dy, dx in _NEIGHBOURS:
                ny, nx = cur[0] + dy, cur[1] + dx
                if 0 <= ny < h and 0 <= nx < w and skel[ny, nx] and not taken[ny, nx] and (ny, nx) not in seen:
                    # keep the heading; 4-neighbours before diagonals when there is no heading yet
                    score = (dy * direction[0] + dx * direction[1]) if direction else -abs(dy * dx)
                    if score > best_score:
                        best, best_score = (ny, nx), score
            if best is None:
                break
            direction = (best[0] - cur[0], best[1] - cur[1])
            seen.add(best)
            half.append(best)
            cur = best
        halves.append(half)
    return halves[1][::-1] + [start] + halves[0]


def simulate_scribbles(dense, fraction: float, seed: int = 0, membrane_value=0, width: float = 3,
                       piece_length=(15, 60), membrane_share: float = 0.5, erosion: int = 3,
                       slices=None) -> tuple[np.ndarray, dict[int, float]]:
    """Sparse scribble labels covering about ``fraction`` of the pixels of ``dense``.

    Args:
        dense: dense labels (z, y, x) or (y, x); pixels equal to ``membrane_value`` are membrane, every
            other value interior (ISBI 2012: 0 membrane, 255 interior).
        fraction: target labelled fraction of all pixels (e.g. 0.01 for 1 %).
        seed: random seed (same seed, same scribbles).
        width: brush diameter in pixels.
        piece_length: (min, max) skeleton pixels per stroke.
        membrane_share: part of the target given to membrane strokes (the rest to interior strokes).
        erosion: interiors are eroded by a disk of this radius before skeletonising (strokes stay inside).
        slices: z slices to draw on (default all).

    Returns:
        ``(labels, achieved)``: uint8 labels of ``dense``'s shape (0 unlabelled, 1 membrane, 2 interior),
        and the achieved fraction of all pixels per class ``{1: f1, 2: f2}``.
    """
    dense = np.asarray(dense)
    squeeze = dense.ndim == 2
    if squeeze:
        dense = dense[None]
    if dense.ndim != 3:
        raise ValueError(f"dense labels must be 2D or 3D, got shape {dense.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    zs = list(range(dense.shape[0])) if slices is None else [int(z) for z in slices]
    membrane = dense == membrane_value
    out = np.zeros(dense.shape, dtype=np.uint8)
    offsets = _brush_offsets(width)
    total = dense.size
    h, w = dense.shape[1:]
    achieved: dict[int, float] = {}

    for cls, class_mask, share, ero in ((MEMBRANE, membrane, membrane_share, 0),
                                        (INTERIOR, ~membrane, 1.0 - membrane_share, erosion)):
        target = int(round(fraction * share * total))
        skels = {z: _class_skeletons(class_mask[z], ero) for z in zs}
        cand = np.concatenate([np.column_stack([np.full(int(s.sum()), z), *np.nonzero(s)])
                               for z, s in skels.items()]) if zs else np.zeros((0, 3), int)
        cand = cand[rng.permutation(len(cand))]
        taken = {z: np.zeros((h, w), dtype=bool) for z in zs}
        labelled = 0
        for z, y, x in cand:
            if labelled >= target:
                break
            if taken[z][y, x]:
                continue
            length = int(rng.integers(piece_length[0], piece_length[1] + 1))
            # the last stroke is shortened to what is still missing (about ``width`` pixels per step)
            length = max(1, min(length, int(np.ceil((target - labelled) / max(width, 1)))))
            piece = np.array(_grow_piece(skels[z], (int(y), int(x)), length, taken[z]))
            taken[z][piece[:, 0], piece[:, 1]] = True
            pts = (piece[:, None, :] + offsets[None]).reshape(-1, 2)
            pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)]
            sl_out, sl_cls = out[z], class_mask[z]
            ok = sl_cls[pts[:, 0], pts[:, 1]] & (sl_out[pts[:, 0], pts[:, 1]] == 0)
            pts = np.unique(pts[ok], axis=0)
            sl_out[pts[:, 0], pts[:, 1]] = cls
            labelled += len(pts)
        achieved[cls] = labelled / total
    return (out[0] if squeeze else out), achieved


def save_overlay_png(raw2d: np.ndarray, labels2d: np.ndarray, path) -> Path:
    """Save a slice in grey with membrane scribbles red and interior scribbles green."""
    from PIL import Image

    raw2d = np.asarray(raw2d, dtype=np.float32)
    lo, hi = np.percentile(raw2d, (1, 99))
    grey = np.clip((raw2d - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[labels2d == MEMBRANE] = (230, 25, 75)
    rgb[labels2d == INTERIOR] = (60, 180, 75)
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
