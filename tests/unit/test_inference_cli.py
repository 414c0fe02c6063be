"""``workbench predict`` end to end on a real (tiny, two-iteration) training run, and its one-line errors."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import tifffile

from workbench.cli import main
from workbench.inference import PredictOptions, open_prediction, predict_volume
from workbench.inference.output import from_storage


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from workbench.training import AugmentConfig, TrainConfig, Trainer

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (4, 64, 64)).astype(np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[:, 5:10, 5:30] = 1
    labels[:, 40:45, 5:30] = 2
    d = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(arch="unet2d", arch_options={"depth": 2, "base_channels": 4}, iterations=2, batch_size=1,
                      patch_shape=[1, 64, 64], augment=AugmentConfig.none(), device="cpu", prefetch=0)
    Trainer(cfg, raw, labels, d).run()
    return d


@pytest.fixture
def raw_tif(tmp_path, rng):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (5, 48, 40)).astype(np.uint8))
    return path


def test_predict_cli_writes_a_complete_prediction(run_dir, raw_tif, tmp_path, capsys):
    out = tmp_path / "pred.zarr"
    code = main(["predict", "--model", str(run_dir), "--raw", str(raw_tif), "--out", str(out),
                 "--block", "2", "24", "24", "--no-progress", "--precision", "fp32"])  # compared with fp32 below
    assert code == 0, capsys.readouterr().err
    assert "blocks in flight" in capsys.readouterr().out  # --workers auto: the first block measured, then filled
    arr = open_prediction(out)
    assert arr.shape == (2, 5, 48, 40) and arr.chunks == (1, 2, 24, 24)
    probs = from_storage(arr[...])
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=2.5 / 255)  # softmax of two classes
    # blockwise equals one whole-volume call of the same predictor (within uint8 rounding)
    from workbench.training import load_run

    predictor = load_run(run_dir, device="cpu")
    whole = predictor.predict(tifffile.imread(raw_tif))
    assert np.abs(probs - whole).max() <= 1.5 / 255
    # refuses to overwrite, unless asked
    assert main(["predict", "--model", str(run_dir), "--raw", str(raw_tif), "--out", str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["predict", "--model", str(run_dir), "--raw", str(raw_tif), "--out", str(out), "--no-progress",
                 "--overwrite", "--tta"]) == 0


def test_predict_cli_resume(run_dir, raw_tif, tmp_path, capsys):
    from workbench.io import open_volume
    from workbench.training import load_run

    out = tmp_path / "pred.zarr"
    predict_volume(load_run(run_dir, device="cpu"), open_volume(raw_tif), out,
                   PredictOptions(block_shape=(2, 24, 24)), should_stop=lambda: True)
    args = ["predict", "--model", str(run_dir), "--raw", str(raw_tif), "--out", str(out), "--block", "2", "24",
            "24", "--no-progress", "--precision", "fp32"]  # the interrupted part was predicted in fp32
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--resume"]) == 0
    assert "computed" in capsys.readouterr().out
    assert open_prediction(out).shape == (2, 5, 48, 40)


def _one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_predict_cli_bad_inputs(run_dir, raw_tif, tmp_path, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    _one_line_error(capsys, ["predict", "--model", str(empty), "--raw", str(raw_tif), "--out",
                             str(tmp_path / "a.zarr")], "checkpoint")
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((3, 4, 32, 32), np.uint8), metadata={"axes": "CZYX"})
    _one_line_error(capsys, ["predict", "--model", str(run_dir), "--raw", str(rgb), "--out",
                             str(tmp_path / "b.zarr")], "channel")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _one_line_error(capsys, ["predict", "--model", str(run_dir), "--raw", str(raw_tif), "--out",
                             str(tmp_path / "c.zarr"), "--scheduler", f"tcp://127.0.0.1:{port}"], "does not answer")
    assert not (tmp_path / "c.zarr").exists() and not (tmp_path / "c.zarr.partial").exists()


def test_predict_cli_dtype_choices_are_the_storage_dtypes():
    import argparse

    from workbench.commands import predict
    from workbench.inference import StorageDtype

    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    dtype = next(a for a in parser._actions if a.dest == "dtype")
    assert list(dtype.choices) == StorageDtype.values()
