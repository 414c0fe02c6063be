"""Blockwise prediction: equality with whole-volume prediction, no seams, tiling, TTA, resume, errors."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.inference import (
    TTA_TRANSFORMS,
    PredictOptions,
    auto_workers,
    open_prediction,
    predict_array,
    predict_region,
    predict_volume,
    ramp_weights,
)
from workbench.inference.output import from_storage, partial_path
from workbench.io.volume import Volume


class GaussianPredictor:
    """Translation-equivariant: a Gaussian blur (receptive radius 3) and its complement."""

    spatial_dims = 3
    out_channels = 2
    channel_names = ["smooth", "inverse"]

    def __init__(self, halo=(6, 6, 6), sigma=1.0):
        self.halo = halo
        self.sigma = sigma
        self.calls: list[tuple[int, ...]] = []
        self._lock = threading.Lock()

    def predict(self, block):
        with self._lock:
            self.calls.append(tuple(block.shape))
        sigma = (0, self.sigma, self.sigma) if self.spatial_dims == 2 else self.sigma
        f = ndi.gaussian_filter(block.astype(np.float32) / 255.0, sigma, truncate=3.0, mode="reflect")
        return np.stack([f, 1.0 - f]).astype(np.float32)


class Slice2DPredictor(GaussianPredictor):
    spatial_dims = 2


class EdgeEffectPredictor(GaussianPredictor):
    """Not equivariant at its input edges: adds a bump near every edge of the block it is given."""

    def predict(self, block):
        out = super().predict(block)
        for axis in range(3):
            n = block.shape[axis]
            ramp = np.exp(-np.minimum(np.arange(n), np.arange(n)[::-1]) / 1.5).astype(np.float32)
            shape = [1, 1, 1]
            shape[axis] = n
            out = out + 0.3 * ramp.reshape(shape)[None]
        return out


class TinyTorchPredictor:
    """A two-layer 3x3 convolutional net (radius 2), deterministic weights."""

    spatial_dims = 2
    out_channels = 1
    channel_names = ["foreground"]
    halo = (0, 4, 4)

    def __init__(self):
        import torch

        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1)
        ).eval()

    def predict(self, block):
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(block.astype(np.float32) / 255.0)[:, None]
            return self.net(x).sigmoid()[:, 0][None].numpy()


@pytest.fixture
def raw(rng):
    return rng.integers(0, 256, size=(14, 40, 44)).astype(np.uint8)


def test_blockwise_equals_whole_volume(raw, tmp_path):
    pred = GaussianPredictor()
    result = predict_volume(pred, raw, tmp_path / "p.zarr",
                            PredictOptions(block_shape=(5, 16, 12), dtype="float16"))
    assert result.complete and result.blocks_total == 3 * 3 * 4
    whole = pred.predict(raw)
    stored = from_storage(open_prediction(tmp_path / "p.zarr")[...])
    assert stored.shape == whole.shape
    np.testing.assert_allclose(stored, whole, atol=1e-3)  # float16 storage
    # exact in float32, block by block
    np.testing.assert_array_equal(predict_region(pred, raw), whole)


def test_uint8_storage_rounds(raw, tmp_path):
    pred = GaussianPredictor()
    predict_volume(pred, raw, tmp_path / "p.zarr", PredictOptions(block_shape=(7, 20, 22)))
    arr = open_prediction(tmp_path / "p.zarr")
    assert arr.dtype == np.uint8 and arr.chunks == (1, 7, 20, 22)
    np.testing.assert_allclose(from_storage(arr[...]), pred.predict(raw), atol=0.5 / 255 + 1e-6)


def test_no_seams_at_block_borders(tmp_path):
    # a smooth ramp: any seam would show as a jump between neighbouring voxels at a block border
    z, y, x = np.meshgrid(np.arange(12), np.arange(48), np.arange(48), indexing="ij")
    raw = (2 * x + 3 * y + z).astype(np.uint8)
    pred = EdgeEffectPredictor(halo=(6, 6, 6))
    predict_volume(pred, raw, tmp_path / "p.zarr", PredictOptions(block_shape=(6, 16, 16), dtype="float16"))

    def jumps(path):
        dx = np.abs(np.diff(from_storage(open_prediction(path)[0]), axis=2))[:, 8:-8]
        near = dx[:, :, np.r_[12:20, 28:36]]  # around the x block borders at 16 and 32
        far = dx[:, :, 20:28]  # inside the middle block
        return near.max(), far.max()

    near, far = jumps(tmp_path / "p.zarr")
    assert near <= 1.5 * far + 2e-3
    # with too small a halo the same measure does see the seams (the test can fail)
    predict_volume(EdgeEffectPredictor(halo=(0, 0, 0)), raw, tmp_path / "q.zarr",
                   PredictOptions(block_shape=(6, 16, 16), dtype="float16"))
    near_bad, far_bad = jumps(tmp_path / "q.zarr")
    assert near_bad > 3 * far_bad


def test_tiles_blend_to_the_whole_prediction(rng):
    raw = rng.integers(0, 256, size=(30, 50, 60)).astype(np.uint8)
    pred = GaussianPredictor(halo=(6, 6, 6))  # radius 3 = halo / 2: exact after blending
    whole = pred.predict(raw)
    tiled = predict_region(pred, raw, tile_shape=(24, 26, 28))
    assert len(pred.calls) > 2
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    # with edge effects the cross-fade keeps the result close and smooth
    edgy = EdgeEffectPredictor(halo=(6, 6, 6))
    blended = predict_region(edgy, raw, tile_shape=(24, 26, 28))
    np.testing.assert_allclose(blended, edgy.predict(raw), atol=0.03)


def test_ramp_weights_sum_to_one_across_overlap():
    h = 8
    a = ramp_weights(40, h, False, True)
    b = ramp_weights(40, h, True, False)
    # tiles [0, 40) and [24, 64) overlap by 2h = 16
    total = np.zeros(64)
    total[:40] += a
    total[24:] += b
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert a[-h // 2:].max() == 0 and b[: h // 2].max() == 0


def test_2d_predictor_batches_slices(raw, tmp_path):
    pred = Slice2DPredictor(halo=(5, 6, 6))
    predict_volume(pred, raw, tmp_path / "p.zarr",
                   PredictOptions(block_shape=(7, 40, 44), tile_shape=(3, 40, 44), dtype="float16"))
    assert all(c[0] <= 3 for c in pred.calls) and max(c[0] for c in pred.calls) == 3
    assert all(c[1:] == (40, 44) for c in pred.calls)  # z halo ignored for 2D predictors
    stored = from_storage(open_prediction(tmp_path / "p.zarr")[...])
    np.testing.assert_allclose(stored, pred.predict(raw), atol=1e-3)


def test_memory_bounded_by_block(raw, tmp_path):
    pred = GaussianPredictor(halo=(2, 3, 3))
    predict_volume(pred, raw, tmp_path / "p.zarr", PredictOptions(block_shape=(4, 8, 8)))
    assert max(int(np.prod(c)) for c in pred.calls) <= (4 + 4) * (8 + 6) * (8 + 6)


def test_tta_averages_the_eight_transforms(rng):
    raw = rng.integers(0, 256, size=(4, 16, 16)).astype(np.uint8)

    class XGradient:
        spatial_dims = 2
        out_channels = 1
        channel_names = ["gx"]
        halo = (0, 0, 0)

        def predict(self, block):
            g = np.zeros(block.shape, np.float32)
            g[:, :, 1:] = np.diff(block.astype(np.float32), axis=2)
            return g[None]

    p = XGradient()
    expected = np.zeros((1, *raw.shape), np.float32)
    for k, flip in TTA_TRANSFORMS:
        x = np.rot90(raw, k, axes=(1, 2))
        x = x[:, :, ::-1] if flip else x
        y = p.predict(np.ascontiguousarray(x))
        y = y[..., ::-1] if flip else y
        expected += np.rot90(y, -k, axes=(2, 3))
    np.testing.assert_allclose(predict_array(p, raw, tta=True), expected / 8, atol=1e-5)
    # an isotropic filter is unchanged by TTA
    g = GaussianPredictor(halo=(0, 0, 0))
    np.testing.assert_allclose(predict_array(g, raw, tta=True), predict_array(g, raw), atol=1e-5)


def test_tta_combines_class_probabilities_by_their_mean_logits(rng):
    raw = rng.integers(0, 256, size=(3, 12, 12)).astype(np.uint8)

    class Directional:
        """Two-class softmax whose evidence depends on the x direction (so the views disagree)."""

        spatial_dims = 2
        out_channels = 2
        channel_names = ["membrane", "interior"]
        halo = (0, 0, 0)
        activation = "softmax"

        def predict(self, block):
            d = np.zeros(block.shape, np.float32)
            d[:, :, 1:] = np.diff(block.astype(np.float32), axis=2) / 20.0
            p = 1.0 / (1.0 + np.exp(-d))
            return np.stack([1 - p, p])

    pred = Directional()
    logit_sum = np.zeros(raw.shape, np.float64)
    prob_sum = np.zeros(raw.shape, np.float64)
    for k, flip in TTA_TRANSFORMS:
        x = np.rot90(raw, k, axes=(1, 2))
        x = x[:, :, ::-1] if flip else x
        y = pred.predict(np.ascontiguousarray(x)).astype(np.float64)
        y = y[..., ::-1] if flip else y
        y = np.rot90(y, -k, axes=(2, 3))
        logit_sum += np.log(y[1]) - np.log(y[0])
        prob_sum += y[1]
    expected = 1.0 / (1.0 + np.exp(-logit_sum / 8))
    out = predict_array(pred, raw, tta=True)
    np.testing.assert_allclose(out[1], expected, atol=1e-5)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    # not the plain mean of the probabilities
    assert np.abs(out[1] - prob_sum / 8).max() > 1e-3
    # sigmoid outputs: the sigmoid of the mean logit; a single confident channel stays finite
    pred.activation = "sigmoid"
    sig = predict_array(pred, raw, tta=True)
    assert np.isfinite(sig).all() and sig.min() >= 0 and sig.max() <= 1
    np.testing.assert_allclose(sig[1], expected, atol=1e-5)


def test_torch_predictor_blockwise_matches_whole(raw, tmp_path):
    pred = TinyTorchPredictor()
    predict_volume(pred, raw, tmp_path / "p.zarr", PredictOptions(block_shape=(5, 16, 16), dtype="float16"))
    stored = from_storage(open_prediction(tmp_path / "p.zarr")[...])
    np.testing.assert_allclose(stored, pred.predict(raw), atol=1e-3)


def test_interrupted_prediction_resumes_without_recomputing(raw, tmp_path):
    out = tmp_path / "p.zarr"
    pred = GaussianPredictor()
    blocks = list(Box.from_shape(raw.shape).blocks((7, 20, 22)))
    stop_after = 3
    done = []
    r1 = predict_volume(pred, raw, out, PredictOptions(block_shape=(7, 20, 22)),
                        progress=lambda d, t, s: done.append(d), should_stop=lambda: len(done) >= stop_after)
    assert not r1.complete and stop_after <= r1.blocks_done < len(blocks)  # blocks in flight finish
    assert r1.blocks_done == len(done)
    assert not out.exists() and partial_path(out).exists()
    with pytest.raises(WorkbenchError, match="incomplete"):
        open_prediction(out)
    with pytest.raises(WorkbenchError, match="--resume"):
        predict_volume(pred, raw, out, PredictOptions(block_shape=(7, 20, 22)))
    calls_before = len(pred.calls)
    r2 = predict_volume(pred, raw, out, PredictOptions(block_shape=(7, 20, 22), resume=True))
    assert r2.complete and r2.blocks_computed == len(blocks) - r1.blocks_done
    assert len(pred.calls) - calls_before == len(blocks) - r1.blocks_done
    assert not partial_path(out).exists()
    fresh = predict_volume(GaussianPredictor(), raw, tmp_path / "q.zarr",
                           PredictOptions(block_shape=(7, 20, 22)))
    np.testing.assert_array_equal(open_prediction(out)[...], open_prediction(fresh.path)[...])
    # a finished output is not recomputed or replaced without --overwrite
    with pytest.raises(WorkbenchError, match="exists"):
        predict_volume(pred, raw, out, PredictOptions(block_shape=(7, 20, 22)))
    calls_before = len(pred.calls)
    again = predict_volume(pred, raw, out, PredictOptions(block_shape=(7, 20, 22), resume=True))
    assert again.complete and again.blocks_computed == 0 and len(pred.calls) == calls_before
    assert predict_volume(pred, raw, out, PredictOptions(block_shape=(7, 20, 22), overwrite=True)).complete


def test_resume_refuses_a_different_layout(raw, tmp_path):
    out = tmp_path / "p.zarr"
    predict_volume(GaussianPredictor(), raw, out, PredictOptions(block_shape=(7, 20, 22)),
                   should_stop=lambda: True)
    with pytest.raises(WorkbenchError, match="cannot resume"):
        predict_volume(GaussianPredictor(), raw, out, PredictOptions(block_shape=(7, 10, 22), resume=True))
    with pytest.raises(WorkbenchError, match="cannot resume"):
        predict_volume(GaussianPredictor(), raw, out,
                       PredictOptions(block_shape=(7, 20, 22), resume=True, tta=True))


def test_ngff_metadata_and_progress(raw, tmp_path):
    class Bar:
        def __init__(self):
            self.n, self.total, self.postfix = 0, None, None

        def update(self, k):
            self.n += k

        def set_postfix(self, ordered_dict=None, refresh=True, **kw):
            self.postfix = {**(ordered_dict or {}), **kw}

    bar = Bar()
    vol = Volume(raw, voxel_size=(50, 4, 4), name="raw")
    predict_volume(GaussianPredictor(), vol, tmp_path / "p.zarr", PredictOptions(block_shape=(7, 20, 22)),
                   progress=bar)
    assert bar.n == bar.total == 2 * 2 * 2 and "vox_s" in bar.postfix and "eta" in bar.postfix
    attrs = json.loads((tmp_path / "p.zarr" / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 50.0, 4.0, 4.0]
    assert attrs["workbench"]["complete"] is True
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["smooth", "inverse"]
    assert not (tmp_path / "p.zarr" / "_blocks_done").exists()
    ch = open_prediction(tmp_path / "p.zarr", channel=1)
    assert ch.shape == raw.shape and ch.voxel_size == (50.0, 4.0, 4.0)
    # NGFF readers agree
    from ome_zarr_models.v04.image import Image

    Image.from_zarr(__import__("zarr").open_group(str(tmp_path / "p.zarr"), mode="r"))


def test_unreachable_scheduler_fails_fast_and_writes_nothing(raw, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(WorkbenchError, match="does not answer"):
        predict_volume(GaussianPredictor(), raw, tmp_path / "p.zarr",
                       PredictOptions(scheduler=f"tcp://127.0.0.1:{port}", scheduler_timeout=2))
    assert time.perf_counter() - t0 < 8
    assert list(tmp_path.iterdir()) == [] or all(p.name == "cache" for p in tmp_path.iterdir())


def test_threads_give_identical_results(raw, tmp_path):
    a = predict_volume(TinyTorchPredictor(), raw, tmp_path / "a.zarr",
                       PredictOptions(block_shape=(5, 16, 16), workers=1))
    b = predict_volume(TinyTorchPredictor(), raw, tmp_path / "b.zarr",
                       PredictOptions(block_shape=(5, 16, 16), workers=3))
    np.testing.assert_array_equal(open_prediction(a.path)[...], open_prediction(b.path)[...])


def test_auto_workers_measure_the_first_block_and_match_one_worker(raw, tmp_path):
    a = predict_volume(TinyTorchPredictor(), raw, tmp_path / "a.zarr",
                       PredictOptions(block_shape=(5, 16, 16), workers=1))
    seen = []
    b = predict_volume(TinyTorchPredictor(), raw, tmp_path / "b.zarr", PredictOptions(block_shape=(5, 16, 16)),
                       progress=lambda done, total, stats: seen.append(done))
    assert b.info["workers"] == auto_workers(b.info["block_memory_bytes"])
    assert b.blocks_computed == b.blocks_total == len(seen) and seen[-1] == b.blocks_total
    np.testing.assert_array_equal(open_prediction(a.path)[...], open_prediction(b.path)[...])


class TracedTinyTorchPredictor(TinyTorchPredictor):
    """The same net, exposed as ``model``: blockwise inference can bound a block's memory before running it."""

    @property
    def model(self):
        return self.net


