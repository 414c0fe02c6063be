"""The synthetic EM sample: determinism, seams, ground-truth consistency, artifacts, OME-Zarr and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.synthetic import SEMANTIC_CLASSES, SampleConfig, SampleOptions, generate_sample, make_sample

SHAPE = (8, 96, 112)


@pytest.fixture(scope="module")
def sample():
    return make_sample(SHAPE, seed=0)


def _equal(a, b):
    for name in ("raw", "instances", "semantic"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), f"{name} differs in {np.count_nonzero(x != y)} voxels"


def test_dtypes_ranges_and_voxel_size(sample):
    assert sample.raw.dtype == np.uint8 and sample.raw.shape == SHAPE
    assert sample.instances.dtype == np.uint32 and sample.semantic.dtype == np.uint8
    assert sample.voxel_size == (40.0, 8.0, 8.0)
    assert set(np.unique(sample.semantic)) <= {c["id"] for c in SEMANTIC_CLASSES}
    assert {0, 1}.issubset(set(np.unique(sample.semantic)))
    assert 30 < sample.raw.mean() < 200 and sample.raw.std() > 15
    assert len(np.unique(sample.instances)) > 10  # many cells
    assert sample.boundaries.dtype == np.uint8 and sample.boundaries.max() == 1


def test_same_seed_same_volume_other_seed_differs(sample):
    _equal(sample, make_sample(SHAPE, seed=0))
    assert not np.array_equal(sample.raw, make_sample(SHAPE, seed=1).raw)


@pytest.mark.parametrize("artifacts", [False, True])
def test_blocks_join_without_seams(artifacts):
    shape = (7, 70, 90)
    whole = make_sample(shape, seed=5, artifacts=artifacts, block_shape=shape)
    for block in [(3, 32, 40), (2, 17, 23)]:
        _equal(whole, make_sample(shape, seed=5, artifacts=artifacts, block_shape=block))


def test_many_blocks_with_synapses_join_without_seams():
    shape = (12, 150, 170)
    whole = make_sample(shape, seed=3, block_shape=shape)
    assert (whole.semantic == 3).any() and (whole.semantic == 2).any()
    _equal(whole, make_sample(shape, seed=3, block_shape=(5, 41, 64)))


def test_ground_truth_matches_the_image(sample):
    raw, sem, inst = sample.raw.astype(float), sample.semantic, sample.instances
    cyto = raw[sem == 0].mean()
    assert raw[sem == 1].mean() < cyto - 25, "membranes must be dark"
    assert (sem == 2).any(), "expected a mitochondrion in the test volume"
    assert raw[sem == 2].mean() < cyto - 15, "mitochondria must be darker than cytoplasm"
    # instance 0 exactly on membranes and clefts; everything else belongs to a cell
    assert np.array_equal(inst == 0, (sem == 1) | (sem == 4))


def test_cells_touch_only_across_membranes(sample):
    inst = sample.instances.astype(np.int64)
    for axis in range(3):
        a = np.moveaxis(inst, axis, 0)
        lo, hi = a[:-1], a[1:]
        touching = (lo != 0) & (hi != 0) & (lo != hi)
        assert not touching.any(), f"cells touch without a membrane along axis {axis}"


def test_cells_are_continuous_across_sections(sample):
    inst = sample.instances
    both = (inst[:-1] != 0) & (inst[1:] != 0)
    same = (inst[:-1] == inst[1:]) & both
    assert same.sum() / both.sum() > 0.95  # 40 nm sections: neurites continue from section to section


def test_vesicles_and_clefts_appear_somewhere():
    s = make_sample((16, 160, 160), seed=0)
    assert (s.semantic == 3).any() and (s.semantic == 4).any()
    # vesicles sit inside cells, clefts are boundaries
    assert (s.instances[s.semantic == 3] != 0).all()
    assert (s.instances[s.semantic == 4] == 0).all()


def test_artifacts_switch():
    shape = (12, 64, 64)
    clean = make_sample(shape, seed=2)
    art = make_sample(shape, seed=2, artifacts=True)
    blank = [z for z in range(shape[0]) if art.raw[z].max() == 0]
    assert blank, "expected a missing (blank) section"
    assert not any(clean.raw[z].max() == 0 for z in range(shape[0]))
    assert not np.array_equal(clean.raw, art.raw)
    # sections that are neither missing nor shifted keep the same ground truth
    same_gt = [z for z in range(shape[0]) if np.array_equal(clean.instances[z], art.instances[z])]
    assert 0 < len(same_gt) < shape[0]


def test_config_changes_the_geometry():
    a = make_sample((4, 64, 64), seed=0)
    b = make_sample((4, 64, 64), seed=0, config=SampleConfig(cell_spacing_nm=500.0))
    assert len(np.unique(b.instances)) < len(np.unique(a.instances))


@pytest.mark.parametrize("shape", [(0, 10, 10), (4, -1, 4), (4, 4), ("a", 4, 4)])
def test_bad_shapes_are_one_line_errors(shape):
    with pytest.raises(WorkbenchError, match="three positive integers") as err:
        make_sample(shape)
    assert "\n" not in str(err.value)


def test_generate_sample_writes_ome_zarr_equal_to_memory(tmp_path):
    import zarr

    shape = (5, 60, 72)
    calls = []
    out = generate_sample(tmp_path / "s.zarr", shape, seed=4, options=SampleOptions(block_shape=(2, 32, 32)),
                          progress=lambda done, total: calls.append((done, total)))
    ref = make_sample(shape, seed=4)
    root = zarr.open_group(str(out), mode="r")
    assert np.array_equal(root["0"][...], ref.raw)
    assert np.array_equal(root["labels/instances/0"][...], ref.instances)
    assert np.array_equal(root["labels/semantic/0"][...], ref.semantic)
    assert calls and calls[-1][0] == calls[-1][1]
    labels = json.loads((out / "labels" / ".zattrs").read_text())["labels"]
    assert sorted(labels) == ["instances", "semantic"]
    sem_attrs = json.loads((out / "labels" / "semantic" / ".zattrs").read_text())
    colors = {c["label-value"] for c in sem_attrs["image-label"]["colors"]}
    assert colors == {c["id"] for c in SEMANTIC_CLASSES}
    raw_attrs = json.loads((out / ".zattrs").read_text())
    assert raw_attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [40.0, 8.0, 8.0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_generate_sample_refuses_existing_output_and_stops_cleanly(tmp_path):
    out = tmp_path / "s.zarr"
    generate_sample(out, (2, 32, 32))
    with pytest.raises(WorkbenchError, match="already exists"):
        generate_sample(out, (2, 32, 32))
    generate_sample(out, (2, 32, 32), seed=1, options=SampleOptions(overwrite=True))
    with pytest.raises(WorkbenchError, match="stopped"):
        generate_sample(tmp_path / "t.zarr", (4, 64, 64), options=SampleOptions(block_shape=(1, 32, 32)),
                        should_stop=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_cli_round_trip_and_errors(tmp_path, capsys):
    import zarr

    from workbench.cli import main

    out = tmp_path / "cli.zarr"
    assert main(["sample", str(out), "--shape", "3", "48", "40", "--seed", "7", "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "cli.zarr" in line and "3 x 48 x 40" in line
    ref = make_sample((3, 48, 40), seed=7)
    assert np.array_equal(zarr.open_group(str(out), mode="r")["0"][...], ref.raw)

    assert main(["sample", str(out), "--shape", "3", "48", "40", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err
    assert main(["sample", str(out), "--shape", "3", "48", "40", "--overwrite", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "bad.zarr"), "--shape", "0", "8", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "positive" in err
    assert not (tmp_path / "bad.zarr").exists()


def test_generate_sample_creates_missing_parent_folders(tmp_path):
    import zarr

    out = generate_sample(tmp_path / "a" / "b" / "s.zarr", (2, 32, 32), seed=9)
    assert zarr.open_group(str(out), mode="r")["labels/semantic/0"].shape == (2, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
