"""Object tables: hand-checkable values on a tiny segmentation, blockwise = whole, classes from a
prediction, CSV, and ``workbench objects`` with its one-line errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import zarr

import workbench.objects as objects_mod
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.objects import COLUMNS, object_stats, object_table

VOXEL = (40.0, 4.0, 4.0)  # one voxel = 640 nm^3 = 6.4e-7 um^3


def tiny() -> np.ndarray:
    """Object 5: a 2 x 3 x 4 box at z 0-1, y 1-3, x 2-5; object 2: a 1 x 2 x 12 slab at z 3, y 8-9."""
    seg = np.zeros((4, 10, 12), np.uint32)
    seg[0:2, 1:4, 2:6] = 5
    seg[3, 8:10, 0:12] = 2
    return seg


def write_seg(path, seg, attrs=None):
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", shape=seg.shape, chunks=(2, 5, 6), dtype=seg.dtype, fill_value=0)[:] = seg
    root.attrs.update({"multiscales": [{"version": "0.4", "axes": [{"name": a, "type": "space", "unit": "nanometer"}
                                                                    for a in "zyx"],
                                        "datasets": [{"path": "0", "coordinateTransformations": [
                                            {"type": "scale", "scale": list(VOXEL)}]}]}], **(attrs or {})})
    return path


def test_object_table_values_by_hand():
    t = object_table(tiny(), voxel_size=VOXEL, block_shape=(3, 4, 5))
    rows = t.rows()
    assert [r["id"] for r in rows] == [2, 5]
    two, five = rows
    assert five["voxels"] == 24 and two["voxels"] == 24
    assert five["volume_um3"] == pytest.approx(24 * 640 / 1e9)
    assert (five["centroid_z"], five["centroid_y"], five["centroid_x"]) == (0.5, 2.0, 3.5)
    assert (two["centroid_z"], two["centroid_y"], two["centroid_x"]) == (3.0, 8.5, 5.5)
    assert [five[f"bbox_{a}0"] for a in "zyx"] == [0, 1, 2] and [five[f"bbox_{a}1"] for a in "zyx"] == [2, 4, 6]
    assert five["class"] == "object" and np.isnan(five["mean_probability"])
    assert list(rows[0]) == list(COLUMNS)


@pytest.mark.parametrize("block", [(1, 3, 3), (4, 10, 12), (2, 7, 5)])
def test_blockwise_equals_whole_and_huge_ids_relabel(block, monkeypatch):
    seg = np.random.default_rng(1).integers(0, 7, size=(5, 13, 11)).astype(np.uint32)
    whole = object_stats(seg, block_shape=seg.shape)
    part = object_stats(seg, block_shape=block)
    for a in ("ids", "voxels", "coord_sums", "lo", "hi"):
        np.testing.assert_allclose(getattr(part, a), getattr(whole, a))
    monkeypatch.setattr(objects_mod, "DIRECT_ID_LIMIT", 1)  # the sorting path of huge ids
    big = object_stats(seg.astype(np.uint64) * 2**40, block_shape=block)
    np.testing.assert_array_equal(big.ids, whole.ids.astype(np.uint64) * 2**40)
    np.testing.assert_array_equal(big.voxels, whole.voxels)
    np.testing.assert_array_equal(big.lo, whole.lo)


def test_prediction_gives_class_and_mean_probability():
    seg = tiny()
    prob = np.zeros((2, *seg.shape), np.float32)
    prob[0][seg == 5] = 0.8  # object 5: mostly "mito"
    prob[1][seg == 5] = 0.1
    prob[1][seg == 2] = 0.6  # object 2: "membrane"
    prob[1, 3, 8, 0] = 0.0   # one voxel lower: the mean drops by 0.6 / 24
    t = object_table(seg, prediction=prob, voxel_size=VOXEL, channel_names=["mito", "membrane"])
    two, five = t.rows()
    assert five["class"] == "mito" and five["mean_probability"] == pytest.approx(0.8)
    assert two["class"] == "membrane" and two["mean_probability"] == pytest.approx(0.6 * 23 / 24)
    u8 = object_table(seg, prediction=(prob * 255).round().astype(np.uint8), voxel_size=VOXEL,
                      channel_names=["mito", "membrane"])
    assert u8.row(5)["mean_probability"] == pytest.approx(0.8, abs=2e-3)


def test_class_from_segmentation_metadata(tmp_path):
    path = write_seg(tmp_path / "seg.zarr", tiny(), {"workbench": {"kind": "segmentation", "method": "cc",
                                                                     "channel": 1}})
    t = object_table(path, channel_names=["membrane", "mito"])
    assert set(t.columns["class"]) == {"mito"}
    assert t.voxel_size == VOXEL


def test_shape_mismatch_and_float_labels_are_one_line_errors():
    with pytest.raises(WorkbenchError, match="does not match"):
        object_table(tiny(), prediction=np.zeros((1, 4, 10, 11), np.float32))
    with pytest.raises(WorkbenchError, match="integer label volume"):
        object_table(np.zeros((2, 3, 3), np.float32))


def test_cli_objects_writes_csv(tmp_path, capsys):
    seg = write_seg(tmp_path / "seg.zarr", tiny())
    out = tmp_path / "objects.csv"
    assert main(["objects", str(seg), "--out", str(out)]) == 0
    assert "wrote 2 objects" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[1]["id"] == "5" and rows[1]["voxels"] == "24" and rows[1]["mean_probability"] == ""
    assert float(rows[1]["volume_um3"]) == pytest.approx(1.536e-05)
    assert float(rows[1]["centroid_x"]) == 3.5


def test_cli_objects_bad_input_is_one_line(tmp_path, capsys):
    seg = write_seg(tmp_path / "seg.zarr", tiny())
    assert main(["objects", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.zarr" in err
    assert main(["objects", str(seg), "--prediction", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.zarr" in err
