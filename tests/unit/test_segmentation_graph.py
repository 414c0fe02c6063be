"""Mutex watershed, multicut and GASP (bioimage-cpp): in memory and blockwise, 2D and 3D, ids, Dask, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from skimage.metrics import adapted_rand_error
from skimage.segmentation import find_boundaries, watershed

from workbench.errors import WorkbenchError
from workbench.inference import PredictOptions, predict_volume
from workbench.segmentation import METHOD_HELP, SegmentMethod, SegmentOptions, segment, segment_prediction
from workbench.segmentation.blockwise import BlockJob
from workbench.segmentation.stitching import check_id_capacity, relabel_canonical_blockwise

OFFSETS_3D = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-2, 0, 0], [0, -5, 0], [0, 0, -5]]
OFFSETS_2D = [[0, -1, 0], [0, 0, -1], [0, -5, 0], [0, 0, -5]]
NEW = ("mutex-watershed", "multicut", "gasp")


def cells(shape, n, seed=0) -> np.ndarray:
    """A volume tiled by ``n`` Voronoi cells (ids 1..n)."""
    rng = np.random.default_rng(seed)
    markers = np.zeros(shape, np.int64)
    pts = np.stack([rng.integers(0, s, n) for s in shape], axis=1)
    markers[tuple(pts.T)] = np.arange(1, n + 1)
    return watershed(np.zeros(shape), markers).astype(np.int64)


def affinities(labels, offsets, noise=0.0, seed=0) -> np.ndarray:
    from bioimage_cpp.affinities import compute_affinities

    a, _ = compute_affinities(np.ascontiguousarray(labels, np.int64), offsets)
    if noise:
        a = np.clip(a + np.random.default_rng(seed).normal(0, noise, a.shape), 0, 1)
    return a.astype(np.float32)


def same_partition(a, b) -> bool:
    a, b = a.astype(np.int64), b.astype(np.int64)
    return adapted_rand_error(a, b)[0] < 1e-12 and len(np.unique(a)) == len(np.unique(b))


def first_voxel_order(labels) -> bool:
    """Ids 1..N numbered in the raster order of each object's first voxel."""
    ids, first = np.unique(labels.ravel(), return_index=True)
    first = first[ids > 0]
    ids = ids[ids > 0]
    return list(ids) == list(range(1, len(ids) + 1)) and bool(np.all(np.diff(first) > 0))


def test_every_method_has_a_line_for_learners():
    assert set(METHOD_HELP) == set(SegmentMethod)
    for m in SegmentMethod:
        assert m.describe() and "\n" not in m.describe()


@pytest.mark.parametrize("shape,offsets", [((6, 40, 40), OFFSETS_3D), ((4, 40, 40), OFFSETS_2D)], ids=["3d", "2d"])
def test_mutex_watershed_recovers_cells_and_blockwise_equals_whole(shape, offsets):
    truth = cells(shape, 12 if len(offsets) == 6 else 20)
    if len(offsets) == 4:  # a 2D model: sections are independent, ids unique per section
        truth = truth + (np.arange(shape[0])[:, None, None] * 100)
    affs = affinities(truth, offsets, noise=0.1)
    whole = segment(affs, "mutex-watershed", offsets=offsets)
    assert whole.dtype == np.uint32 and same_partition(whole, truth)
    blocks = segment(affs, "mutex-watershed", offsets=offsets, block_shape=(3, 20, 20), halo=(2, 8, 8))
    assert np.array_equal(blocks, whole)  # same partition -> the same canonical ids
    assert first_voxel_order(whole)


