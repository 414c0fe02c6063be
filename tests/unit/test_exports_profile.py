"""Results out of the workbench (``workbench.exports``), the app's scores (``metrics.evaluate_run``) and model
profiles (``workbench.models.profile``): the science the app's panels call."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from workbench.errors import WorkbenchError

VOXEL = (40.0, 8.0, 8.0)


class BrightIsClassTwo:
    """Channel 0 (membrane) for dark voxels, channel 1 (interior) for bright ones."""

    spatial_dims = 3
    out_channels = 2
    channel_names = ["membrane", "interior"]
    halo = (0, 0, 0)

    def predict(self, block):
        p = (block.astype(np.float32) > 127).astype(np.float32)
        return np.stack([1 - p, p])


@pytest.fixture
def raw():
    from workbench.io.volume import Volume

    data = np.zeros((4, 16, 16), np.uint8)
    data[:, 4:12, 4:12] = 200
    return Volume(data, voxel_size=VOXEL, name="raw", source="")


@pytest.fixture
def prediction(raw, tmp_path):
    from workbench.inference import predict_volume

    out = tmp_path / "pred.zarr"
    predict_volume(BrightIsClassTwo(), raw, out)
    return out


def test_class_map_of_a_stored_prediction(prediction, raw):
    from workbench.inference import prediction_class_map

    cmap = prediction_class_map(prediction)  # lazy
    assert cmap.shape == raw.shape and cmap.dtype == np.uint8 and hasattr(cmap, "compute")
    np.testing.assert_array_equal(np.asarray(cmap), np.where(raw.read() > 127, 2, 1))


@pytest.mark.parametrize("name", ["c.tif", "c.ome.zarr"])
def test_export_classes_round_trips_with_voxel_size(prediction, raw, tmp_path, name):
    from workbench.exports import export_classes
    from workbench.io import open_volume

    path = export_classes(prediction, tmp_path / "out" / name if name.endswith("zarr") else tmp_path / name)
    vol = open_volume(str(path))
    assert vol.voxel_size == VOXEL
    np.testing.assert_array_equal(vol.read(), np.where(raw.read() > 127, 2, 1))
    assert not list(tmp_path.glob("*.partial"))
    assert export_classes(prediction, path) == path  # an existing export is replaced


def test_export_classes_errors(prediction, tmp_path):
    from workbench.exports import export_classes

    with pytest.raises(WorkbenchError, match="class maps are written as"):
        export_classes(prediction, tmp_path / "c.png")
    with pytest.raises(WorkbenchError, match="predict the volume first"):
        export_classes(tmp_path / "missing.zarr", tmp_path / "c.tif")


def test_export_model_of_a_forest_is_the_run_folder(tmp_path):
    from workbench.exports import export_model

    run = tmp_path / "runs" / "forest-1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "forest"}))
    (run / "forest.joblib").write_bytes(b"x")
    path = export_model(run, tmp_path / "exports")
    assert path == tmp_path / "exports" / "forest-1-model.zip"
    assert {n.lstrip("./") for n in zipfile.ZipFile(path).namelist()} >= {"config.json", "forest.joblib"}
    with pytest.raises(WorkbenchError, match="not a training run"):
        export_model(tmp_path, tmp_path / "exports")


def test_evaluate_run_scores_the_prediction_against_the_truth(raw, tmp_path):
    from workbench.inference import predict_volume
    from workbench.metrics import evaluate_run
    from workbench.project import Project

    truth = np.where(raw.read() > 127, 2, 1).astype(np.uint8)
    truth[0, 0, :4] = 2  # 4 wrong voxels
    p = Project.create(tmp_path / "p", raw=raw, truth=truth)
    assert evaluate_run(p, "run-1") == {}  # nothing predicted yet
    predict_volume(BrightIsClassTwo(), raw, p.prediction_path("run-1"))
    res = evaluate_run(p, "run-1")
    assert set(res) == {"classes"}  # no segmentation, no instance truth
    assert res["classes"]["pixel_error"] == pytest.approx(4 / truth.size)
    assert Project.create(tmp_path / "q", raw=raw) and evaluate_run(Project.open(tmp_path / "q"), "run-1") == {}


def test_profile_model():
    from workbench.models import count_flops, get_architecture, profile_model

    opts = {"depth": 2, "base_channels": 4}
    prof = profile_model("unet2d", patch=(1, 32, 32), options=opts, repeats=1)
    assert prof.name == "unet2d" and prof.patch == (1, 32, 32)
    assert prof.parameters == get_architecture("unet2d").parameter_count(**opts) > 0
    assert prof.flop_per_voxel * 32 * 32 == pytest.approx(prof.gflop * 1e9)
    assert prof.forward_s > 0 and prof.train_patches_per_s == pytest.approx(1 / (3 * prof.forward_s))
    assert count_flops("unet2d", (1, 64, 64), opts) == pytest.approx(4 * count_flops("unet2d", (1, 32, 32), opts))
    quick = profile_model(get_architecture("unet3d"), speed=False)
    assert quick.forward_s is None and quick.train_patches_per_s is None and quick.gflop > 0
    with pytest.raises(WorkbenchError, match="not a network"):
        profile_model("forest")


def test_architecture_panel_speed_comes_from_the_profile(monkeypatch):
    from widgets.architecture import measure_speed
    from workbench.models import ModelProfile, get_architecture

    seen = {}

    def fake(info, repeats=2, **kw):
        seen["repeats"] = repeats
        return ModelProfile(info.name, (1, 8, 8), 10, 2.5, 1.0, forward_s=0.1, train_patches_per_s=3.3)

    monkeypatch.setattr("workbench.models.profile_model", fake)
    assert measure_speed(get_architecture("unet2d"), repeats=5) == {"forward_s": 0.1, "train_patches_per_s": 3.3,
                                                                    "gflop": 2.5}
    assert seen == {"repeats": 5} and measure_speed(get_architecture("forest")) == {}
