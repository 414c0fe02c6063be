"""Instance segmentation: components, watershed, affinity agglomeration, blockwise consistency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import ellipsoid
from skimage.metrics import adapted_rand_error, variation_of_information
from skimage.segmentation import find_boundaries

from workbench.errors import WorkbenchError
from workbench.segmentation import (
    AgglomerateBlockParams,
    BlockJob,
    WatershedBlockParams,
    WatershedParams,
    affinity_agglomeration,
    connected_components,
    label_blockwise,
    make_seeds,
    seeded_watershed,
    segment,
    watershed_blockwise,
)
from workbench.segmentation.watershed import merge_weak_boundaries


def same_partition(a, b) -> bool:
    """Equal up to the numbering (0 stays 0)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    split, merge = variation_of_information(a, b)
    return split < 1e-9 and merge < 1e-9


@pytest.fixture
def blobs(rng):
    return ndi.gaussian_filter(rng.random((20, 36, 40)), 2) > 0.5


@pytest.fixture
def cells():
    """Truth with touching objects and its boundary map."""
    truth = np.zeros((8, 48, 48), np.uint32)
    truth[:, :24, :24] = 1
    truth[:, :24, 24:] = 2
    truth[:, 24:, :30] = 3
    truth[:, 24:, 30:] = 4
    boundary = ndi.gaussian_filter(find_boundaries(truth, mode="inner").astype(np.float32), (0, 1, 1)) * 3
    return truth, np.clip(boundary, 0, 1)


@pytest.fixture
def boundary_prediction(tmp_path, cells):
    """The cells' boundary map stored as a one-channel 2D prediction (``membrane``)."""
    from workbench.inference import predict_volume

    class BoundaryPredictor:
        spatial_dims, out_channels, channel_names, halo = 2, 1, ["membrane"], (0, 0, 0)

        def predict(self, block):
            return np.asarray(block, np.float32)[None] / 255.0

    pred = tmp_path / "p.zarr"
    predict_volume(BoundaryPredictor(), (cells[1] * 255).astype(np.uint8), pred)
    return pred


def test_connected_components_and_size_filter(blobs):
    labels = connected_components(blobs.astype(np.float32), threshold=0.5)
    ref, n = ndi.label(blobs)
    assert labels.dtype == np.uint32 and labels.max() == n and same_partition(labels, ref)
    sizes = np.bincount(ref.ravel())[1:]
    big = connected_components(blobs, min_size=int(np.median(sizes)) + 1)
    assert big.max() == int(np.sum(sizes >= np.median(sizes) + 1))
    assert set(np.unique(big)) == set(range(big.max() + 1))  # consecutive ids


@pytest.mark.parametrize("block", [(7, 8, 9), (20, 5, 40), (3, 36, 4)])
def test_blockwise_components_equal_in_memory(blobs, block):
    ref = connected_components(blobs, min_size=4)
    out = np.zeros(blobs.shape, np.uint32)
    n = label_blockwise(lambda b: blobs[b.slices], out, BlockJob(blobs.shape, block), min_size=4)
    assert n == ref.max()
    assert same_partition(out, ref)


def test_blockwise_components_on_zarr(tmp_path, blobs):
    import zarr

    out = zarr.create_array(str(tmp_path / "l.zarr"), shape=blobs.shape, chunks=(5, 12, 10), dtype="uint32")
    label_blockwise(lambda b: blobs[b.slices], out, BlockJob(blobs.shape, (5, 12, 10)))
    assert same_partition(out[...], connected_components(blobs))


def test_seeded_watershed_recovers_cells(cells):
    truth, boundary = cells
    seg = seeded_watershed(boundary, params=WatershedParams(threshold=0.3))
    assert seg.max() == 4 and adapted_rand_error(truth, seg)[0] < 0.05
    # distance-transform seeds
    seeds = make_seeds(boundary, 0.3, method="distance", min_distance=10)
    assert seeds.max() >= 4
    seg2 = seeded_watershed(boundary, seeds=seeds)
    split, merge = variation_of_information(truth, seg2)
    assert merge < 0.05  # never fuses two cells
    with pytest.raises(ValueError):
        make_seeds(boundary, method="nope")


def test_blockwise_watershed_keeps_ids_across_blocks(cells):
    truth, boundary = cells
    out = np.zeros(truth.shape, np.uint32)
    seeds = np.zeros(truth.shape, np.uint32)
    n = watershed_blockwise(lambda b: boundary[b.slices], out, seeds, BlockJob(truth.shape, (4, 16, 16)),
                            WatershedBlockParams(threshold=0.3, halo=(2, 16, 16)))
    assert n == 4 and len(np.unique(out)) == 4
    in_memory = seeded_watershed(boundary, params=WatershedParams(threshold=0.3))
    assert adapted_rand_error(in_memory, out)[0] < 0.01
    for cell in range(1, 5):  # one id per cell, across blocks
        ids, counts = np.unique(out[truth == cell], return_counts=True)
        assert counts.max() > 0.9 * counts.sum()


