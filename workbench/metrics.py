"""Evaluation measures of the field, computed from one contingency table read block by block.

Everything here starts from the contingency table ``n[i, j]`` = number of voxels with truth label ``i``
and predicted label ``j`` (voxels whose truth label is ignored are not counted), built block by block so
volumes larger than memory are fine. It is the same table as
``skimage.metrics.contingency_table``, and the Rand and VOI measures are scikit-image's own functions
applied to it, so their values are identical.

Definitions (``a_i = sum_j n_ij`` truth sizes, ``b_j = sum_i n_ij`` predicted sizes, ``N = sum n_ij``):

- pixel error: ``1 - sum_k n_kk / N`` (fraction of voxels whose class differs; ISBI 2012).
- per class k: IoU (Jaccard) ``n_kk / (a_k + b_k - n_kk)``, Dice = pixel F1 ``2 n_kk / (a_k + b_k)``.
- adapted Rand error (SNEMI3D; ``skimage.metrics.adapted_rand_error``): ``1 - F`` of the Rand split
  and merge scores, ``F = 2 sum n_ij² / (sum a_i² + sum b_j²)`` (pair counts; each sum minus N).
  ``are_split = 1 - sum n_ij² / sum a_i²`` grows when true objects are cut,
  ``are_merge = 1 - sum n_ij² / sum b_j²`` when objects are fused. Predicted 0 is one segment like any
  other (as in scikit-image): score filled segmentations (e.g. a watershed), not thresholded masks.
- variation of information (CREMI; ``skimage.metrics.variation_of_information``, bits):
  ``voi_split = H(pred | truth)``, ``voi_merge = H(truth | pred)``, ``voi = split + merge``.
- CREMI score (the CREMI challenge's ranking; python-elf's ``cremi_score``): ``cremi = sqrt(voi * are_cremi)``,
  where ``are_cremi`` is the adapted Rand error with the sums of squares taken over all voxel pairs, a
  voxel with itself included (``F = 2 sum n_ij² / (sum a_i² + sum b_j²)``, as python-elf and CREMI's
  evaluation compute it; ``are`` above counts pairs of distinct voxels, as scikit-image does, and is
  slightly larger when objects are small). Its parts: ``rand_precision = sum n_ij² / sum b_j²`` (1: no
  predicted object mixes true ones; low: merges) and ``rand_recall = sum n_ij² / sum a_i²`` (low: splits).
- instance average precision at IoU threshold t (DSB 2018 / StarDist convention, not COCO's area under a
  precision-recall curve): truth and predicted objects (ids != 0) are matched when their IoU
  > t (t ≥ 0.5 makes matches unique); ``AP_t = TP / (TP + FP + FN)``; precision, recall and F1 at t are
  reported too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from workbench.errors import WorkbenchError

#: Label maps with at most this many distinct ids are scored as classes by ``kind="auto"``.
SEMANTIC_MAX_LABEL = 16


def _as_array_like(x):
    data = getattr(x, "data", None)
    if data is not None and hasattr(x, "voxel_size"):
        return data
    return x


def contingency(pred, truth, ignore_labels: Iterable[int] = (), block_shape: Sequence[int] | None = None):
    """The contingency table (``scipy.sparse.csr_array``, rows = truth ids, columns = predicted ids).

    Args:
        pred, truth: label arrays or :class:`~workbench.io.volume.Volume` of equal shape (non-negative ints).
        ignore_labels: truth labels whose voxels are not counted.
        block_shape: read this many voxels at a time (default: whole volume up to 64 M voxels,
            else slabs of z).

    Raises:
        WorkbenchError: shapes differ or labels are negative / not integers.
    """
    from scipy import sparse

    from workbench.geometry import Box

    p, t = _as_array_like(pred), _as_array_like(truth)
    if tuple(p.shape) != tuple(t.shape):
        raise WorkbenchError(f"prediction shape {tuple(p.shape)} differs from truth shape {tuple(t.shape)}")
    shape = tuple(int(s) for s in t.shape)
    if block_shape is None:
        plane = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        block_shape = (max(1, (64 * 1024**2) // max(plane, 1)), *shape[1:])
    ignore = np.asarray(list(ignore_labels), dtype=np.int64)
    rows, cols, counts = [], [], []
    n_rows = n_cols = 1
    for _, box in Box.from_shape(shape).blocks(block_shape):
        tb = np.asarray(t[box.slices]).ravel()
        pb = np.asarray(p[box.slices]).ravel()
        for name, arr in (("truth", tb), ("prediction", pb)):
            if arr.dtype.kind not in "iub":
                raise WorkbenchError(f"{name} must hold integer labels, got {arr.dtype}")
            if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
                raise WorkbenchError(f"{name} has negative labels")
        tb = tb.astype(np.int64)
        pb = pb.astype(np.int64)
        if ignore.size:
            keep = ~np.isin(tb, ignore)
            tb, pb = tb[keep], pb[keep]
        if tb.size == 0:
            continue
        n_cols = max(n_cols, int(pb.max()) + 1)
        n_rows = max(n_rows, int(tb.max()) + 1)
        key = tb * (int(pb.max()) + 1) + pb
        uniq, cnt = np.unique(key, return_counts=True)
        width = int(pb.max()) + 1
        rows.append(uniq // width)
        cols.append(uniq % width)
        counts.append(cnt)
    if not rows:
        return sparse.csr_array((1, 1), dtype=float)
    table = sparse.coo_array(
        (np.concatenate(counts).astype(float), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n_cols),
    )
    return table.tocsr()


def pixel_error(table) -> float:
    """``1 - matching voxels / counted voxels`` of a contingency table."""
    total = float(table.sum())
    if total == 0:
        return 0.0
    k = min(table.shape)
    return 1.0 - float(table[np.arange(k), np.arange(k)].sum()) / total


def class_scores(table, classes: Iterable[int] | None = None) -> dict[int, dict[str, float]]:
    """Per class ``{"iou", "dice", "f1"}`` (dice == pixel f1); classes default to every id present (not 0)."""
    a = np.asarray(table.sum(axis=1)).ravel()
    b = np.asarray(table.sum(axis=0)).ravel()
    if classes is None:
        present = set(np.nonzero(a)[0].tolist()) | set(np.nonzero(b)[0].tolist())
        classes = sorted(c for c in present if c != 0)
    out = {}
    for c in classes:
        n = float(table[c, c]) if c < table.shape[0] and c < table.shape[1] else 0.0
        ac = float(a[c]) if c < len(a) else 0.0
        bc = float(b[c]) if c < len(b) else 0.0
        union = ac + bc - n
        dice = 2 * n / (ac + bc) if ac + bc > 0 else 1.0
        out[int(c)] = {"iou": n / union if union > 0 else 1.0, "dice": dice, "f1": dice}
    return out


def rand_scores(table) -> dict[str, float]:
    """Adapted Rand error and its split and merge parts (``skimage.metrics.adapted_rand_error``)."""
    from skimage.metrics import adapted_rand_error

    are, prec, rec = adapted_rand_error(table=table)
    # scikit-image normalises "precision" by the truth (row) pairs and "recall" by the predicted (column)
    # pairs: low "precision" means true objects were cut (splits), low "recall" means fusions (merges).
    return {"are": float(are), "are_split": float(1 - prec), "are_merge": float(1 - rec)}


def cremi_scores(table) -> dict[str, float]:
    """CREMI score ``sqrt(voi * are_cremi)`` and the adapted Rand error of python-elf's convention (self-pairs
    counted), with its precision (merges) and recall (splits) parts."""
    data = np.asarray(table.data, dtype=np.float64)
    a = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()
    b = np.asarray(table.sum(axis=0), dtype=np.float64).ravel()
    sum_ab, sum_a, sum_b = float(data @ data), float(a @ a), float(b @ b)
    if sum_ab == 0:
        return {"are_cremi": 0.0, "rand_precision": 1.0, "rand_recall": 1.0, "cremi": 0.0}
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    are = 1.0 - 2 * precision * recall / (precision + recall)
    voi = voi_scores(table)["voi"]
    return {"are_cremi": are, "rand_precision": precision, "rand_recall": recall,
            "cremi": float(np.sqrt(max(voi, 0.0) * are))}


def voi_scores(table) -> dict[str, float]:
    """Variation of information in bits: split ``H(pred|truth)``, merge ``H(truth|pred)``."""
    from skimage.metrics import variation_of_information

    total = table.sum()
    norm = table / total if total > 0 else table
    # scikit-image checks image shapes even when given a table: pass two tiny placeholders.
    dummy = np.zeros(1, np.int64)
    h_pred_given_truth, h_truth_given_pred = variation_of_information(dummy, dummy, table=norm)
    return {
        "voi": float(h_truth_given_pred + h_pred_given_truth),
        "voi_split": float(h_pred_given_truth),
        "voi_merge": float(h_truth_given_pred),
    }


def instance_scores(table, thresholds: Sequence[float] = (0.5, 0.75)) -> dict[str, float]:
    """Matching-based scores per IoU threshold: ``ap@t`` (TP/(TP+FP+FN)), ``precision@t``, ``recall@t``, ``f1@t``."""
    coo = table.tocoo()
    a = np.asarray(table.sum(axis=1)).ravel()
    b = np.asarray(table.sum(axis=0)).ravel()
    n_true = int(np.count_nonzero(a[1:]))
    n_pred = int(np.count_nonzero(b[1:]))
    sel = (coo.row > 0) & (coo.col > 0)
    i, j, n = coo.row[sel], coo.col[sel], coo.data[sel]
    iou = n / (a[i] + b[j] - n)
    out: dict[str, float] = {"n_true": float(n_true), "n_pred": float(n_pred)}
    for t in thresholds:
        if t < 0.5:
            raise ValueError("IoU thresholds below 0.5 need an assignment step; use t >= 0.5")
        tp = int(np.count_nonzero(iou > t))
        fp, fn = n_pred - tp, n_true - tp
        key = f"{t:g}"
        out[f"ap@{key}"] = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        out[f"precision@{key}"] = tp / n_pred if n_pred else 1.0
        out[f"recall@{key}"] = tp / n_true if n_true else 1.0
        out[f"f1@{key}"] = 2 * tp / (n_pred + n_true) if n_pred + n_true else 1.0
    return out


def evaluate(
    pred,
    truth,
    kind: str = "auto",
    ignore_label: int | Sequence[int] | None = None,
    thresholds: Sequence[float] = (0.5, 0.75),
) -> dict:
    """Score a predicted label map against the truth.

    Args:
        pred, truth: integer label arrays or Volumes of the same shape.
        kind: ``"semantic"`` (classes: pixel error, per-class IoU/Dice/F1, mean IoU), ``"instances"``
            (adapted Rand, VOI, CREMI score, AP@thresholds) or ``"auto"``: semantic when both have at most
            :data:`SEMANTIC_MAX_LABEL` as largest id, else instances. ``"all"`` reports both.
        ignore_label: truth label(s) not scored (e.g. ISBI membrane ``0`` for the Rand error).
        thresholds: IoU thresholds of the instance AP.

    Returns:
        A flat-ish, JSON-serialisable dict: ``{"kind", "voxels", ...measures...}``.
    """
    ignore = [] if ignore_label is None else (
        [int(ignore_label)] if np.isscalar(ignore_label) else [int(v) for v in ignore_label])
    table = contingency(pred, truth, ignore)
    if kind == "auto":
        kind = "semantic" if max(table.shape) - 1 <= SEMANTIC_MAX_LABEL else "instances"
    if kind not in ("semantic", "instances", "all"):
        raise WorkbenchError(f"kind must be auto, semantic, instances or all, got {kind!r}")
    result: dict = {"kind": kind, "voxels": int(table.sum()), "ignore_labels": ignore}
    if kind in ("semantic", "all"):
        per_class = class_scores(table)
        result["pixel_error"] = pixel_error(table)
        result["classes"] = {str(c): v for c, v in per_class.items()}
        if per_class:
            result["mean_iou"] = float(np.mean([v["iou"] for v in per_class.values()]))
            result["mean_dice"] = float(np.mean([v["dice"] for v in per_class.values()]))
    if kind in ("instances", "all"):
        result.update(rand_scores(table))
        result.update(voi_scores(table))
        result.update(cremi_scores(table))
        result.update(instance_scores(table, thresholds))
    return result


def evaluate_run(project, run_id: str) -> dict:
    """The scores of a project's run against the project's ground truth, as the app shows them.

    Returns:
        ``{}`` when the project has no truth or the run no finished prediction; else ``{"classes": ...}``
        (:func:`evaluate`, semantic: the most likely class against ``labels/truth``) and, when the run's
        segmentation and the true instances (``labels/instances``, the built-in sample) both exist,
        ``"instances"`` (:func:`evaluate`, instances; the truth's 0, membranes and outside, is not scored, as
        in ISBI 2012).
    """
    from workbench.inference import prediction_class_map
    from workbench.io import open_volume

    pred = project.prediction_path(run_id)
    truth = project.truth
    if truth is None or not pred.exists():
        return {}
    res = {"classes": evaluate(prediction_class_map(pred), truth, kind="semantic")}
    seg, inst = project.segmentation_path(run_id), project.data_path / "labels" / "instances"
    if seg.exists() and inst.exists():
        res["instances"] = evaluate(open_volume(str(seg)), open_volume(str(inst)), kind="instances", ignore_label=0)
    return res