def test_a_block_memory_bound_adds_every_layer_output():
    from workbench.inference.memory import block_bytes_bound, forward_bytes_per_voxel

    pred = TracedTinyTorchPredictor()
    assert forward_bytes_per_voxel(pred) == (4 + 4 + 1) * 4  # conv 1->4, ReLU, conv 4->1 in float32
    held = 10 * 20 * 20 * (4 + 4 + 2 * 4 + 4)
    assert block_bytes_bound(pred, (2, 20, 20), (10, 20, 20)) == 36 * 2 * 20 * 20 + held
    assert forward_bytes_per_voxel(TinyTorchPredictor()) is None  # no model to trace
    pred.net.train()
    assert forward_bytes_per_voxel(pred) is None  # a probe pass would change a training model's statistics


def test_blocks_start_one_per_core_when_their_bound_fits(raw, tmp_path, monkeypatch):
    import os

    from workbench.inference import executors

    a = predict_volume(TinyTorchPredictor(), raw, tmp_path / "a.zarr",
                       PredictOptions(block_shape=(5, 16, 16), workers=1))
    b = predict_volume(TracedTinyTorchPredictor(), raw, tmp_path / "b.zarr", PredictOptions(block_shape=(5, 16, 16)))
    cores = os.cpu_count() or 1
    if cores > 1:
        assert b.info["workers"] == cores and b.info["block_memory_bound_bytes"] > 0
        assert "block_memory_bytes" not in b.info  # nothing ran alone to be measured
    np.testing.assert_array_equal(open_prediction(a.path)[...], open_prediction(b.path)[...])
    monkeypatch.setattr(executors, "blocks_that_fit", lambda *_: 0)  # a bound too big: measure the first block
    c = predict_volume(TracedTinyTorchPredictor(), raw, tmp_path / "c.zarr", PredictOptions(block_shape=(5, 16, 16)))
    if cores > 1:
        assert "block_memory_bytes" in c.info and "block_memory_bound_bytes" not in c.info
    np.testing.assert_array_equal(open_prediction(a.path)[...], open_prediction(c.path)[...])