@pytest.fixture
def split_cells(cells):
    """The cells' boundary map with a faint line (0.3) splitting cell 1 and a strong one (0.9) splitting cell 4."""
    truth, boundary = cells
    b = boundary.copy()
    b[:, 0:22, 11:13] = 0.3
    b[:, 36:38, 30:48] = 0.9
    seeds = np.zeros(truth.shape, np.uint32)
    seeds[:, 8:16, 3:8], seeds[:, 8:16, 16:21] = 1, 2  # the two halves of cell 1
    seeds[:, 6:18, 30:42] = 3
    seeds[:, 30:42, 6:24] = 4
    seeds[:, 28:34, 34:44], seeds[:, 41:46, 34:44] = 5, 6  # the two halves of cell 4
    return truth, b, seeds


def _ids_in_cells(labels, truth):
    """The ids found in each true cell's core (the cell eroded by 3 voxels in y, x)."""
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    return {c: set(np.unique(labels[ndi.binary_erosion(truth == c, st, iterations=3)]).tolist()) for c in range(1, 5)}


def test_merge_weak_boundaries_joins_faint_splits_only(split_cells):
    truth, boundary, seeds = split_cells
    plain = seeded_watershed(boundary, seeds=seeds)
    assert plain.max() == 6
    merged = seeded_watershed(boundary, seeds=seeds, params=WatershedParams(merge_threshold=0.5))
    assert merged.max() == 5 and set(np.unique(merged)) == set(range(1, 6))
    ids = _ids_in_cells(merged, truth)
    assert len(ids[1]) == 1  # the faint line is gone
    assert len(ids[4]) == 2  # the strong one stays
    for a, b in [(1, 2), (1, 3), (2, 4), (3, 4)]:  # true cells never merge
        assert not ids[a] & ids[b]
    assert merge_weak_boundaries(plain, boundary, 0.0).max() == 6  # threshold 0: nothing merges
    assert merge_weak_boundaries(plain, 0.99 * boundary, 1.0).max() == 1  # 1: everything touching does
    # sections kept apart: merging along y, x only never joins across z
    per_z = plain + (np.arange(truth.shape[0])[:, None, None] * 10).astype(np.uint32)
    assert merge_weak_boundaries(per_z, boundary, 0.5, axes=(1, 2)).max() == 5 * truth.shape[0]


@pytest.mark.parametrize("per_section", [False, True])
def test_blockwise_merge_equals_in_memory(split_cells, per_section):
    truth, boundary, _ = split_cells
    out = np.zeros(truth.shape, np.uint32)
    seeds = np.zeros(truth.shape, np.uint32)
    watershed_blockwise(lambda b: boundary[b.slices], out, seeds, BlockJob(truth.shape, (3, 20, 17)),
                        WatershedBlockParams(threshold=0.25, halo=(2, 48, 48), per_section=per_section,
                                             merge_threshold=0.5))
    ref = np.zeros(truth.shape, np.uint32)
    seeds_ref = np.zeros(truth.shape, np.uint32)
    watershed_blockwise(lambda b: boundary[b.slices], ref, seeds_ref, BlockJob(truth.shape, truth.shape),
                        WatershedBlockParams(threshold=0.25, halo=(0, 0, 0), per_section=per_section))
    axes = (1, 2) if per_section else None
    assert same_partition(out, merge_weak_boundaries(ref, boundary, 0.5, axes=axes))
    before, after = _ids_in_cells(ref, truth), _ids_in_cells(out, truth)
    sections = truth.shape[0] if per_section else 1
    assert len(before[1]) == 2 * sections and len(after[1]) == sections  # the faint split joined
    assert len(before[4]) == len(after[4]) == 2 * sections  # the strong one kept


def _affinities(truth, rng, noise=0.05):
    affs = []
    for axis in range(3):
        same = np.ones(truth.shape, np.float32)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(1, None)
        hi[axis] = slice(None, -1)
        same[tuple(lo)] = truth[tuple(lo)] == truth[tuple(hi)]
        affs.append(same)
    affs = np.stack(affs) * 0.9 + 0.05
    return np.clip(affs + rng.normal(0, noise, affs.shape), 0, 1).astype(np.float32)


