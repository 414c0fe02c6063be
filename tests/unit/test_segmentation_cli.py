"""``workbench segment`` on stored predictions (blockwise), and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from workbench.cli import main
from workbench.inference import PredictOptions, predict_volume


class BlobPredictor:
    """Channel 0: smoothed raw (foreground); channel 1: its gradient magnitude (boundary-like)."""

    spatial_dims = 3
    out_channels = 2
    channel_names = ["foreground", "boundary"]
    halo = (4, 4, 4)

    def predict(self, block):
        f = ndi.gaussian_filter(block.astype(np.float32) / 255.0, 1.0, truncate=2.0)
        g = np.clip(ndi.gaussian_gradient_magnitude(f, 0.7, truncate=2.0) * 4, 0, 1)
        return np.stack([f, g])


@pytest.fixture
def prediction(tmp_path, rng):
    raw = (ndi.gaussian_filter(rng.random((12, 40, 40)), 2.5) > 0.5).astype(np.uint8) * 255
    out = tmp_path / "pred.zarr"
    predict_volume(BlobPredictor(), raw, out, PredictOptions(block_shape=(6, 16, 16)))
    return out, raw


def test_segment_cc_blockwise_matches_in_memory(prediction, tmp_path, capsys):
    pred, raw = prediction
    seg = tmp_path / "seg.zarr"
    assert main(["segment", str(pred), "--out", str(seg), "--method", "cc", "--min-size", "5", "--no-progress"]) == 0
    labels = zarr.open_array(str(seg / "0"), mode="r")[...]
    assert labels.dtype == np.uint32 and labels.max() > 1
    fg = zarr.open_array(str(pred / "0"), mode="r")[0] > 127
    ref, n = ndi.label(fg)
    sizes = np.bincount(ref.ravel())
    assert labels.max() == int(np.sum(sizes[1:] >= 5))
    attrs = json.loads((seg / ".zattrs").read_text())
    assert attrs["workbench"]["complete"] and attrs["multiscales"][0]["axes"][0]["name"] == "z"
    # refuses to overwrite
    assert main(["segment", str(pred), "--out", str(seg), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err


def test_segment_watershed(prediction, tmp_path):
    pred, _ = prediction
    seg = tmp_path / "ws.zarr"
    assert main(["segment", str(pred), "--out", str(seg), "--method", "watershed", "--channel", "1",
                 "--threshold", "0.2", "--no-progress"]) == 0
    labels = zarr.open_array(str(seg / "0"), mode="r")[...]
    assert labels.max() >= 1 and (labels > 0).mean() > 0.5
    assert not (seg / "_seeds").exists()
    # then merging weak boundaries: fewer objects, each a union of watershed objects; recorded in the attributes
    merged_path = tmp_path / "ws_merged.zarr"
    assert main(["segment", str(pred), "--out", str(merged_path), "--method", "watershed", "--channel", "1",
                 "--threshold", "0.2", "--merge-threshold", "0.6", "--no-progress"]) == 0
    merged = zarr.open_array(str(merged_path / "0"), mode="r")[...]
    assert 1 <= len(np.unique(merged[merged > 0])) < len(np.unique(labels[labels > 0]))
    for obj in np.unique(labels[labels > 0]):
        assert len(np.unique(merged[labels == obj])) == 1
    assert json.loads((merged_path / ".zattrs").read_text())["workbench"]["merge_threshold"] == 0.6


def _err(capsys, argv, word):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err


def test_segment_bad_inputs(prediction, tmp_path, capsys, rng):
    pred, raw = prediction
    _err(capsys, ["segment", str(pred), "--out", str(tmp_path / "a.zarr"), "--channel", "5"], "channel")
    _err(capsys, ["segment", str(pred), "--out", str(tmp_path / "a.zarr"), "--method", "affinity"], "channel")
    _err(capsys, ["segment", str(tmp_path / "nothing.zarr"), "--out", str(tmp_path / "a.zarr")], "no such")
    _err(capsys, ["segment", str(pred), "--out", str(tmp_path / "a.zarr"), "--merge-threshold", "0.5"], "watershed")
    _err(capsys, ["segment", str(pred), "--out", str(tmp_path / "a.zarr"), "--method", "watershed",
                  "--merge-threshold", "2"], "merge threshold")
    part = tmp_path / "half.zarr"
    predict_volume(BlobPredictor(), raw, part, PredictOptions(block_shape=(6, 16, 16)),
                   should_stop=lambda: True)
    _err(capsys, ["segment", str(part), "--out", str(tmp_path / "b.zarr")], "incomplete")
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_segment_affinity_from_named_channels(tmp_path, capsys):
    truth = np.zeros((4, 32, 32), np.uint32)
    truth[:, :16] = 1
    truth[:, 16:] = 2

    class AffinityPredictor:
        spatial_dims = 2
        out_channels = 3
        channel_names = ["affinity (0, -1, 0)", "affinity (0, 0, -1)", "affinity (0, -9, 0)"]
        halo = (0, 1, 1)

        def predict(self, block):
            same_y = np.ones(block.shape, np.float32)
            same_y[:, 1:] = block[:, 1:] == block[:, :-1]
            same_x = np.ones(block.shape, np.float32)
            same_x[:, :, 1:] = block[:, :, 1:] == block[:, :, :-1]
            return np.stack([same_y, same_x, np.ones(block.shape, np.float32)]) * 0.9 + 0.05

    predict_volume(AffinityPredictor(), truth.astype(np.uint8), tmp_path / "aff.zarr",
                   PredictOptions(block_shape=(2, 16, 16)))
    seg = tmp_path / "seg.zarr"
    assert main(["segment", str(tmp_path / "aff.zarr"), "--out", str(seg), "--method", "affinity",
                 "--no-progress"]) == 0, capsys.readouterr().err
    labels = zarr.open_array(str(seg / "0"), mode="r")[...]
    assert len(np.unique(labels[0])) == 2 and len(np.unique(labels)) == 2 * 4
