"""``workbench import`` on the real ISBI 2012 stack, checked by two independent OME-Zarr readers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.integration
def test_import_isbi_to_ome_zarr(isbi_dir, tmp_path):
    import tifffile
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v04 import Image

    src = isbi_dir / "train-volume.tif"
    out = tmp_path / "isbi.zarr"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench", "import", str(src), str(out), "--voxel-size", "50", "4", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "(30, 512, 512)" in proc.stdout
    expected = tifffile.imread(src)

    # 1. the NGFF validator
    group = zarr.open_group(out, mode="r")
    model = open_ome_zarr(group)
    assert isinstance(model, Image)
    ms = model.attributes.multiscales[0]
    assert [a.name for a in ms.axes] == ["z", "y", "x"]
    assert [a.unit for a in ms.axes] == ["nanometer"] * 3
    assert list(ms.datasets[0].coordinateTransformations[0].scale) == [50.0, 4.0, 4.0]

    # 2. an independent reader (ome-zarr-py)
    nodes = list(Reader(parse_url(str(out)))())
    image = nodes[0]
    assert any(isinstance(s, Multiscales) for s in image.specs)
    level0 = np.asarray(image.data[0])
    assert level0.dtype == expected.dtype
    np.testing.assert_array_equal(level0, expected)  # bit-exact
    scale0 = image.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale0 == [50.0, 4.0, 4.0]
    assert image.data[1].shape == (30, 256, 256)  # xy halved, z kept (50 nm vs 8 nm)

    # 3. and back through the workbench reader
    from workbench.io import open_volume

    v = open_volume(out)
    assert v.voxel_size == (50.0, 4.0, 4.0)
    np.testing.assert_array_equal(v[10:12], expected[10:12])
