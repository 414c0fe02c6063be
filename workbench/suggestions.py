"""Where a few strokes would help most: boxes ranked by the model's uncertainty, away from the labels.

How boxes are chosen: on each examined slice the uncertainty (:mod:`workbench.inference.uncertainty`) is
averaged over every box of side ``box`` (a sliding mean); a box centre close to labelled pixels of its slice
is discounted (factor ``1 - exp(-d / box)``, ``d`` the distance to the nearest label): the model already
has help there. Boxes are then taken greedily, best first; each pick removes the candidates whose boxes
would overlap it and scales the rest of its slice by ``same_slice_factor``, so the suggestions spread over
the volume instead of piling up on one hard slice.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from workbench.errors import WorkbenchError
from workbench.inference.uncertainty import DEFAULT_KIND, UncertaintyKind, slice_uncertainty
from workbench.models.predictor import Predictor, as_predictor
from workbench.progress import as_progress


@dataclass(frozen=True)
class Suggestion:
    """One place to scribble next: the box centre (z, y, x), the box ``[z0, y0, x0, z1, y1, x1]``
    (half-open) and its score (higher: more help expected)."""

    z: int
    y: int
    x: int
    box: tuple[int, int, int, int, int, int]
    score: float

    def to_json(self) -> dict:
        """``{"z", "y", "x", "box", "score"}`` with plain ints and a float."""
        return {"z": self.z, "y": self.y, "x": self.x, "box": list(self.box), "score": round(self.score, 6)}


@dataclass(frozen=True)
class SuggestOptions:
    """What :func:`suggest` looks for.

    Attributes:
        n: how many suggestions.
        box: side of a suggested box in pixels (None: a sixteenth of the smaller slice side, 24 to 96;
            smaller boxes hold the errors more tightly: ``benchmarks/bench_suggest.py``).
        slices: at most this many slices are examined, evenly spaced (the cost is one prediction per slice).
        kind: the uncertainty measure (``entropy`` or ``disagreement``).
        same_slice_factor: each pick on a slice multiplies that slice's remaining scores by this (0-1].
    """

    n: int = 10
    box: int | None = None
    slices: int = 32
    kind: UncertaintyKind = DEFAULT_KIND
    same_slice_factor: float = 0.6

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", UncertaintyKind.parse(self.kind))
        if int(self.n) < 1:
            raise WorkbenchError(f"the number of suggestions must be at least 1, got {self.n}")
        if self.box is not None and int(self.box) < 4:
            raise WorkbenchError(f"a suggestion box must be at least 4 pixels wide, got {self.box}")
        if int(self.slices) < 1:
            raise WorkbenchError(f"at least one slice must be examined, got {self.slices}")
        if not 0 < float(self.same_slice_factor) <= 1:
            raise WorkbenchError(f"same_slice_factor must be in (0, 1], got {self.same_slice_factor}")


def box_side(shape_yx: tuple[int, int], box: int | None = None) -> int:
    """The box side used for a slice of ``shape_yx`` (``box`` clipped to the slice, or the default)."""
    side = int(box) if box is not None else int(np.clip(min(shape_yx) // 16, 24, 96))
    return max(1, min(side, *shape_yx))


def examined_slices(n_slices: int, at_most: int) -> list[int]:
    """``at_most`` evenly spaced slice indices of ``range(n_slices)`` (all of them when there are fewer)."""
    if n_slices <= at_most:
        return list(range(n_slices))
    return sorted({int(round(v)) for v in np.linspace(0, n_slices - 1, at_most)})


def box_scores(uncertainty: np.ndarray, labels: np.ndarray | None, side: int) -> np.ndarray:
    """Score of the box centred at every pixel of one slice: mean uncertainty, discounted near labels.

    Centres whose box would leave the slice score ``-inf``.
    """
    unc = np.asarray(uncertainty, dtype=np.float32)
    score = ndi.uniform_filter(unc, size=side, mode="nearest")
    if labels is not None and np.any(labels):
        dist = ndi.distance_transform_edt(labels == 0)
        score *= (1.0 - np.exp(-dist / side)).astype(np.float32)
    lo, hi = side // 2, side - side // 2
    valid = np.full(score.shape, -np.inf, dtype=np.float32)
    valid[lo:score.shape[0] - hi + 1, lo:score.shape[1] - hi + 1] = 0.0
    return score + valid


def rank_boxes(scores: dict[int, np.ndarray], side: int, n: int, same_slice_factor: float = 0.6) -> list[Suggestion]:
    """Greedy picks over per-slice box-score maps (module docstring).

    Args:
        scores: slice index -> (y, x) map from :func:`box_scores` (modified in place).
        side: the box side.
        n: how many boxes at most.
        same_slice_factor: scale of a slice's remaining scores after each pick on it.

    Returns:
        suggestions ordered by decreasing score (fewer than ``n`` when the slices run out of room).
    """
    best = {z: float(m.max()) for z, m in scores.items()}
    picks: list[Suggestion] = []
    lo = side // 2
    while len(picks) < n and best:
        z = max(best, key=best.get)
        value = best[z]
        if not np.isfinite(value):
            break
        m = scores[z]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        y0, x0 = int(y) - lo, int(x) - lo
        picks.append(Suggestion(int(z), int(y), int(x), (int(z), y0, x0, int(z) + 1, y0 + side, x0 + side), value))
        m[max(0, y - side + 1):y + side, max(0, x - side + 1):x + side] = -np.inf  # no overlapping box
        m *= same_slice_factor
        best[z] = float(m.max())
    return sorted(picks, key=lambda s: -s.score)


def _check_labels(predictor: Predictor, labels, shape) -> None:
    if labels is None:
        return
    if tuple(labels.shape) != tuple(shape):
        raise WorkbenchError(f"labels of shape {tuple(labels.shape)} do not match the raw volume {tuple(shape)}")
    if predictor.target in (None, "semantic") and predictor.activation != "sigmoid":
        n_classes = int(predictor.out_channels)
        top = max(int(np.max(np.asarray(labels[z]))) for z in examined_slices(int(shape[0]), 64))
        if top > n_classes:
            raise WorkbenchError(
                f"the labels use class {top} but the model predicts {n_classes} classes: train on these labels "
                "first, or give the labels the model was trained on")


def suggest(predictor: Predictor, raw, labels=None, options: SuggestOptions | None = None,
            progress=None) -> list[Suggestion]:
    """Ranked places where new strokes would help the model most.

    Args:
        predictor: a trained model (:func:`workbench.training.load_run`).
        raw: the (z, y, x) volume or array.
        labels: the current labels (same shape, 0 = unlabelled) or None.
        options: :class:`SuggestOptions`.
        progress: a tqdm-like bar or callback (one step per examined slice).

    Returns:
        :class:`Suggestion` list, best first.

    Raises:
        WorkbenchError: an empty volume, labels of another shape, or classes the model does not predict.
    """
    options = options or SuggestOptions()
    predictor = as_predictor(predictor)
    shape = tuple(int(s) for s in raw.shape)
    if len(shape) != 3 or min(shape) == 0:
        raise WorkbenchError(f"nothing to suggest in an empty volume of shape {shape}")
    _check_labels(predictor, labels, shape)
    side = box_side(shape[1:], options.box)
    zs = examined_slices(shape[0], int(options.slices))
    bar = as_progress(progress, total=len(zs))
    scores: dict[int, np.ndarray] = {}
    constant = True
    for z in zs:
        plane = np.asarray(raw[z])
        constant = constant and bool(plane.min() == plane.max())
        _, unc = slice_uncertainty(predictor, raw, z, options.kind)
        lab = None if labels is None else np.asarray(labels[z])
        scores[z] = box_scores(unc, lab, side)
        bar.advance(1)
    if constant:
        raise WorkbenchError("the raw volume is empty (every examined voxel has the same value): nothing to suggest")
    return rank_boxes(scores, side, int(options.n), float(options.same_slice_factor))


def write_suggestions(suggestions: Iterable[Suggestion], path: str | Path, **info) -> Path:
    """Write the suggestions as a JSON list ordered by score (written under a temporary name, then renamed).

    Args:
        suggestions: from :func:`suggest`.
        path: the ``.json`` file.
        info: what produced them (model, options), written beside as ``<stem>.info.json`` so the main
            file stays the plain documented list.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from workbench.atomic import atomic_write

    atomic_write(path, json.dumps([s.to_json() for s in suggestions], indent=1))
    if info:
        atomic_write(path.with_name(path.stem + ".info.json"), json.dumps(info, indent=1, default=str))
    return path


