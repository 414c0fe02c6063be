"""Per-voxel uncertainty of a prediction: predictive entropy, or the disagreement of test-time-augmented views.

Two measures, both scaled to [0, 1]:

- ``entropy``: the entropy of the predicted class distribution divided by its maximum (log of the number
  of classes; for sigmoid outputs the mean binary entropy of the channels over log 2). One forward pass. It
  is high wherever the model hesitates, including where the answer is truly ambiguous (a blurred
  membrane), so it marks both what the model has not learnt and what nobody could.
- ``disagreement``: the mutual information between the prediction and the augmentation,
  ``H(mean of the views) - mean of H(view)`` (the "BALD" decomposition, with the 8 yx rotations/flips as
  the ensemble), over the same maximum. It needs the views (8 forward passes) and is high only where the
  views *disagree*: where the model's answer depends on how the image is turned, a sign that the local
  pattern was not learnt. It is 0 where every view is equally unsure.

Which one guides the next scribbles better was measured on ISBI 2012 (``benchmarks/bench_suggest.py``):
see :data:`DEFAULT_KIND`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.choices import Choice
from workbench.inference.slices import slice_with_context
from workbench.inference.tiling import TTA_TRANSFORMS, _view_term, combine_views, predict_region, tta_views
from workbench.models.predictor import Predictor, as_predictor

#: Probabilities are clipped to [EPS, 1 - EPS] inside the logarithms.
EPS = 1e-6


class UncertaintyKind(Choice, what="uncertainty"):
    """How uncertainty is measured (module docstring)."""

    ENTROPY = "entropy"
    DISAGREEMENT = "disagreement"


#: What ``workbench suggest`` and the app use unless told otherwise: one forward pass, and on ISBI 2012 the
#: better guide (errors inside the top 10 boxes of 16-32 pixels at 2.5-3.2x the average against 1.6-2x for the
#: views' disagreement, ``benchmarks/results/suggest.json``), at an eighth of the cost.
DEFAULT_KIND = UncertaintyKind.ENTROPY


def _entropy_terms(probs: np.ndarray, activation: str | None) -> tuple[np.ndarray, float]:
    """Unnormalised entropy (z, y, x) of (channels, z, y, x) probabilities, and its maximum."""
    p = np.clip(probs.astype(np.float32, copy=False), EPS, 1.0 - EPS)
    if activation == "sigmoid" or probs.shape[0] == 1:
        h = -(p * np.log(p) + (1 - p) * np.log1p(-p))
        return h.mean(axis=0), float(np.log(2.0))
    h = -(p * np.log(p)).sum(axis=0)
    return h, float(np.log(probs.shape[0]))


def entropy(probs: np.ndarray, activation: str | None = "softmax") -> np.ndarray:
    """Normalised predictive entropy in [0, 1].

    Args:
        probs: float (channels, z, y, x) (or (channels, y, x)) probabilities.
        activation: ``"softmax"`` (channels are classes summing to one; also a forest's output) or
            ``"sigmoid"`` (independent channels: boundaries, affinities).

    Returns:
        float32 of ``probs.shape[1:]``.
    """
    h, hmax = _entropy_terms(probs, activation)
    return np.clip(h / hmax, 0.0, 1.0).astype(np.float32)


def disagreement(views: Sequence[np.ndarray], activation: str | None = "softmax") -> np.ndarray:
    """Normalised mutual information between the prediction and the view, in [0, 1].

    Args:
        views: two or more float (channels, ...) probability arrays of one region (e.g. the TTA views).
        activation: as for :func:`entropy`.

    Returns:
        float32 of ``views[0].shape[1:]``.

    Raises:
        ValueError: fewer than two views, or views of different shapes.
    """
    if len(views) < 2:
        raise ValueError("disagreement needs at least two views")
    if len({v.shape for v in views}) != 1:
        raise ValueError(f"views of different shapes: {sorted({v.shape for v in views})}")
    mean = np.mean(np.stack(views), axis=0)
    h_mean, hmax = _entropy_terms(mean, activation)
    h_views = np.mean([_entropy_terms(v, activation)[0] for v in views], axis=0)
    return np.clip((h_mean - h_views) / hmax, 0.0, 1.0).astype(np.float32)


def tta_with_disagreement(predictor: Predictor, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 TTA views of one region combined as ``predict_region(..., tta=True)`` does, and their disagreement.

    The views are not kept: running sums give both from one pass (memory: about three outputs, not eight).

    Args:
        predictor: a :class:`~workbench.models.predictor.Predictor`.
        block: raw (z, y, x).

    Returns:
        (float32 (channels, z, y, x) combined probabilities, float32 (z, y, x) :func:`disagreement`).
    """
    predictor = as_predictor(predictor)
    activation = predictor.activation
    measure = activation or "softmax"
    acc = mean = h_views = None
    for y in tta_views(predictor, block):
        term, h = _view_term(y, activation), _entropy_terms(y, measure)[0]
        if acc is None:
            acc, mean, h_views = term.astype(np.float32), y.astype(np.float32), h
        else:
            acc, mean, h_views = acc + term, mean + y, h_views + h
    n = len(TTA_TRANSFORMS)
    h_mean, hmax = _entropy_terms(mean / n, measure)
    unc = np.clip((h_mean - h_views / n) / hmax, 0.0, 1.0).astype(np.float32)
    return combine_views(acc, n, activation), unc


def predict_with_uncertainty(predictor: Predictor, block: np.ndarray,
                             kind: str | UncertaintyKind = DEFAULT_KIND) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and uncertainty of one in-memory region.

    Args:
        predictor: a :class:`~workbench.models.predictor.Predictor`.
        block: raw (z, y, x).
        kind: ``entropy`` (one pass) or ``disagreement`` (the 8 TTA views; the probabilities are then their mean).

    Returns:
        (float32 (channels, z, y, x) probabilities, float32 (z, y, x) uncertainty in [0, 1]).
    """
    predictor = as_predictor(predictor)
    kind = UncertaintyKind.parse(kind)
    activation = predictor.activation or "softmax"
    if kind == UncertaintyKind.ENTROPY:
        probs = predict_region(predictor, block, predictor.tile_shape)
        return probs, entropy(probs, activation)
    views = list(tta_views(predictor, block, TTA_TRANSFORMS))
    return np.mean(np.stack(views), axis=0).astype(np.float32), disagreement(views, activation)


def slice_uncertainty(predictor: Predictor, raw, z: int,
                      kind: str | UncertaintyKind = DEFAULT_KIND) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (channels, y, x) and uncertainty (y, x) of slice ``z``, read with the model's z context.

    Raises:
        IndexError: ``z`` outside the volume.
    """
    block, at = slice_with_context(predictor, raw, z)
    probs, unc = predict_with_uncertainty(predictor, block, kind)
    return probs[:, at], unc[at]
