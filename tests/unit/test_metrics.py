"""Metrics: identical to scikit-image where it has the measure; split/merge directions; AP; classes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, contingency_table, variation_of_information

from workbench.errors import WorkbenchError
from workbench.metrics import contingency, evaluate, instance_scores


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ignore", [None, 0])
def test_rand_and_voi_identical_to_skimage(seed, ignore):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 30, size=(5, 24, 24))
    pred = rng.integers(0, 40, size=(5, 24, 24))
    pred[:, :12] = truth[:, :12]  # partly right
    ign = () if ignore is None else (ignore,)
    r = evaluate(pred, truth, kind="instances", ignore_label=ignore)
    are, prec, rec = adapted_rand_error(truth, pred, ignore_labels=ign)
    assert r["are"] == pytest.approx(are, abs=1e-12)
    assert r["are_split"] == pytest.approx(1 - prec, abs=1e-12)
    assert r["are_merge"] == pytest.approx(1 - rec, abs=1e-12)
    split, merge = variation_of_information(truth, pred, ignore_labels=ign)
    assert r["voi_split"] == pytest.approx(split, abs=1e-10)
    assert r["voi_merge"] == pytest.approx(merge, abs=1e-10)
    assert r["voi"] == pytest.approx(split + merge, abs=1e-10)


def test_contingency_blockwise_equals_skimage(rng):
    truth = rng.integers(0, 9, size=(9, 16, 16))
    pred = rng.integers(0, 7, size=(9, 16, 16))
    ours = contingency(pred, truth, [3], block_shape=(2, 5, 7)).toarray()
    ref = contingency_table(truth, pred, ignore_labels=[3]).toarray()
    np.testing.assert_array_equal(ours, ref)


def test_split_and_merge_directions():
    truth = np.zeros((2, 20, 20), np.uint8)
    truth[:, :10] = 1
    truth[:, 10:] = 2
    merged = np.ones_like(truth)
    r = evaluate(merged, truth, kind="instances")
    assert r["are_split"] == 0 and r["are_merge"] > 0.4
    assert r["voi_split"] == 0 and r["voi_merge"] == pytest.approx(1.0)
    split = truth.copy().astype(np.int64)
    split[:, :, 10:] += 10  # cut both objects in two
    r = evaluate(split, truth, kind="instances")
    assert r["are_merge"] == 0 and r["are_split"] > 0.4 and r["voi_merge"] == 0 and r["voi_split"] > 0


def test_average_precision_dsb_convention():
    truth = np.zeros((1, 30, 30), np.uint16)
    pred = np.zeros_like(truth)
    truth[0, 0:10, 0:10] = 1
    pred[0, 0:10, 0:9] = 7  # IoU 0.9
    truth[0, 15:25, 0:10] = 2
    pred[0, 15:25, 0:6] = 8  # IoU 0.6
    truth[0, 0:10, 15:25] = 3  # missed: FN
    pred[0, 20:28, 20:28] = 9  # spurious: FP
    r = evaluate(pred, truth, kind="instances")
    assert r["ap@0.5"] == pytest.approx(2 / 4)  # TP 2, FP 1, FN 1
    assert r["ap@0.75"] == pytest.approx(1 / 5)  # TP 1, FP 2, FN 2
    assert r["precision@0.5"] == pytest.approx(2 / 3) and r["recall@0.5"] == pytest.approx(2 / 3)
    assert r["f1@0.75"] == pytest.approx(2 * 1 / 6)
    assert evaluate(truth, truth, kind="instances")["ap@0.75"] == 1.0
    with pytest.raises(ValueError):
        instance_scores(contingency(pred, truth), thresholds=(0.3,))


def test_semantic_scores(rng):
    truth = rng.integers(0, 3, size=(4, 10, 10))
    pred = truth.copy()
    pred[0] = 0
    r = evaluate(pred, truth, kind="semantic")
    assert r["kind"] == "semantic"
    assert r["pixel_error"] == pytest.approx(np.mean(pred != truth))
    for c in (1, 2):
        tp = np.sum((pred == c) & (truth == c))
        fp = np.sum((pred == c) & (truth != c))
        fn = np.sum((pred != c) & (truth == c))
        assert r["classes"][str(c)]["iou"] == pytest.approx(tp / (tp + fp + fn))
        assert r["classes"][str(c)]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # an ignored label is not scored
    r2 = evaluate(pred, truth, kind="semantic", ignore_label=0)
    assert r2["voxels"] == int(np.sum(truth != 0))
    assert evaluate(truth, truth)["kind"] == "semantic"
    many = rng.integers(0, 100, size=(2, 10, 10))
    assert evaluate(many, many)["kind"] == "instances"


def test_bad_input():
    with pytest.raises(WorkbenchError, match="shape"):
        evaluate(np.zeros((1, 2, 2), int), np.zeros((1, 2, 3), int))
    with pytest.raises(WorkbenchError, match="integer"):
        evaluate(np.zeros((1, 2, 2), float), np.zeros((1, 2, 2), int))
    with pytest.raises(WorkbenchError, match="negative"):
        evaluate(-np.ones((1, 2, 2), int), np.zeros((1, 2, 2), int))