def test_auto_workers_fill_the_cores_within_memory():
    gb = 1 << 30
    assert auto_workers(2 * gb, cores=2, available=20 * gb) == 2
    assert auto_workers(2 * gb, cores=8, available=20 * gb) == 8
    assert auto_workers(2 * gb, cores=8, available=6 * gb) == 3  # 1 + 4.5 GB // 2 GB
    assert auto_workers(8 * gb, cores=8, available=4 * gb) == 1
    assert auto_workers(0, cores=1, available=gb) == 1


def test_workers_must_be_positive_or_auto(raw, tmp_path):
    with pytest.raises(WorkbenchError, match="workers"):
        predict_volume(GaussianPredictor(), raw, tmp_path / "p.zarr", PredictOptions(workers=0))


def test_fixed_shape_padding_gives_one_input_shape(raw, tmp_path):
    # compile=True pads border blocks so a compiled model sees a single input shape
    pred = GaussianPredictor(halo=(3, 3, 3))
    predict_volume(pred, raw, tmp_path / "p.zarr",
                   PredictOptions(block_shape=(5, 16, 16), compile=True, dtype="float16"))
    assert set(pred.calls) == {(5 + 6, 16 + 6, 16 + 6)}
    stored = from_storage(open_prediction(tmp_path / "p.zarr")[...])
    # interior voxels (farther than the halo from the volume border) are unchanged by the padding
    inner = (slice(None), slice(3, -3), slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(stored[inner], pred.predict(raw)[inner], atol=1e-3)


def test_slices_of_2d_predictors_are_computed_once(rng):
    raw = rng.integers(0, 256, size=(8, 20, 20)).astype(np.uint8)
    pred = Slice2DPredictor(halo=(0, 4, 4))
    out = predict_region(pred, raw, tile_shape=(3, 20, 20))
    assert [c[0] for c in pred.calls] == [3, 3, 2]
    np.testing.assert_allclose(out, pred.predict(raw), atol=1e-6)


def test_large_blocks_write_whole_chunks_of_their_own(rng, tmp_path):
    import zarr

    from workbench.inference import planner

    raw = rng.integers(0, 256, size=(3, 40, 48)).astype(np.uint8)
    pred = Slice2DPredictor(halo=(0, 4, 4))
    old = planner.CHUNK_MAX
    planner.CHUNK_MAX = 8
    try:
        predict_volume(pred, raw, tmp_path / "p.zarr",
                       PredictOptions(block_shape=(3, 16, 24), dtype="float16"))
    finally:
        planner.CHUNK_MAX = old
    arr = zarr.open_array(str(tmp_path / "p.zarr" / "0"), mode="r")
    assert arr.chunks == (1, 3, 8, 8)
    np.testing.assert_allclose(from_storage(arr[...]), pred.predict(raw), atol=1e-3)
    assert planner.chunk_shape((8, 2048, 2048)) == (8, 1024, 1024)
    assert planner.chunk_shape((8, 1500, 2048)) == (8, 1500, 1024)


def test_2d_tiles_cover_a_block_and_its_halo_in_one_call_or_equal_parts():
    from workbench.inference.compute import TILE_2D_MAX, default_tile_shape
    from workbench.inference.planner import default_block_shape

    pred = Slice2DPredictor(halo=(0, 48, 48))
    block = default_block_shape(pred, (100, 8192, 8192))
    assert block == (8, 2048, 2048)
    assert default_tile_shape(pred, (8, 2144, 2144)) == (1, 2144, 2144)
    # a read region above the cap: the fewest equal tiles, overlapping by exactly 2 halo
    z, y, x = default_tile_shape(pred, (8, 4192, 2144))
    assert (y, x) == (2144, 2144) and y <= TILE_2D_MAX


def test_3d_tiles_never_split_below_four_halos():
    """A 3D model's block (the unet3d's: halo 17 x 48 x 48) is tiled only where the blend has room; predicting
    it through the real tiling works (it raised when a yx edge was halved below 4 halos)."""
    from workbench.inference.compute import DEFAULT_TILE_VOXELS, default_tile_shape
    from workbench.inference.tiling import predict_region

    pred = GaussianPredictor(halo=(17, 48, 48))
    assert default_tile_shape(pred, (98, 352, 352)) == (98, 352, 352)  # no axis can be halved: one tile
    tile = default_tile_shape(pred, (98, 800, 800))
    assert tile == (98, 200, 200) and all(t >= 4 * h for t, h in zip(tile[1:], (48, 48)))
    small = GaussianPredictor(halo=(2, 4, 4))
    assert np.prod(default_tile_shape(small, (64, 512, 512))) <= DEFAULT_TILE_VOXELS
    data = np.random.default_rng(0).integers(0, 255, (40, 200, 420)).astype(np.uint8)
    out = predict_region(pred, data, default_tile_shape(pred, data.shape))
    assert out.shape == (2, 40, 200, 420) and np.isfinite(out).all()


def test_predict_options_are_checked_once_with_one_line_errors():
    from workbench.inference import StorageDtype

    opts = PredictOptions(block_shape=[4, 8, 8], dtype="FLOAT16", workers=2)
    assert opts.block_shape == (4, 8, 8) and opts.dtype is StorageDtype.FLOAT16 and opts.local
    assert not PredictOptions(scheduler="tcp://127.0.0.1:1").local
    for kwargs, words in [
        ({"block_shape": (4, 8)}, "block shape"),
        ({"block_shape": (4, 0, 8)}, "block shape"),
        ({"tile_shape": (1, -1, 8)}, "tile shape"),
        ({"dtype": "float23"}, "did you mean 'float16'"),
        ({"workers": "many"}, "workers"),
        ({"torch_threads": 0}, "torch threads"),
        ({"scheduler_timeout": 0}, "scheduler timeout"),
    ]:
        with pytest.raises(WorkbenchError, match=words) as err:
            PredictOptions(**kwargs)
        assert "\n" not in str(err.value)


def test_planner_blocks_halos_grid_and_resume():
    from workbench.inference.planner import plan_blocks

    pred = Slice2DPredictor(halo=(3, 5, 5))
    pred.divisor = (2, 4, 4)
    plan = plan_blocks(pred, (10, 40, 30), (4, 16, 16))
    assert plan.halo == (0, 5, 5) and plan.divisor == (1, 4, 4)  # no z context for 2D predictors
    blocks = plan.blocks()
    assert len(blocks) == plan.n_blocks == 3 * 3 * 2
    for b in blocks:
        assert b.read.contains(b.core) and b.input == b.read and b.padding == [(0, 0)] * 3
        assert all(s % d == 0 for s, d in zip(b.read.start, plan.divisor))  # reads start on the model's grid
        assert Box.from_shape(plan.shape).contains(b.read)
    b = next(b for b in blocks if b.index == (1, 1, 1))
    assert b.core == Box((4, 16, 16), (4, 16, 14)) and b.read == Box.from_bounds((4, 8, 8), (8, 37, 30))
    done = {blocks[0].index, blocks[5].index}
    assert [x.index for x in plan.todo(done)] == [x.index for x in blocks if x.index not in done]
    # fixed input shape (compiled models): border blocks are padded to block + 2 halo
    fixed = plan_blocks(pred, (10, 40, 30), (4, 16, 16), fixed=True)
    assert {x.input.shape for x in fixed.blocks()} == {(4, 26, 26)}
    last = fixed.blocks()[-1]
    assert last.core == Box.from_bounds((8, 32, 16), (10, 40, 30)) and last.padding == [(0, 2), (0, 13), (0, 7)]


def test_predict_slice_matches_the_volume_prediction(raw):
    from workbench.inference import predict_slice

    pred2d = Slice2DPredictor(halo=(0, 4, 4))
    one = predict_slice(pred2d, raw, 5)
    assert pred2d.calls == [(1, *raw.shape[1:])]  # one slice read for a 2D model
    np.testing.assert_allclose(one, pred2d.predict(raw)[:, 5], atol=1e-6)
    pred3d = GaussianPredictor(halo=(3, 3, 3))
    whole = predict_region(pred3d, raw)
    one = predict_slice(pred3d, raw, 6)  # z context of the halo: exact for a blur of radius 3
    np.testing.assert_allclose(one, whole[:, 6], atol=1e-6)
    assert pred3d.calls[-1][0] == 7
    tta = predict_slice(pred2d, raw, 0, tta=True)
    np.testing.assert_allclose(tta, predict_array(pred2d, raw[:1], tta=True)[:, 0], atol=1e-6)
    with pytest.raises(IndexError):
        predict_slice(pred2d, raw, raw.shape[0])