@pytest.mark.parametrize("method", ["multicut", "gasp"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_boundary_graph_methods_recover_cells(method, ndim):
    shape = (1, 64, 64) if ndim == 2 else (6, 40, 40)
    truth = cells(shape, 14)
    boundary = find_boundaries(truth, mode="inner").astype(np.float32)
    seg = segment(boundary, method)
    assert adapted_rand_error(truth, seg.astype(np.int64))[0] < 0.1
    assert 0.5 * truth.max() <= seg.max() <= 2 * truth.max()
    assert first_voxel_order(seg)
    # the threshold is the boundary bias: a low one keeps more apart
    assert segment(boundary, method, threshold=0.05).max() >= seg.max()


@pytest.mark.parametrize("method", ["multicut", "gasp"])
def test_affinity_graph_methods_blockwise_equal_whole_on_clean_input(method):
    truth = cells((6, 40, 40), 10)
    affs = affinities(truth, OFFSETS_3D)
    whole = segment(affs, method, offsets=OFFSETS_3D)
    assert same_partition(whole, truth)
    # fragments are cut at block faces; the global solve joins them again by their costs
    assert np.array_equal(segment(affs, method, offsets=OFFSETS_3D, block_shape=(3, 16, 16), halo=(2, 8, 8)), whole)


def test_ids_are_reproducible_and_min_size_removes():
    truth = cells((4, 40, 40), 15, seed=3)
    affs = affinities(truth, OFFSETS_3D, noise=0.3, seed=1)
    a = segment(affs, "mutex-watershed", offsets=OFFSETS_3D, block_shape=(2, 20, 20))
    b = segment(affs, "mutex-watershed", offsets=OFFSETS_3D, block_shape=(2, 20, 20))
    assert np.array_equal(a, b) and first_voxel_order(a)
    big = segment(affs, "mutex-watershed", offsets=OFFSETS_3D, block_shape=(2, 20, 20), min_size=50)
    sizes = np.bincount(big.ravel())[1:]
    assert sizes.min() >= 50 and first_voxel_order(big) and big.max() < a.max()
    assert (big > 0).all()  # small objects were merged into neighbours, not removed


def test_absorb_small_merges_into_the_most_attractive_neighbour():
    from workbench.segmentation.stitching import absorb_small

    # node 2 (small) touches 1 (mean 0.9) and 3 (0.2); 4 and 5 (small) only touch each other
    pairs = np.array([[1, 2], [2, 3], [4, 5], [1, 3]])
    mapping = absorb_small(np.arange(6), pairs, np.array([0.9, 0.2, 0.8, 0.1]), np.ones(4),
                           np.array([0, 100, 5, 100, 3, 4]), min_size=10)
    assert mapping.tolist() == [0, 1, 1, 3, 4, 4]


def test_canonical_relabel_refuses_more_ids_than_the_dtype_holds():
    labels = np.arange(300, dtype=np.int64).reshape(1, 15, 20)  # 299 objects
    out = np.zeros(labels.shape, np.uint8)
    job = BlockJob(labels.shape, (1, 8, 8), where="seg.zarr")
    with pytest.raises(WorkbenchError, match="299 ids, more than a uint8 output") as err:
        relabel_canonical_blockwise(lambda b: labels[b.slices], np.arange(300), out, job)
    assert "\n" not in str(err.value)
    with pytest.raises(WorkbenchError, match=r"4294967296 ids, more than a uint32"):
        check_id_capacity(2**32, np.uint32)
    check_id_capacity(2**32 - 1, np.uint32)


# ---- stored predictions: offsets in the metadata, Dask, one-line errors
class AffinityPredictor:
    """Affinities of a label volume given as raw (a perfect affinity model)."""

    spatial_dims = 3
    target = "affinities"
    channel_names = [f"affinity {tuple(o)}" for o in OFFSETS_3D]
    out_channels = len(OFFSETS_3D)
    halo = (2, 5, 5)

    def predict(self, block):
        return affinities(block, OFFSETS_3D)


class BoundaryPredictor:
    spatial_dims = 3
    target = "boundaries"
    channel_names = ["interior", "boundary"]
    out_channels = 2
    halo = (1, 1, 1)

    def predict(self, block):
        b = find_boundaries(block.astype(np.int64), mode="inner").astype(np.float32)
        return np.stack([1 - b, b])


@pytest.fixture
def stored(tmp_path):
    truth = cells((8, 48, 48), 12).astype(np.uint8)
    aff = tmp_path / "aff.zarr"
    predict_volume(AffinityPredictor(), truth, aff, PredictOptions(block_shape=(4, 24, 24)))
    bnd = tmp_path / "bnd.zarr"
    predict_volume(BoundaryPredictor(), truth, bnd, PredictOptions(block_shape=(4, 24, 24)))
    return truth, aff, bnd


def test_prediction_records_offsets(stored):
    _, aff, bnd = stored
    assert json.loads((aff / ".zattrs").read_text())["workbench"]["offsets"] == OFFSETS_3D
    assert "offsets" not in json.loads((bnd / ".zattrs").read_text())["workbench"]


@pytest.mark.parametrize("method", NEW)
def test_stored_affinities_every_new_method(stored, tmp_path, method):
    truth, aff, _ = stored
    out = segment_prediction(aff, tmp_path / "seg.zarr", SegmentOptions(method=method, block_shape=(4, 24, 24)))
    seg = zarr.open_array(str(out / "0"), mode="r")[...]
    assert seg.dtype == np.uint32 and same_partition(seg, truth)
    assert not (out / "_pieces").exists()
    assert json.loads((out / ".zattrs").read_text())["workbench"]["method"] == method


@pytest.mark.parametrize("method", ["multicut", "gasp"])
def test_stored_boundaries_use_the_boundary_channel(stored, tmp_path, method):
    truth, _, bnd = stored
    out = segment_prediction(bnd, tmp_path / "seg.zarr", SegmentOptions(method=method))
    seg = zarr.open_array(str(out / "0"), mode="r")[...]
    assert adapted_rand_error(truth.astype(np.int64), seg.astype(np.int64))[0] < 0.1


def test_dask_gives_the_same_result_as_threads(stored, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is a dependency of the workbench")
    truth, aff, _ = stored
    noisy = tmp_path / "noisy.zarr"
    arr = zarr.open_array(str(aff / "0"), mode="r")[...]
    rng = np.random.default_rng(0)
    # the same prediction with noise: the per-block solves then matter
    root = zarr.open_group(str(noisy), mode="w", zarr_format=2)
    root.attrs.update(json.loads((aff / ".zattrs").read_text()))
    a = root.create_array("0", shape=arr.shape, chunks=(1, 4, 24, 24), dtype=arr.dtype, fill_value=0,
                          chunk_key_encoding={"name": "v2", "separator": "/"})
    a[...] = np.clip(arr.astype(np.float64) + rng.normal(0, 60, arr.shape), 0, 255).astype(arr.dtype)
    opts = dict(block_shape=(4, 24, 24), halo=(2, 8, 8))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        for method in ("mutex-watershed",):
            threads = segment_prediction(noisy, tmp_path / f"t-{method}.zarr", SegmentOptions(method=method, **opts))
            dask = segment_prediction(noisy, tmp_path / f"d-{method}.zarr",
                                      SegmentOptions(method=method, scheduler=client, **opts))
            t = zarr.open_array(str(threads / "0"), mode="r")[...]
            d = zarr.open_array(str(dask / "0"), mode="r")[...]
            assert t.max() > 1 and np.array_equal(t, d)


def test_bad_inputs_are_one_line(stored, tmp_path):
    _, aff, bnd = stored
    with pytest.raises(WorkbenchError, match="mutex-watershed needs an affinity prediction, this one predicts "
                                             "boundaries") as err:
        segment_prediction(bnd, tmp_path / "x.zarr", SegmentOptions(method="mutex-watershed"))
    assert "\n" not in str(err.value) and not (tmp_path / "x.zarr").exists()
    attrs = json.loads((aff / ".zattrs").read_text())
    attrs["workbench"]["offsets"] = OFFSETS_3D[:4]
    (aff / ".zattrs").write_text(json.dumps(attrs))
    for method in NEW:
        with pytest.raises(WorkbenchError, match="4 affinity offsets recorded for a prediction of 6 channels"):
            segment_prediction(aff, tmp_path / "x.zarr", SegmentOptions(method=method))
    with pytest.raises(WorkbenchError, match="long-range"):
        segment(np.ones((3, 2, 8, 8), np.float32), "mutex-watershed", offsets=OFFSETS_3D[:3])
    with pytest.raises(WorkbenchError, match="per-section"):
        SegmentOptions(method="mutex-watershed", per_section=True)


# ---- the CLI
@pytest.mark.parametrize("method", NEW)
def test_cli_new_methods(stored, tmp_path, method, capsys):
    from workbench.cli import main

    truth, aff, _ = stored
    out = tmp_path / f"{method}.zarr"
    assert main(["segment", str(aff), "--out", str(out), "--method", method, "--block", "4", "24", "24",
                 "--halo", "4", "16", "16", "--no-progress"]) == 0
    assert same_partition(zarr.open_array(str(out / "0"), mode="r")[...], truth)


def test_cli_bad_inputs_one_line(stored, tmp_path, capsys):
    from workbench.cli import main

    _, aff, bnd = stored
    assert main(["segment", str(bnd), "--out", str(tmp_path / "x.zarr"), "--method", "mutex-watershed",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs an affinity prediction" in err and "multicut or gasp" in err
    assert main(["segment", str(aff), "--out", str(tmp_path / "x.zarr"), "--method", "gasp", "--per-section",
                 "--threshold", "1.5", "--no-progress"]) == 2
    assert "threshold" in capsys.readouterr().err
