"""Uncertainty written with a prediction (``OUT.zarr/uncertainty``) and shown in Neuroglancer with the
suggestion boxes: equal to :mod:`workbench.inference.uncertainty`, the same on threads, Dask and resume."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage as ndi

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.inference import PredictOptions, open_prediction, open_uncertainty, predict_volume, read_info
from workbench.inference.output import has_uncertainty
from workbench.inference.uncertainty import predict_with_uncertainty
from workbench.suggestions import Suggestion, read_suggestions, write_suggestions


class SmoothPredictor:
    """Two softmax classes from a blur (translation-equivariant, radius 3): the same in every orientation."""

    spatial_dims = 3
    out_channels = 2
    channel_names = ["bright", "dark"]
    activation = "softmax"
    halo = (6, 6, 6)

    def predict(self, block):
        f = ndi.gaussian_filter(block.astype(np.float32) / 255.0, 1.0, truncate=3.0, mode="reflect")
        return np.stack([f, 1.0 - f]).astype(np.float32)


class EdgeXPredictor(SmoothPredictor):
    """Sees orientation: class 1 where the image gets brighter along x (so rotated views disagree)."""

    def predict(self, block):
        f = ndi.gaussian_filter(block.astype(np.float32) / 255.0, 1.0, truncate=3.0, mode="reflect")
        d = ndi.correlate1d(f, [-1.0, 0.0, 1.0], axis=2, mode="reflect")
        p = 1.0 / (1.0 + np.exp(-40.0 * d))
        return np.stack([p, 1.0 - p]).astype(np.float32)


@pytest.fixture
def raw():
    rng = np.random.default_rng(3)
    return ndi.gaussian_filter(rng.integers(0, 255, (10, 40, 36)).astype(np.float32), 1.5).astype(np.uint8)


def _opts(**kw):
    return PredictOptions(**{"block_shape": (5, 20, 18), "workers": 1, **kw})


def test_entropy_written_equals_the_uncertainty_module(raw, tmp_path):
    res = predict_volume(SmoothPredictor(), raw, tmp_path / "p.zarr", _opts(uncertainty="entropy", dtype="float16"))
    assert res.info["uncertainty"] == "entropy" and read_info(res.path)["uncertainty"] == "entropy"
    _, expected = predict_with_uncertainty(SmoothPredictor(), raw, "entropy")
    unc = open_uncertainty(res.path)
    assert unc.shape == raw.shape and unc.dtype == np.float32 and unc.name == "uncertainty (entropy)"
    assert expected.max() > 0.5  # not trivially zero
    np.testing.assert_allclose(unc[...], expected, atol=1e-3)
    # the layout: an NGFF (z, y, x) image naming its measure, in the prediction's chunks
    group = zarr.open_group(str(res.path / "uncertainty"), mode="r")
    assert group.attrs["workbench"] == {"kind": "uncertainty", "measure": "entropy", "storage_dtype": "float16"}
    assert [a["name"] for a in group.attrs["multiscales"][0]["axes"]] == ["z", "y", "x"]
    assert group["0"].chunks == open_prediction(res.path).chunks[1:]


def test_uint8_uncertainty_is_stored_like_the_probabilities(raw, tmp_path):
    res = predict_volume(SmoothPredictor(), raw, tmp_path / "p.zarr", _opts(uncertainty="entropy"))
    stored = open_uncertainty(res.path, stored=True)
    assert stored.dtype == np.uint8
    _, expected = predict_with_uncertainty(SmoothPredictor(), raw, "entropy")
    assert np.abs(stored[...] / 255.0 - expected).max() <= 0.5 / 255 + 1e-5


def test_disagreement_written_equals_the_views_and_keeps_the_tta_probabilities(raw, tmp_path):
    res = predict_volume(EdgeXPredictor(), raw, tmp_path / "d.zarr",
                         _opts(uncertainty="disagreement", tta=True, dtype="float16"))
    _, expected = predict_with_uncertainty(EdgeXPredictor(), raw, "disagreement")
    assert expected.max() > 0.2  # the views disagree somewhere
    np.testing.assert_allclose(open_uncertainty(res.path)[...], expected, atol=1e-3)
    plain = predict_volume(EdgeXPredictor(), raw, tmp_path / "t.zarr", _opts(tta=True, dtype="float16"))
    np.testing.assert_array_equal(open_prediction(res.path)[...], open_prediction(plain.path)[...])


def test_uncertainty_is_off_by_default_and_disagreement_needs_tta(raw, tmp_path):
    res = predict_volume(SmoothPredictor(), raw, tmp_path / "p.zarr", _opts())
    assert "uncertainty" not in read_info(res.path) and not (res.path / "uncertainty").exists()
    assert has_uncertainty(res.path) is None
    with pytest.raises(WorkbenchError, match="has no uncertainty"):
        open_uncertainty(res.path)
    with pytest.raises(WorkbenchError, match="add --tta"):
        PredictOptions(uncertainty="disagreement")
    with pytest.raises(WorkbenchError, match="did you mean 'entropy'"):
        PredictOptions(uncertainty="entropi")


def test_threads_dask_and_resume_write_identical_uncertainty(raw, tmp_path):
    distributed = pytest.importorskip("distributed")
    one = predict_volume(SmoothPredictor(), raw, tmp_path / "one.zarr", _opts(uncertainty="entropy"))
    two = predict_volume(SmoothPredictor(), raw, tmp_path / "two.zarr", _opts(uncertainty="entropy", workers=2))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        dask = predict_volume(SmoothPredictor(), raw, tmp_path / "dask.zarr",
                              _opts(uncertainty="entropy", scheduler=client))
    calls = []
    stopped = predict_volume(SmoothPredictor(), raw, tmp_path / "res.zarr", _opts(uncertainty="entropy"),
                             should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert not stopped.complete
    with pytest.raises(WorkbenchError, match="cannot resume: .* uncertainty entropy, this one none"):
        predict_volume(SmoothPredictor(), raw, tmp_path / "res.zarr", _opts(resume=True))
    resumed = predict_volume(SmoothPredictor(), raw, tmp_path / "res.zarr", _opts(uncertainty="entropy", resume=True))
    assert resumed.complete and 0 < resumed.blocks_computed < resumed.blocks_total
    ref = open_uncertainty(one.path, stored=True)[...]
    assert ref.max() > 100
    for other in (two, dask, resumed):
        np.testing.assert_array_equal(open_uncertainty(other.path, stored=True)[...], ref)
        np.testing.assert_array_equal(open_prediction(other.path)[...], open_prediction(one.path)[...])


# ---------------------------------------------------------------- the CLI on a real (tiny) run
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tiny_training import TINY_UNET, tiny_training_data

    from workbench.training import AugmentConfig, TrainConfig, Trainer

    train_raw, labels = tiny_training_data()
    d = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(arch="unet2d", arch_options=TINY_UNET, iterations=2, batch_size=1, patch_shape=[1, 32, 32],
                      augment=AugmentConfig.none(), device="cpu", prefetch=0)
    Trainer(cfg, train_raw, labels, d).run()
    return d


def test_predict_cli_writes_the_uncertainty(run_dir, raw, tmp_path, capsys):
    from workbench.training import load_run

    tifffile.imwrite(tmp_path / "raw.tif", raw)
    out = tmp_path / "pred.zarr"
    code = main(["predict", "--model", str(run_dir), "--raw", str(tmp_path / "raw.tif"), "--out", str(out),
                 "--block", "5", "40", "36", "--uncertainty", "entropy", "--no-progress", "--precision", "fp32"])
    assert code == 0, capsys.readouterr().err
    assert "uncertainty: entropy" in capsys.readouterr().out
    _, expected = predict_with_uncertainty(load_run(run_dir, device="cpu", precision="fp32"), raw, "entropy")
    assert np.abs(open_uncertainty(out)[...] - expected).max() <= 1.5 / 255


def test_predict_cli_refuses_disagreement_without_tta(tmp_path, capsys):
    code = main(["predict", "--model", str(tmp_path / "none"), "--raw", str(tmp_path / "none.tif"),
                 "--out", str(tmp_path / "p.zarr"), "--uncertainty", "disagreement", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "add --tta" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- Neuroglancer
def test_suggestion_layer_boxes_are_zyx_voxels_with_rank_and_score():
    from workbench.viewer import add_suggestion_layer, new_state, state_to_json

    state = new_state((40.0, 4.0, 4.0), (10, 64, 64))
    found = [Suggestion(3, 20, 30, (3, 8, 18, 4, 32, 42), 0.8123), Suggestion(7, 50, 10, (7, 38, 0, 8, 62, 24), 0.5)]
    assert add_suggestion_layer(state, "suggestions", found, (40.0, 4.0, 4.0)) == ["suggestion-1", "suggestion-2"]
    layer = state_to_json(state)["layers"][0]
    assert layer["type"] == "annotation" and layer["name"] == "suggestions"
    # the layer's axes are z, y, x in the viewer's units (m), one unit = one voxel
    dims = layer["source"][0]["transform"]["outputDimensions"]
    assert list(dims) == ["z", "y", "x"] and [v[0] for v in dims.values()] == pytest.approx([40e-9, 4e-9, 4e-9])
    first, second = layer["annotations"]
    assert first["type"] == "axis_aligned_bounding_box"
    assert first["pointA"] == [3, 8, 18] and first["pointB"] == [4, 32, 42]
    assert second["pointA"] == [7, 38, 0] and second["pointB"] == [8, 62, 24]
    assert first["description"] == "#1 score 0.812" and first["props"] == [1, pytest.approx(0.8123)]
    assert [p["id"] for p in layer["annotationProperties"]] == ["rank", "score"]


@pytest.fixture
def shown(raw, tmp_path):
    """A raw tif, its prediction with uncertainty and a suggestions file."""
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    predict_volume(SmoothPredictor(), raw, tmp_path / "pred.zarr", _opts(uncertainty="entropy"))
    write_suggestions([Suggestion(2, 10, 12, (2, 4, 6, 3, 16, 18), 0.9)], tmp_path / "s.json")
    return tmp_path


def _args(d, **kw):
    base = dict(src=str(d / "raw.tif"), labels=None, pred=None, seg=None, suggestions=None, voxel_size=None, port=0,
                bind="127.0.0.1", layout=None)
    return argparse.Namespace(**{**base, **kw})


def test_view_shows_the_uncertainty_and_the_suggestions(shown):
    from workbench.commands.view import build_viewer
    from workbench.viewer.state import state_to_json

    viewer, _ = build_viewer(_args(shown, pred=str(shown / "pred.zarr"), suggestions=str(shown / "s.json")))
    try:
        assert viewer.layer_names() == ["raw", "prob: class 1", "prob: class 2", "uncertainty", "suggestions"]
        layers = {layer["name"]: layer for layer in state_to_json(viewer.viewer.state)["layers"]}
        unc = layers["uncertainty"]
        assert unc["visible"] is False and "colormapJet" in unc["shader"]
        assert "range=[0, 255]" in unc["shader"]  # uint8 storage: 0..255 is 0..1
        served = viewer._sources["uncertainty"]  # the stored uint8 array, served lazily
        assert tuple(served.shape) == (10, 40, 36) and served.data_type == "uint8" and served.volume_type == "image"
        box = layers["suggestions"]["annotations"][0]
        assert box["pointA"] == [2, 4, 6] and box["pointB"] == [3, 16, 18] and box["description"] == "#1 score 0.900"
    finally:
        viewer.close()


def test_view_without_uncertainty_adds_no_layer(raw, tmp_path):
    from workbench.commands.view import build_viewer

    tifffile.imwrite(tmp_path / "raw.tif", raw)
    predict_volume(SmoothPredictor(), raw, tmp_path / "pred.zarr", _opts())
    viewer, _ = build_viewer(_args(tmp_path, pred=str(tmp_path / "pred.zarr")))
    try:
        assert "uncertainty" not in viewer.layer_names()
    finally:
        viewer.close()


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"),
    ('{"z": 1}', "expected a JSON list"),
    ('[{"z": 1, "y": 2, "x": 3, "box": [1, 0, 0, 2, 4, 4]}]', "entry 1 has no 'score'"),
    ('[{"z": 1, "y": 2, "x": 3, "box": [1, 0, 0], "score": 1}]', "box must be"),
    ('[{"z": 1, "y": 2, "x": 3, "box": [1, 0, 0, 2, 4, "a"], "score": 1}]', "must be numbers"),
    ('[{"z": 1, "y": 2, "x": 3, "box": [1, 0, 0, 2, 400, 4], "score": 1}]', "outside the volume"),
])
def test_bad_suggestion_files_are_one_line_errors_naming_the_file(shown, text, message, capsys):
    bad = shown / "bad.json"
    bad.write_text(text)
    with pytest.raises(WorkbenchError, match=message) as err:
        read_suggestions(bad, shape=(10, 40, 36))
    assert str(err.value).startswith(str(bad)) and "\n" not in str(err.value)
    code = main(["view", str(shown / "raw.tif"), "--suggestions", str(bad), "--no-wait"])
    out = capsys.readouterr()
    assert code == 2 and str(bad) in out.err and message in out.err and "Neuroglancer" not in out.out


def test_the_app_suggestions_feed_the_live_viewer(tmp_path):
    from widgets._common import StatusLine
    from widgets.assist import AssistPanel
    from widgets.context import AppContext
    from workbench.project import Project

    class Viewer:
        def __init__(self):
            self.calls = []

        def set_suggestions(self, found):
            self.calls.append(("boxes", [s.box for s in found]))

        def go_to(self, position):
            self.calls.append(("go", tuple(position)))

        def close(self):
            pass

    project = Project.create(tmp_path / "ws" / "demo", raw=np.zeros((4, 32, 32), np.uint8))
    ctx = AppContext(project, workspace=tmp_path / "ws")
    try:
        panel = AssistPanel(ctx, StatusLine("annotate"), lambda: 0, lambda z: None, lambda: None)
        panel.suggestions = [Suggestion(2, 10, 12, (2, 4, 6, 3, 16, 18), 0.9)]
        panel.show_in_viewer()  # no viewer yet: nothing to do
        ctx._viewer = viewer = Viewer()
        panel.show_in_viewer()
        panel.select(0)
        assert viewer.calls == [("boxes", [(2, 4, 6, 3, 16, 18)]), ("go", (2, 10, 12))]
    finally:
        ctx.shutdown()