def _parse_suggestion(i: int, item) -> Suggestion:
    """Entry ``i`` (from 1) of a suggestions file; raises ValueError naming what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"entry {i} is not an object")
    missing = [k for k in ("z", "y", "x", "box", "score") if k not in item]
    if missing:
        raise ValueError(f"entry {i} has no {', '.join(repr(k) for k in missing)}")
    box = item["box"]
    if not isinstance(box, (list, tuple)) or len(box) != 6:
        raise ValueError(f"entry {i}: box must be [z0, y0, x0, z1, y1, x1]")
    try:
        box = tuple(int(v) for v in box)
        sug = Suggestion(int(item["z"]), int(item["y"]), int(item["x"]), box, float(item["score"]))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"entry {i}: z, y, x, box and score must be numbers") from None
    if any(a >= b for a, b in zip(box[:3], box[3:])) or min(box) < 0:
        raise ValueError(f"entry {i}: box {list(box)} is empty or negative")
    return sug


def read_suggestions(path: str | Path, shape: tuple[int, ...] | None = None) -> list[Suggestion]:
    """The suggestions of a file written by :func:`write_suggestions`.

    Args:
        shape: when given, the (z, y, x) volume every box must lie inside.

    Raises:
        WorkbenchError: no such file, not JSON, not a list of ``{"z", "y", "x", "box", "score"}``, or a box
            outside ``shape`` (one line naming the file and the entry).
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except FileNotFoundError:
        raise WorkbenchError("no such suggestions file", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise WorkbenchError(f"cannot read the suggestions file ({type(err).__name__})", path) from None
    except ValueError as err:
        raise WorkbenchError(f"not a suggestions file: not JSON ({err})", path) from None
    if not isinstance(items, list):
        raise WorkbenchError('not a suggestions file: expected a JSON list of {"z", "y", "x", "box", "score"}', path)
    try:
        found = [_parse_suggestion(i, d) for i, d in enumerate(items, start=1)]
    except ValueError as err:
        raise WorkbenchError(f"not a suggestions file: {err}", path) from None
    if shape is not None:
        for i, sug in enumerate(found, start=1):
            if any(b > int(s) for b, s in zip(sug.box[3:], shape)):
                raise WorkbenchError(f"suggestion {i} (box {list(sug.box)}) lies outside the volume of shape "
                                     f"{tuple(int(s) for s in shape)}: made for another volume?", path)
    return found


def options_dict(options: SuggestOptions) -> dict:
    """``options`` as plain JSON values."""
    return {k: (str(v) if isinstance(v, UncertaintyKind) else v) for k, v in dataclasses.asdict(options).items()}


def error_enrichment(suggestions: Iterable[Suggestion], errors: np.ndarray, slices: Iterable[int] | None = None) -> dict:
    """How much more often the model is wrong inside the suggested boxes than on average.

    Args:
        suggestions: boxes (``box`` in voxel coordinates of ``errors``).
        errors: bool (z, y, x), True where the prediction is wrong.
        slices: the slices the average is taken over (default: every slice).

    Returns:
        ``{"inside": error rate inside the boxes, "average": over the slices, "enrichment": their ratio,
        "boxes": how many}``.
    """
    errors = np.asarray(errors, dtype=bool)
    zs = list(range(errors.shape[0])) if slices is None else sorted(set(slices))
    inside = covered = 0
    boxes = 0
    for s in suggestions:
        z0, y0, x0, z1, y1, x1 = s.box
        part = errors[z0:z1, y0:y1, x0:x1]
        inside += int(part.sum())
        covered += part.size
        boxes += 1
    average = float(errors[zs].mean()) if zs else 0.0
    rate = inside / covered if covered else 0.0
    return {"inside": rate, "average": average, "enrichment": rate / average if average > 0 else float("inf"),
            "boxes": boxes}