def test_affinity_agglomeration(cells, rng):
    truth, _ = cells
    affs = _affinities(truth, rng)
    seg = affinity_agglomeration(affs, threshold=0.5)
    assert seg.max() == 4 and adapted_rand_error(truth, seg)[0] < 0.05
    # a high threshold keeps the over-segmentation (fragments), a low one merges everything
    assert affinity_agglomeration(affs, threshold=0.0).max() == 1
    assert segment(affs, "affinity", threshold=0.5).max() == 4


def test_segment_dispatch_and_errors(blobs, cells):
    truth, boundary = cells
    assert segment(blobs.astype(np.float32), "cc").max() == ndi.label(blobs)[1]
    assert segment(boundary, "watershed", threshold=0.3).max() == 4
    with pytest.raises(WorkbenchError, match="unknown"):
        segment(boundary, "magic")
    with pytest.raises(ValueError):
        affinity_agglomeration(np.zeros((5, 4, 4, 4)))


def test_blockwise_components_on_ellipsoids():
    """Objects crossing several block corners get one id."""
    e = ellipsoid(6, 9, 9)
    mask = np.zeros((20, 30, 30), bool)
    mask[3:3 + e.shape[0], 5:5 + e.shape[1], 5:5 + e.shape[2]] = e
    out = np.zeros(mask.shape, np.uint32)
    assert label_blockwise(lambda b: mask[b.slices], out, BlockJob(mask.shape, (4, 6, 6))) == 1
    assert np.array_equal(out > 0, mask)


def test_affinities_of_a_2d_model_are_segmented_per_slice(cells, rng):
    truth, _ = cells
    affs = _affinities(truth, rng)[1:]  # y and x only
    seg = affinity_agglomeration(affs, threshold=0.5)
    assert len(np.unique(seg[0])) == 4  # four cells per slice
    assert adapted_rand_error(truth[0], seg[0])[0] < 0.05
    # no z links: new ids per slice (noise may fuse or lose a cell in a slice or two)
    assert len(np.unique(seg)) >= 4 * truth.shape[0] - 2
    assert np.mean([adapted_rand_error(truth[z], seg[z])[0] for z in range(truth.shape[0])]) < 0.1


def test_affinity_channel_names():
    from workbench.segmentation.run import nearest_affinity_channels

    names = ["affinity (0, 0, -1)", "affinity (-1, 0, 0)", "affinity (0, -1, 0)", "affinity (0, -9, 0)"]
    assert nearest_affinity_channels(names) == ([1, 2, 0], [0, 1, 2])
    assert nearest_affinity_channels(["affinity (0, -1, 0)", "affinity (0, 0, -1)"]) == ([0, 1], [1, 2])
    assert nearest_affinity_channels(["class 1"]) == ([], [])


@pytest.mark.parametrize("block", [(3, 16, 16), (8, 48, 48)])
def test_per_section_watershed_and_components_never_cross_z(cells, block):
    truth, boundary = cells
    out = np.zeros(truth.shape, np.uint32)
    seeds = np.zeros(truth.shape, np.uint32)
    watershed_blockwise(lambda b: boundary[b.slices], out, seeds, BlockJob(truth.shape, block),
                        WatershedBlockParams(threshold=0.3, halo=(2, 16, 16), per_section=True))
    per_slice_truth = truth + (np.arange(truth.shape[0], dtype=np.uint32) * 10)[:, None, None]
    assert adapted_rand_error(per_slice_truth, out)[0] < 0.01  # 4 cells in every section, each its own id
    assert len(np.unique(out)) == 4 * truth.shape[0]
    ids_by_section = [set(np.unique(s)) for s in out]
    assert all(not (a & b) for i, a in enumerate(ids_by_section) for b in ids_by_section[i + 1:])

    mask = truth == 1
    cc = np.zeros(truth.shape, np.uint32)
    job = BlockJob(truth.shape, block)
    assert label_blockwise(lambda b: mask[b.slices], cc, job, per_section=True) == truth.shape[0]
    assert label_blockwise(lambda b: mask[b.slices], cc, job) == 1


def test_segment_cli_per_section(tmp_path, cells, boundary_prediction):
    from workbench.cli import main
    from workbench.io import open_volume

    truth, boundary = cells
    pred = boundary_prediction

    seg = tmp_path / "s.zarr"
    assert main(["segment", str(pred), "--out", str(seg), "--method", "watershed", "--threshold", "0.3", "--per-section",
                 "--no-progress"]) == 0
    labels = np.asarray(open_volume(str(seg))[...])
    assert len(np.unique(labels)) == 4 * truth.shape[0]
    assert main(["segment", str(pred), "--out", str(tmp_path / "a.zarr"), "--method", "affinity", "--per-section",
                 "--no-progress"]) == 2


