"""Models from files: export -> import round trips, fine-tunes from them, and the files that are refused."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch
import yaml
from tiny_training import TINY_UNET, tiny_training_data

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.models.imports import open_model
from workbench.training import TrainConfig, Trainer
from workbench.training.export import export_run
from workbench.training.imported import TorchScriptPredictor, load_model

TINY = dict(arch="unet2d", arch_options=dict(TINY_UNET), batch_size=2, patch_shape=[1, 16, 16],
            log_every=1, val_every=2, checkpoint_seconds=3600, warmup=2, device="cpu", val_slices=[2],
            bn_recalibration=False)


def _data(shape=(3, 32, 36), seed=0, classes=2):
    return tiny_training_data(shape, seed, classes)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained unet2d run (validation on slice 2, no BatchNorm recalibration) and its three exports."""
    d = tmp_path_factory.mktemp("run")
    raw, labels = _data()
    Trainer(TrainConfig(iterations=4, **TINY), raw, labels, d / "run").run()
    files = {"bioimageio": d / "model.zip", "torchscript": d / "model.pt", "onnx": d / "model.onnx"}
    for fmt, out in files.items():
        export_run(d / "run", fmt, out)
    return d / "run", files


@pytest.mark.parametrize("fmt", ["bioimageio", "torchscript", "onnx", "checkpoint"])
def test_export_then_import_predicts_what_the_run_predicts(run, fmt):
    run_dir, files = run
    src = run_dir / "checkpoint.pt" if fmt == "checkpoint" else files[fmt]
    raw, _ = _data((2, 40, 52), seed=5)  # not a multiple of the down-sampling: padded alike
    expected = load_model(run_dir, device="cpu").predict(raw)
    predictor = load_model(src, device="cpu")
    got = predictor.predict(raw)
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5
    assert predictor.channel_names == ["class 1", "class 2"] and predictor.run_dir is None
    assert open_model(src).format == ("checkpoint" if fmt == "checkpoint" else fmt)


