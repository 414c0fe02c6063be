"""``workbench evaluate``: JSON scores from label files and stored predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage.metrics import adapted_rand_error

from workbench.cli import main


@pytest.fixture
def labels(tmp_path, rng):
    truth = np.zeros((5, 30, 30), np.uint16)
    truth[:, :15] = 1
    truth[:, 15:] = 2
    truth[:, 14:16] = 0  # "membrane"
    pred = truth.copy()
    pred[:, 20:, :10] = 3  # a split
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    return tmp_path / "pred.tif", tmp_path / "truth.tif", pred, truth


def test_evaluate_json(labels, capsys):
    pred_p, truth_p, pred, truth = labels
    assert main(["evaluate", "--pred", str(pred_p), "--truth", str(truth_p), "--json", "--kind", "instances",
                 "--ignore-label", "0"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["are"] == pytest.approx(adapted_rand_error(truth, pred, ignore_labels=(0,))[0])
    assert scores["are_split"] > 0 and scores["are_merge"] == 0
    assert main(["evaluate", "--pred", str(pred_p), "--truth", str(truth_p)]) == 0
    text = capsys.readouterr().out
    assert "pixel_error" in text and "class 1: IoU" in text


def test_evaluate_prediction_store(labels, tmp_path, capsys):
    from workbench.inference import predict_volume

    _, truth_p, _, truth = labels

    class Exact:
        spatial_dims, out_channels, channel_names, halo = 3, 1, ["fg"], (0, 0, 0)

        def predict(self, block):
            return (block[None] == 1).astype(np.float32)

    predict_volume(Exact(), truth, tmp_path / "p.zarr")
    assert main(["evaluate", "--pred", str(tmp_path / "p.zarr"), "--truth", str(truth_p), "--json",
                 "--kind", "semantic"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["classes"]["1"]["iou"] == 1.0


def test_semantic_prediction_channels_map_to_class_ids(labels, tmp_path, capsys):
    """A semantic model's channel c is class c + 1, as in the sparse labels (0 = unlabelled)."""
    from workbench.inference import predict_volume

    _, truth_p, _, truth = labels
    truth_p2 = tmp_path / "truth12.tif"
    tifffile.imwrite(truth_p2, np.where(truth == 2, 2, 1).astype(np.uint8))

    class TwoClasses:
        spatial_dims, out_channels, channel_names, halo = 3, 2, ["membrane", "interior"], (0, 0, 0)
        target = "semantic"

        def predict(self, block):
            interior = (block == 2).astype(np.float32)
            return np.stack([1 - interior, interior])

    predict_volume(TwoClasses(), truth, tmp_path / "p2.zarr")
    assert main(["evaluate", "--pred", str(tmp_path / "p2.zarr"), "--truth", str(truth_p2), "--json",
                 "--kind", "semantic"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["pixel_error"] == 0.0
    assert scores["classes"]["1"]["iou"] == scores["classes"]["2"]["iou"] == 1.0


def test_evaluate_bad_input(labels, tmp_path, capsys):
    pred_p, _, _, _ = labels
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((2, 30, 30), np.uint16))
    assert main(["evaluate", "--pred", str(pred_p), "--truth", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shape" in err
