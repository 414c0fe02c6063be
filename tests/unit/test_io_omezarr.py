"""OME-Zarr writing: pyramid plan, reducers, metadata validity, atomic output, block-by-block creation."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.io import Volume, WriteOptions, create_ome_zarr_image, open_labels, open_volume, write_ome_zarr
from workbench.io.downsample import (
    chunk_aligned_blocks,
    downsample_mean,
    downsample_mode,
    plan_pyramid,
    step_factors,
)


def test_anisotropic_pyramid_keeps_z_until_xy_reach_it():
    plan = plan_pyramid((30, 4096, 4096), (50, 4, 4))
    steps = [lev.step for lev in plan[1:]]
    assert steps[:3] == [(1, 2, 2)] * 3  # 4 -> 8 -> 16 -> 32 nm in xy, z stays 50
    assert steps[3] == (2, 2, 2)  # 32 nm is within 2x of 50: all axes shrink
    assert max(plan[-1].shape[1:]) <= 256
    assert step_factors((1, 100, 100), (1, 1, 1)) == (1, 2, 2)  # a single slice is never halved in z
    assert [lev.shape for lev in plan_pyramid((8, 8, 8), (1, 1, 1), levels=3)] == [(8, 8, 8), (4, 4, 4), (2, 2, 2)]
    assert plan_pyramid((5, 7, 9), (1, 1, 1), levels=2)[1].shape == (3, 4, 5)  # ceil at odd sizes


def test_reducers():
    a = np.array([[[0, 2], [4, 6]], [[1, 3], [5, 7]]], dtype=np.uint8)
    assert downsample_mean(a, (2, 2, 2)).tolist() == [[[4]]]  # mean 3.5 rounds to 4
    assert downsample_mean(a.astype(np.float32), (1, 2, 2))[:, 0, 0].tolist() == [3.0, 4.0]
    lab = np.array([[[5, 5, 1], [7, 5, 1]]], dtype=np.uint32)
    out = downsample_mode(lab, (1, 2, 2))
    assert out.dtype == np.uint32 and out.tolist() == [[[5, 1]]]
    tie = np.array([[[3, 9], [9, 3]]], dtype=np.uint16)
    assert downsample_mode(tie, (1, 2, 2)).tolist() == [[[3]]]  # ties: the first voxel (nearest)


def test_chunk_aligned_blocks_cover_once():
    shape, chunks = (10, 70, 50), (4, 16, 16)
    seen = np.zeros(shape, np.int32)
    for r in chunk_aligned_blocks(shape, chunks, 1, budget=4 * 16 * 50):
        for sl, c in zip(r, chunks):
            assert sl.start % c == 0
        seen[r] += 1
    assert (seen == 1).all()


def test_write_validates_and_reads_back(tmp_path, rng):
    import zarr
    from ome_zarr_models.v04 import Image, ImageLabel, Labels

    raw = rng.integers(0, 255, size=(6, 40, 36)).astype(np.uint8)
    lab = rng.integers(0, 4, size=raw.shape).astype(np.uint16)
    seen = []
    out = write_ome_zarr(Volume(raw, (50, 4, 4)), tmp_path / "a.zarr", WriteOptions(chunks=(2, 16, 16), levels=3),
                         progress=lambda done, total: seen.append((done, total)))
    write_ome_zarr(lab, out, WriteOptions(name="truth", voxel_size=(50, 4, 4), labels=True, chunks=(2, 16, 16), levels=3))
    assert seen[-1][0] == seen[-1][1] > raw.nbytes
    g = zarr.open_group(out, mode="r")
    img = Image.from_zarr(g)
    ms = img.attributes.multiscales[0]
    assert [a.unit for a in ms.axes] == ["nanometer"] * 3
    assert [d.coordinateTransformations[0].scale for d in ms.datasets] == [[50, 4, 4], [50, 8, 8], [50, 16, 16]]
    assert Labels.from_zarr(g["labels"]).attributes.labels == ["truth"]
    ImageLabel.from_zarr(g["labels/truth"])
    assert g["0"].metadata.zarr_format == 2
    np.testing.assert_array_equal(g["0"][:], raw)
    np.testing.assert_array_equal(g["1"][:], downsample_mean(raw, (1, 2, 2)))
    np.testing.assert_array_equal(g["labels/truth/1"][:], downsample_mode(lab, (1, 2, 2)))
    assert open_labels(out / "labels" / "truth").voxel_size == (50.0, 4.0, 4.0)
    assert not [p for p in tmp_path.rglob(".*partial*")]


def test_existing_output_refused_then_overwritten(tmp_path):
    out = tmp_path / "o.zarr"
    write_ome_zarr(np.zeros((2, 3, 4), np.uint8), out)
    with pytest.raises(WorkbenchError, match="already exists"):
        write_ome_zarr(np.ones((2, 3, 4), np.uint8), out)
    write_ome_zarr(np.ones((2, 3, 4), np.uint8), out, WriteOptions(overwrite=True))
    assert open_volume(out).read().min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]


def test_labels_must_match_existing_image(tmp_path):
    out = tmp_path / "o.zarr"
    write_ome_zarr(np.zeros((2, 3, 4), np.uint8), out)
    with pytest.raises(WorkbenchError, match=r"labels have shape \(2, 3, 5\) but the image has shape \(2, 3, 4\)"):
        write_ome_zarr(np.zeros((2, 3, 5), np.uint8), out, WriteOptions(name="x", labels=True))
    assert not (out / "labels").exists()


def test_create_image_block_by_block_then_finalize(tmp_path, rng):
    data = rng.integers(0, 1000, size=(8, 64, 48)).astype(np.uint16)
    with create_ome_zarr_image(tmp_path / "p.zarr", data.shape, data.dtype,
                               WriteOptions(voxel_size=(8, 8, 8), chunks=(4, 32, 32), levels=2)) as img:
        assert not (tmp_path / "p.zarr").exists()  # written under a temporary name
        for region in img.blocks(budget=4 * 32 * 32 * 2):
            img.write_block(region, data[region])
    v = open_volume(tmp_path / "p.zarr")
    np.testing.assert_array_equal(v.read(), data)
    assert open_volume(tmp_path / "p.zarr/1").shape == (4, 32, 24)  # isotropic: all axes halved


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with create_ome_zarr_image(tmp_path / "x.zarr", (4, 8, 8), np.uint8, WriteOptions(voxel_size=(1, 1, 1))) as img:
            img.level0[0:2] = 1
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WorkbenchError, match="stopped"):
        write_ome_zarr(np.zeros((4, 8, 8), np.uint8), tmp_path / "y.zarr", should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_float_nan_found_while_writing(tmp_path):
    data = np.zeros((40, 8, 8), np.float32)
    data[33, 2, 2] = np.nan
    vol = open_volume(Volume(data, (1, 1, 1), source="bad.h5"))
    with pytest.raises(WorkbenchError, match="bad.h5: .*NaN"):
        write_ome_zarr(vol, tmp_path / "f.zarr", WriteOptions(chunks=(2, 8, 8)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("voxel_size", [(1, 1, 1), (40, 4, 4)])
def test_blockwise_pyramid_equals_whole_volume(tmp_path, rng, monkeypatch, labels, voxel_size):
    """Levels written from level-0 blocks in memory or read back later equal the whole-volume reduction."""
    import zarr

    from workbench.io import omezarr

    monkeypatch.setattr(omezarr, "BLOCK_BYTES", 4 * 32 * 32 * 8)  # many blocks, cascade of a few levels
    data = rng.integers(0, 6 if labels else 255, size=(19, 70, 66)).astype(np.uint16)
    out = write_ome_zarr(data, tmp_path / "p.zarr", WriteOptions(name="l", voxel_size=voxel_size, chunks=(4, 16, 16),
                                                                  levels=4, labels=labels))
    g = zarr.open_group(out, mode="r")
    reduce = downsample_mode if labels else downsample_mean
    expected = data
    for lev in plan_pyramid(data.shape, voxel_size, levels=4):
        expected = reduce(expected, lev.step)
        np.testing.assert_array_equal(g[str(plan_pyramid(data.shape, voxel_size, 4).index(lev))][:], expected)


def test_labels_into_new_store_and_dask_input(tmp_path, rng):
    import dask.array as da
    from ome_zarr_models.v04 import ImageLabel, Labels

    lab = rng.integers(0, 3, size=(4, 20, 20)).astype(np.uint8)
    out = write_ome_zarr(Volume(da.from_array(lab, chunks=(2, 10, 10)), (30, 5, 5)), tmp_path / "new.zarr",
                         WriteOptions(name="cells", labels=True))
    assert out == tmp_path / "new.zarr" / "labels" / "cells"
    import zarr

    g = zarr.open_group(tmp_path / "new.zarr", mode="r")
    assert Labels.from_zarr(g["labels"]).attributes.labels == ["cells"]
    ImageLabel.from_zarr(g["labels/cells"])
    np.testing.assert_array_equal(open_labels(out).read(), lab)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.zarr"]
