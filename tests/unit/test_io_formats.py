"""Round trips for every readable format on tiny arrays."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.io import Volume, WriteOptions, open_labels, open_volume, write_ome_zarr


@pytest.fixture
def vol16(rng) -> np.ndarray:
    return rng.integers(0, 60000, size=(5, 12, 14)).astype(np.uint16)


def _check(v: Volume, expected: np.ndarray):
    assert v.shape == expected.shape
    assert v.dtype == expected.dtype
    np.testing.assert_array_equal(v.read(), expected)
    np.testing.assert_array_equal(v[1:3, 2:7, 3], expected[1:3, 2:7, 3])
    np.testing.assert_array_equal(v[2], expected[2])
    np.testing.assert_array_equal(v[..., ::2], expected[..., ::2])
    np.testing.assert_array_equal(v[::-1, 5:1:-2], expected[::-1, 5:1:-2])
    again = pickle.loads(pickle.dumps(v.data))  # shippable to dask workers, by description
    np.testing.assert_array_equal(np.asarray(again[0:2, 1:4]), expected[0:2, 1:4])
    np.testing.assert_array_equal(v.to_dask().compute(), expected)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_stack(tmp_path, vol16, compression):
    import tifffile

    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, vol16, photometric="minisblack", compression=compression)
    v = open_volume(p)
    _check(v, vol16)
    assert type(v.data.base).__name__ == ("TiffRaw" if compression is None else "TiffZarr")
    assert v.voxel_size == (1.0, 1.0, 1.0)
    assert open_volume(p, voxel_size=(50, 4, 4)).voxel_size == (50.0, 4.0, 4.0)


def test_tiff_imagej_spacing_and_resolution(tmp_path, vol16):
    import tifffile

    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, vol16, imagej=True, resolution=(1 / 0.004, 1 / 0.004),
                     metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"})
    v = open_volume(p)
    _check(v, vol16)
    np.testing.assert_allclose(v.voxel_size, (50.0, 4.0, 4.0))


def test_ome_tiff_physical_size(tmp_path, vol16):
    import tifffile

    p = tmp_path / "x.ome.tif"
    tifffile.imwrite(p, vol16, ome=True, photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.006, "PhysicalSizeY": 0.006, "PhysicalSizeZ": 0.03})
    v = open_volume(p)
    _check(v, vol16)
    np.testing.assert_allclose(v.voxel_size, (30, 6, 6))


def test_tiff_2d_is_one_slice(tmp_path, rng):
    import tifffile

    img = rng.integers(0, 255, size=(9, 11)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", img)
    v = open_volume(tmp_path / "img.tif")
    assert v.shape == (1, 9, 11) and v.is_2d
    np.testing.assert_array_equal(v.read()[0], img)


def test_tiff_channels(tmp_path, rng):
    import tifffile

    data = rng.integers(0, 255, size=(4, 3, 8, 9)).astype(np.uint8)  # Z C Y X
    p = tmp_path / "hyper.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(WorkbenchError, match=r"3 channels.*--channel N"):
        open_volume(p)
    v = open_volume(p, channel=2)
    np.testing.assert_array_equal(v.read(), data[:, 2])
    with pytest.raises(WorkbenchError, match="channel 5 does not exist"):
        open_volume(p, channel=5)


def test_png_and_tiff_slice_folders_sort_naturally(tmp_path, rng):
    import tifffile
    from PIL import Image

    data = rng.integers(0, 255, size=(12, 6, 7)).astype(np.uint8)
    (tmp_path / "png").mkdir()
    (tmp_path / "tif").mkdir()
    for z in range(12):
        Image.fromarray(data[z]).save(tmp_path / "png" / f"s{z}.png")
        tifffile.imwrite(tmp_path / "tif" / f"slice_{z}.tif", data[z])
    (tmp_path / "png" / "notes.txt").write_text("ignored")
    for folder in ("png", "tif"):
        v = open_volume(tmp_path / folder)
        _check(v, data)  # s2 before s10: natural order


def test_single_png_rgb_needs_channel(tmp_path, rng):
    from PIL import Image

    rgb = rng.integers(0, 255, size=(6, 7, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(WorkbenchError, match="--channel"):
        open_volume(tmp_path / "rgb.png")
    v = open_volume(tmp_path / "rgb.png", channel=1)
    np.testing.assert_array_equal(v.read()[0], rgb[..., 1])


def test_hdf5(tmp_path, vol16):
    import h5py

    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("volumes/raw", data=vol16, chunks=(2, 6, 7))
        ds.attrs["resolution"] = [40.0, 4.0, 4.0]
        f.create_dataset("meta/table", data=np.arange(5))
    v = open_volume(f"{p}:/volumes/raw")
    _check(v, vol16)
    assert v.voxel_size == (40.0, 4.0, 4.0)
    assert open_volume(p).source == f"{p}:/volumes/raw"  # the only 3D dataset
    with h5py.File(tmp_path / "um.h5", "w") as f:
        f.create_dataset("raw", data=vol16).attrs["element_size_um"] = [0.03, 0.006, 0.006]
    np.testing.assert_allclose(open_volume(tmp_path / "um.h5").voxel_size, (30, 6, 6))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_array_and_group(tmp_path, vol16, zarr_format):
    import zarr

    g = zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=zarr_format)
    a = g.create_array("data/raw", shape=vol16.shape, chunks=(2, 5, 5), dtype=vol16.dtype)
    a[:] = vol16
    _check(open_volume(tmp_path / "plain.zarr/data/raw"), vol16)
    _check(open_volume(tmp_path / "plain.zarr"), vol16)  # a group with a single 3D array
    g.create_array("other", shape=(3, 4, 5), dtype="u1")
    with pytest.raises(WorkbenchError, match=r"data/raw.*other"):
        open_volume(tmp_path / "plain.zarr")


def test_ome_zarr_written_here_any_scale_and_labels(tmp_path, vol16):
    out = tmp_path / "img.zarr"
    write_ome_zarr(Volume(vol16, (50, 4, 4)), out, WriteOptions(chunks=(2, 4, 4), levels=3))
    labels = (vol16 % 7).astype(np.uint32)
    write_ome_zarr(Volume(labels, (50, 4, 4)), out, WriteOptions(name="cells", labels=True, chunks=(2, 4, 4)))
    v = open_volume(out)
    _check(v, vol16)
    assert v.voxel_size == (50.0, 4.0, 4.0)
    v1 = open_volume(out / "1")
    assert v1.shape == (5, 6, 7) and v1.voxel_size == (50.0, 8.0, 8.0)
    lab = open_labels(out / "labels" / "cells", like=v)
    _check(lab, labels)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_from_ome_zarr_py(tmp_path, rng, version):
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    data = rng.integers(0, 255, size=(2, 4, 8, 10)).astype(np.uint8)  # c z y x
    fmt = FormatV04() if version == "0.4" else FormatV05()
    root = zarr.open_group(tmp_path / "ext.zarr", mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(data, root, axes="czyx", fmt=fmt, scale_factors=[], storage_options={"chunks": (1, 2, 4, 4)})
    # set the physical size in the metadata ome-zarr-py wrote (micrometres)
    attrs = root.attrs.asdict()
    ms = (attrs["ome"] if version == "0.5" else attrs)["multiscales"][0]
    for ax in ms["axes"][1:]:
        ax["unit"] = "micrometer"
    ms["datasets"][0]["coordinateTransformations"][0]["scale"] = [1, 0.05, 0.004, 0.004]
    root.attrs.put(attrs)
    with pytest.raises(WorkbenchError, match="2 channels"):
        open_volume(tmp_path / "ext.zarr")
    v = open_volume(tmp_path / "ext.zarr", channel=1)
    _check(v, data[1])
    np.testing.assert_allclose(v.voxel_size, (50, 4, 4))


def test_n5_tensorstore(tmp_path, vol16):
    import tensorstore as ts

    path = tmp_path / "d.n5" / "raw"
    # N5 lists dimensions fastest first (x, y, z): write the transposed array, read back z, y, x
    t = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path)}}, create=True,
                dtype="uint16", shape=vol16.shape[::-1], chunk_layout=ts.ChunkLayout(chunk_shape=[4, 4, 2])).result()
    t[...] = vol16.T
    attrs = json.loads((path / "attributes.json").read_text())
    attrs["resolution"] = [4.0, 4.0, 40.0]
    (path / "attributes.json").write_text(json.dumps(attrs))
    (tmp_path / "d.n5" / "attributes.json").write_text('{"n5": "2.0.0"}')
    v = open_volume(path)
    _check(v, vol16)
    assert v.voxel_size == (40.0, 4.0, 4.0)
    _check(open_volume(tmp_path / "d.n5"), vol16)  # the only dataset


def test_mrc(tmp_path, rng):
    import mrcfile

    data = rng.standard_normal((4, 6, 5)).astype(np.float32)
    p = tmp_path / "tomo.mrc"
    with mrcfile.new(p) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (12.0, 12.0, 25.0)  # x, y, z in Angstrom
    v = open_volume(p)
    _check(v, data)
    np.testing.assert_allclose(v.voxel_size, (2.5, 1.2, 1.2))


def test_huge_volume_opens_lazily(tmp_path):
    """A ~100 TB zarr array and a 48 GB TIFF (sparse files) open at once and read only what is asked."""
    import psutil
    import tifffile
    import zarr

    zarr.create_array(tmp_path / "huge.zarr", shape=(10_000, 100_000, 100_000), chunks=(64, 256, 256), dtype="u1")
    v = open_volume(tmp_path / "huge.zarr")
    assert v.nbytes == 10**14
    assert v[5000, 50_000:50_004, 7].tolist() == [0, 0, 0, 0]
    mm = tifffile.memmap(tmp_path / "big.tif", shape=(120, 20_000, 20_000), dtype=np.uint8, photometric="minisblack")
    mm[77, 123, 456] = 9
    mm.flush()
    del mm
    rss0 = psutil.Process().memory_info().rss
    t = open_volume(tmp_path / "big.tif")
    assert t.shape == (120, 20_000, 20_000)
    assert t[77, 120:125, 456].tolist() == [0, 0, 0, 9, 0]
    assert psutil.Process().memory_info().rss - rss0 < 200e6
    with pytest.raises(WorkbenchError, match="too large to read at once"):
        t.read()


def test_labels_signed_bool_and_integral_float(tmp_path, rng):
    import h5py

    lab = rng.integers(0, 5, size=(3, 4, 5))
    with h5py.File(tmp_path / "l.h5", "w") as f:
        f["i64"] = lab.astype(np.int64)
        f["f32"] = lab.astype(np.float32)
        f["b"] = lab > 2
    v = open_labels(f"{tmp_path}/l.h5:/i64")
    assert v.dtype == np.uint64
    np.testing.assert_array_equal(v.read(), lab)
    vf = open_labels(f"{tmp_path}/l.h5:/f32")
    assert vf.dtype == np.uint8
    np.testing.assert_array_equal(vf.read(), lab)
    vb = open_labels(f"{tmp_path}/l.h5:/b")
    assert vb.dtype == np.uint8 and vb.read().max() == 1


def test_labels_take_image_voxel_size(tmp_path, rng):
    import tifffile

    lab = rng.integers(0, 3, size=(4, 5, 6)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "l.tif", lab, photometric="minisblack")
    raw = Volume(np.zeros((4, 5, 6), np.uint8), (50, 4, 4))
    assert open_labels(tmp_path / "l.tif", like=raw).voxel_size == (50.0, 4.0, 4.0)


def test_region_suffix_selects_a_box_lazily(tmp_path):
    import tifffile

    from workbench.errors import WorkbenchError
    from workbench.io import open_volume

    arr = np.arange(6 * 8 * 10, dtype=np.uint16).reshape(6, 8, 10)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, arr)
    vol = open_volume(f"{path}[1:4, 2:, :-3]")
    assert vol.shape == (3, 6, 7)
    np.testing.assert_array_equal(vol.read(), arr[1:4, 2:, :-3])
    np.testing.assert_array_equal(vol[1, 0:2, 5], arr[2, 2:4, 5])
    assert open_volume(f"{path}[2]").shape == (1, 8, 10)
    assert open_volume(f"{path}[0:2]").shape == (2, 8, 10)
    for bad in ("[4:2]", "[a:b]", "[0:1, 0:1, 0:1, 0:1]", "[0:5:2]"):
        with pytest.raises(WorkbenchError, match="region"):
            open_volume(f"{path}{bad}")