@pytest.mark.parametrize("fmt", ["bioimageio", "torchscript", "onnx"])
def test_a_fine_tune_from_an_export_starts_where_the_run_left_off(run, tmp_path, fmt):
    run_dir, files = run
    raw, labels = _data()
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if "val_loss" in line][-1]
    fine = Trainer(TrainConfig(iterations=2, init=str(files[fmt]), **TINY), raw, labels, tmp_path / "fine")
    assert "all weights kept" in fine.init_weights.note
    fine.run()
    first = json.loads((tmp_path / "fine" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["iteration"] == 0 and first["val_loss"] == pytest.approx(last["val_loss"], abs=1e-5)


def test_predict_command_with_the_zip_equals_the_run_within_one_level(run, tmp_path, capsys):
    import tifffile
    import zarr

    run_dir, files = run
    raw, _ = _data((2, 40, 52), seed=7)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    outs = {}
    for name, model in (("run", run_dir), ("zip", files["bioimageio"])):
        out = tmp_path / f"{name}.zarr"
        assert main(["predict", "--model", str(model), "--raw", str(tmp_path / "raw.tif"), "--out", str(out),
                     "--device", "cpu", "--no-progress"]) == 0
        outs[name] = zarr.open(str(out / "0"), mode="r")[:].astype(int)
    assert np.abs(outs["run"] - outs["zip"]).max() <= 1


def test_another_number_of_classes_reinitialises_the_head_with_a_note(run, tmp_path):
    raw, labels = _data(classes=3)
    fine = Trainer(TrainConfig(iterations=1, init=str(run[1]["bioimageio"]), **TINY), raw, labels, tmp_path / "fine")
    assert "output head re-initialised for 3 channels" in fine.init_weights.note
    assert "the model predicted 2 channels (class 1, class 2)" in fine.init_weights.note


def test_train_init_takes_the_models_architecture_and_options(run, tmp_path, capsys):
    import tifffile

    raw, labels = _data()
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    assert main(["train", "--raw", str(tmp_path / "raw.tif"), "--labels", str(tmp_path / "labels.tif"), "--init",
                 str(run[1]["torchscript"]), "--out", str(tmp_path / "fine"), "--iterations", "1", "--batch", "2",
                 "--patch", "1", "16", "16", "--device", "cpu", "--no-progress"]) == 0
    assert "all weights kept" in capsys.readouterr().err
    assert json.loads((tmp_path / "fine" / "config.json").read_text())["arch_options"]["base_channels"] == 4


# -- what does not fit ----------------------------------------------------------------------------------------------
def test_models_that_do_not_fit_say_what_would(run, tmp_path):
    raw, labels = _data()
    with pytest.raises(WorkbenchError, match="is 2D .*train with a 2D architecture"):
        Trainer(TrainConfig(**{**TINY, "arch": "unet3d", "arch_options": {}, "patch_shape": [2, 16, 16]},
                            iterations=1, init=str(run[0])), raw, labels, tmp_path / "a")
    with pytest.raises(WorkbenchError, match="--option base_channels=4"):
        Trainer(TrainConfig(**{**TINY, "arch_options": {"depth": 2, "base_channels": 8}}, iterations=1,
                            init=str(run[0])), raw, labels, tmp_path / "b")
    # a network with three input channels, as a state dict beside its config.json
    from workbench.models import build_model

    d = tmp_path / "rgb"
    d.mkdir()
    torch.save(build_model("unet2d", 3, 2, depth=2, base_channels=4).state_dict(), d / "weights.pt")
    (d / "config.json").write_text(json.dumps({"arch": "unet2d", "arch_options": {"depth": 2, "base_channels": 4}}))
    with pytest.raises(WorkbenchError, match="takes 3 input channels; EM raw volumes have 1"):
        Trainer(TrainConfig(iterations=1, init=str(d / "weights.pt"), **TINY), raw, labels, tmp_path / "c")
    with pytest.raises(WorkbenchError, match="takes 3 input channels"):
        load_model(d / "weights.pt", device="cpu")


def test_a_foreign_torchscript_network_runs_with_the_volumes_normalisation(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)

        def forward(self, x):
            return torch.softmax(self.conv(x), dim=1)

    torch.jit.script(Net()).save(str(tmp_path / "net.pt"))
    raw, _ = _data()
    predictor = load_model(tmp_path / "net.pt", device="cpu", raw=raw)
    assert isinstance(predictor, TorchScriptPredictor) and predictor.spatial_dims == 2 and predictor.out_channels == 3
    out = predictor.predict(raw)
    assert out.shape == (3, *raw.shape) and np.allclose(out.sum(0), 1, atol=1e-5)
    import cloudpickle  # Dask workers get it pickled

    assert np.array_equal(cloudpickle.loads(cloudpickle.dumps(predictor)).predict(raw), out)


# -- what is refused --------------------------------------------------------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    _Payload.marker = marker
    torch.save({"arch": "unet2d", "model": payload}, tmp_path / "evil.pt")
    with pytest.raises(WorkbenchError, match="refused: the file's pickle holds Python objects"):
        open_model(tmp_path / "evil.pt")
    raw, labels = _data()
    with pytest.raises(WorkbenchError, match="refused"):
        Trainer(TrainConfig(iterations=1, init=str(tmp_path / "evil.pt"), **TINY), raw, labels, tmp_path / "r")
    import tifffile

    tifffile.imwrite(tmp_path / "x.tif", raw, photometric="minisblack")
    assert main(["predict", "--model", str(tmp_path / "evil.pt"), "--raw", str(tmp_path / "x.tif"), "--out",
                 str(tmp_path / "o.zarr")]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()


def test_a_zip_with_paths_leaving_its_folder_is_refused(run, tmp_path, capsys):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(run[1]["bioimageio"]) as src, zipfile.ZipFile(evil, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("../outside.txt", "x")
    with pytest.raises(WorkbenchError, match=r"refused: zip member '\.\./outside\.txt' leaves the package folder"):
        open_model(evil)
    assert main(["train", "--raw", "x", "--labels", "y", "--init", str(evil), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "leaves the package folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "outside.txt").exists()


def test_a_package_failing_validation_is_refused(run, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(run[1]["bioimageio"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "rdf.yaml":
                rdf = yaml.safe_load(data)
                rdf["weights"]["pytorch_state_dict"]["sha256"] = "0" * 64  # the weights are not the ones described
                data = yaml.safe_dump(rdf).encode()
            dst.writestr(name, data)
    with pytest.raises(WorkbenchError, match="refused: the package's rdf.yaml fails validation"):
        open_model(bad)


def test_missing_and_unreadable_model_files(tmp_path):
    with pytest.raises(WorkbenchError, match="no such model file"):
        open_model(tmp_path / "nothing.zip")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(WorkbenchError, match="not a readable torch file"):
        open_model(tmp_path / "junk.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="not a training run folder"):
        load_model(tmp_path / "empty")
