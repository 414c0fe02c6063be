"""Simulated scribbles: sparse labels drawn from dense ground truth, as an annotator would draw them.

Strokes follow the skeletons of the membranes and of the eroded cell interiors (so they stay well inside
their class), drawn with a round brush (3 pixels by default), in pieces of bounded length picked at random
until the target fraction of pixels is labelled. Classes: 1 = membrane, 2 = interior, 0 = unlabelled.
Deterministic from the seed. Used by the sparse-label benchmarks, the tutorials and the README tour.

    from workbench.annotations import simulate_scribbles
    sparse, achieved = simulate_scribbles(dense, 0.01, seed=0)     # ISBI 2012 labels: 0 membrane, 255 cells
    sparse, achieved = simulate_scribbles(project.truth.read(), 0.01, membrane_value=1)   # the sample's truth
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MEMBRANE, INTERIOR = 1, 2
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


@dataclass(frozen=True)
class ScribbleStyle:
    """How the simulated annotator draws.

    Attributes:
        width: brush diameter in pixels.
        piece_length: (min, max) skeleton pixels per stroke.
        membrane_share: part of the target given to membrane strokes (the rest to interior strokes).
        erosion: interiors are eroded by a disk of this radius before skeletonising (strokes stay inside).
    """

    width: float = 3
    piece_length: tuple[int, int] = (15, 60)
    membrane_share: float = 0.5
    erosion: int = 3


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


def _scribble_class(out: np.ndarray, cls: int, class_mask: np.ndarray, target: int, zs: list[int], erosion: int,
                    style: ScribbleStyle, rng: np.random.Generator) -> int:
    """Draw strokes of class ``cls`` into ``out`` until ``target`` pixels are labelled; returns how many are."""
    h, w = out.shape[1:]
    offsets = _brush_offsets(style.width)
    skels = {z: _class_skeletons(class_mask[z], erosion) for z in zs}
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
        length = int(rng.integers(style.piece_length[0], style.piece_length[1] + 1))
        # the last stroke is shortened to what is still missing (about ``width`` pixels per step)
        length = max(1, min(length, int(np.ceil((target - labelled) / max(style.width, 1)))))
        piece = np.array(_grow_piece(skels[z], (int(y), int(x)), length, taken[z]))
        taken[z][piece[:, 0], piece[:, 1]] = True
        pts = (piece[:, None, :] + offsets[None]).reshape(-1, 2)
        pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)]
        sl_out, sl_cls = out[z], class_mask[z]
        ok = sl_cls[pts[:, 0], pts[:, 1]] & (sl_out[pts[:, 0], pts[:, 1]] == 0)
        pts = np.unique(pts[ok], axis=0)
        sl_out[pts[:, 0], pts[:, 1]] = cls
        labelled += len(pts)
    return labelled


def simulate_scribbles(dense, fraction: float, seed: int = 0, membrane_value: int = 0,
                       slices: Iterable[int] | None = None,
                       style: ScribbleStyle | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """Sparse scribble labels covering about ``fraction`` of the pixels of ``dense``.

    Args:
        dense: dense labels (z, y, x) or (y, x); pixels equal to ``membrane_value`` are membrane, every
            other value interior (ISBI 2012: 0 membrane, 255 interior; the built-in sample's truth: 1 membrane).
        fraction: target labelled fraction of all pixels (e.g. 0.01 for 1 %).
        seed: random seed (same seed, same scribbles).
        membrane_value: the membrane's value in ``dense``.
        slices: z slices to draw on (default all).
        style: brush width, stroke lengths, membrane share and interior erosion (:class:`ScribbleStyle`).

    Returns:
        ``(labels, achieved)``: uint8 labels of ``dense``'s shape (0 unlabelled, 1 membrane, 2 interior),
        and the achieved fraction of all pixels per class ``{1: f1, 2: f2}``.
    """
    style = style or ScribbleStyle()
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
    achieved: dict[int, float] = {}
    for cls, class_mask, share, ero in ((MEMBRANE, membrane, style.membrane_share, 0),
                                        (INTERIOR, ~membrane, 1.0 - style.membrane_share, style.erosion)):
        target = int(round(fraction * share * dense.size))
        achieved[cls] = _scribble_class(out, cls, class_mask, target, zs, ero, style, rng) / dense.size
    return (out[0] if squeeze else out), achieved


__all__ = ["INTERIOR", "MEMBRANE", "ScribbleStyle", "simulate_scribbles"]