@pytest.mark.parametrize("block", [(3, 16, 16), (4, 20, 48), (8, 48, 48)])
def test_blockwise_affinity_agglomeration_equals_in_memory(cells, rng, block):
    from workbench.segmentation import agglomerate_blockwise

    truth, _ = cells
    affs = _affinities(truth, rng)
    whole = affinity_agglomeration(affs, threshold=0.5)
    out = np.zeros(truth.shape, np.uint32)
    fragments = np.zeros(truth.shape, np.uint32)
    calls = []
    agglomerate_blockwise(lambda b: affs[(slice(None), *b.slices)], out, fragments,
                          BlockJob(truth.shape, block, progress=lambda d, n: calls.append((d, n))),
                          AgglomerateBlockParams(threshold=0.5, halo=(8, 48, 48)))
    assert same_partition(whole, out)
    assert adapted_rand_error(truth, out)[0] < 0.05 and len(np.unique(out)) == 4
    assert calls[-1][0] == calls[-1][1]
    # a 2D model's affinities (y, x): sections never join
    out2 = np.zeros(truth.shape, np.uint32)
    agglomerate_blockwise(lambda b: affs[(slice(1, 3), *b.slices)], out2, fragments, BlockJob(truth.shape, block),
                          AgglomerateBlockParams(axes=(1, 2), threshold=0.5, halo=(8, 48, 48)))
    assert same_partition(affinity_agglomeration(affs[1:], threshold=0.5), out2)


def test_region_graph_blockwise_counts_every_edge_once(cells, rng):
    from workbench.segmentation.blockwise import region_graph_blockwise
    from workbench.segmentation.graph import region_graph

    truth, _ = cells
    affs = _affinities(truth, rng)
    labels = truth.astype(np.int64)
    labels[2:5] += 4  # more regions, touching across z too
    whole = region_graph(labels, affs)
    parts = region_graph_blockwise(lambda b: labels[b.slices], lambda b: affs[(slice(None), *b.slices)],
                                   BlockJob(labels.shape, (3, 10, 14)), (0, 1, 2))
    np.testing.assert_array_equal(whole[0], parts[0])
    np.testing.assert_allclose(whole[1], parts[1])
    np.testing.assert_array_equal(whole[2], parts[2])


def test_segment_options_are_checked_once():
    from workbench.segmentation import SegmentMethod, SegmentOptions

    o = SegmentOptions(method="Watershed", block_shape=[4, 16, 16], merge_threshold=0.5)
    assert o.method is SegmentMethod.WATERSHED and o.block_shape == (4, 16, 16) and o.method == "watershed"
    assert o.info()["method"] == "watershed" and type(o.info()["method"]) is str
    bad = [
        (dict(method="watershad"), "unknown segmentation method 'watershad' (did you mean 'watershed'?)"),
        (dict(threshold=1.5), "threshold"),
        (dict(channel=-1), "channel"),
        (dict(min_size=-1), "minimum size"),
        (dict(block_shape=(0, 4, 4)), "block shape"),
        (dict(halo=(1, 2)), "halo"),
        (dict(method="affinity", per_section=True), "per-section"),
        (dict(merge_threshold=0.5), "watershed"),
        (dict(method="watershed", merge_threshold=2), "merge threshold"),
    ]
    for kwargs, words in bad:
        with pytest.raises(WorkbenchError) as err:
            SegmentOptions(**kwargs)
        assert words in str(err.value) and "\n" not in str(err.value), (kwargs, str(err.value))


def test_segment_prediction_progress_and_stop(tmp_path, cells, boundary_prediction):
    import zarr

    from workbench.segmentation import SegmentOptions, segment_prediction

    truth, boundary = cells
    pred = boundary_prediction

    options = SegmentOptions(method="watershed", threshold=0.3, block_shape=(4, 16, 16), merge_threshold=0.5)
    calls = []
    seg = segment_prediction(pred, tmp_path / "s.zarr", options, progress=lambda d, n: calls.append((d, n)))
    n_blocks = 2 * 3 * 3
    assert calls[-1] == (2 * n_blocks, 2 * n_blocks)  # flooding, then merging
    assert len(np.unique(zarr.open_array(str(seg / "0"), mode="r")[...])) == 4  # the four cells
    polls = []

    def stop_after_three():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(WorkbenchError, match="stopped before completion"):
        segment_prediction(pred, tmp_path / "t.zarr", options, should_stop=stop_after_three)
    assert not (tmp_path / "t.zarr").exists() and not (tmp_path / "t.zarr.partial").exists()
