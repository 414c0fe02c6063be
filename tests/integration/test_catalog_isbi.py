"""ISBI 2012 from a local mirror of the real files: fetched to OME-Zarr, bit-exact, with voxel size."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from workbench.cli import main as cli_main
from workbench.datasets import dataset_volumes, fetch_dataset, get_dataset

pytestmark = pytest.mark.integration


@pytest.fixture
def isbi_mirror(isbi_dir, tmp_path, monkeypatch):
    """A mirror folder ``<tmp>/mirror/isbi2012/`` linking to the real TIFF files (nothing is copied)."""
    mirror = tmp_path / "mirror"
    (mirror / "isbi2012").mkdir(parents=True)
    for name in ("train-volume.tif", "train-labels.tif"):
        (mirror / "isbi2012" / name).symlink_to(isbi_dir / name)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(mirror))
    return mirror / "isbi2012"


def test_isbi2012_from_mirror_is_bit_exact(isbi_mirror, isbi_dir, tmp_path):
    notes: list[str] = []
    path = fetch_dataset("isbi2012", out=tmp_path / "out", report=notes.append)
    assert path == tmp_path / "out" / "isbi2012.zarr" and path.is_dir()
    # no checksum is published for the TIFFs: fetch prints what it saw so a user can pin it
    assert len(notes) == 2 and all("sha256 seen:" in n for n in notes)

    raw = tifffile.imread(isbi_dir / "train-volume.tif")
    labels = tifffile.imread(isbi_dir / "train-labels.tif")
    vols = dataset_volumes("isbi2012", out=tmp_path / "out")
    assert set(vols) == {"raw", "original", "semantic"}
    assert vols["raw"].shape == (30, 512, 512) == get_dataset("isbi2012").shape
    assert vols["raw"].voxel_size == (50.0, 4.0, 4.0)
    assert vols["raw"].dtype == raw.dtype
    np.testing.assert_array_equal(vols["raw"].read(), raw)
    np.testing.assert_array_equal(vols["original"].read(), labels)
    semantic = vols["semantic"].read()
    np.testing.assert_array_equal(semantic, np.where(labels == 0, 1, 2))  # 1 = membrane, 2 = interior
    assert 0.15 < (semantic == 1).mean() < 0.35  # membranes are a minority of pixels


def test_isbi2012_opens_with_workbench_io(isbi_mirror, isbi_dir, tmp_path):
    from workbench.io import open_labels, open_volume

    path = fetch_dataset("isbi2012", out=tmp_path / "out", report=lambda _: None)
    raw = open_volume(str(path))
    assert raw.voxel_size == (50.0, 4.0, 4.0)
    np.testing.assert_array_equal(raw.read(), tifffile.imread(isbi_dir / "train-volume.tif"))
    semantic = open_labels(str(path / "labels" / "semantic"), like=raw)
    assert set(np.unique(semantic.read()).tolist()) == {1, 2}


def test_cli_fetch_isbi2012(isbi_mirror, tmp_path, capsys):
    assert cli_main(["datasets", "fetch", "isbi2012", "--out", str(tmp_path / "cli")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "cli" / "isbi2012.zarr")
    assert "train-volume.tif: no published checksum; sha256 seen:" in captured.err
