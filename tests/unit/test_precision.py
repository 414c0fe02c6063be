"""Precision (``workbench.precision``): detection, resolution, autocast; bf16 training, prediction and CLIs."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
import torch

from workbench import precision as precision_module
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.precision import Precision, autocast, bf16_supported, resolve_precision

TINY_UNET = {"depth": 2, "base_channels": 4}
HAS_BF16 = bf16_supported("cpu")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bfloat16 (AVX512-BF16 / AMX)")


# -- detection and resolution (mocked) ------------------------------------------------------------------
def _cpu(mkldnn: bool, bf16):
    """Patch the oneDNN checks: ``bf16`` True/False, or an exception class to raise."""
    op = mock.Mock(side_effect=bf16) if isinstance(bf16, type) else mock.Mock(return_value=bf16)
    return (mock.patch.object(torch.backends.mkldnn, "is_available", return_value=mkldnn),
            mock.patch.object(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", op, create=True))


@pytest.mark.parametrize("mkldnn,bf16,expected", [(True, True, True), (True, False, False),
                                                  (False, True, False), (True, RuntimeError, False)])
def test_cpu_detection_asks_onednn(mkldnn, bf16, expected):
    a, b = _cpu(mkldnn, bf16)
    with a, b, mock.patch.object(precision_module, "cpu_bf16_speedup", return_value=2.0):
        assert bf16_supported("cpu") is expected
        assert bf16_supported(None) is expected
        assert resolve_precision("auto", "cpu") == ("bf16" if expected else "fp32")
        assert resolve_precision("fp32", "cpu") == "fp32"
        if expected:
            assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
        else:
            with pytest.raises(WorkbenchError, match="no native bfloat16"):
                resolve_precision("bf16", "cpu")


@pytest.mark.parametrize("available,bf16,expected", [(True, True, "bf16"), (True, False, "fp32"),
                                                     (False, True, "fp32")])
def test_cuda_detection_asks_torch_cuda(available, bf16, expected):
    with mock.patch.object(torch.cuda, "is_available", return_value=available), \
            mock.patch.object(torch.cuda, "is_bf16_supported", return_value=bf16):
        assert bf16_supported("cuda") is (expected == "bf16")
        assert resolve_precision("auto", "cuda:0") == expected
        assert resolve_precision("fp16", "cuda") == "fp16"


@pytest.mark.parametrize("speedup,expected", [(2.5, "bf16"), (1.25, "bf16"), (1.1, "fp32"), (0.56, "fp32")])
def test_auto_on_a_cpu_takes_bf16_only_where_it_is_measured_faster(speedup, expected):
    a, b = _cpu(True, True)
    with a, b, mock.patch.object(precision_module, "cpu_bf16_speedup", return_value=speedup):
        assert resolve_precision("auto", "cpu") == expected
        assert resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: always honoured


def test_the_cpu_speedup_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision_module, "_SPEEDUPS", {})  # as in a new process
    calls = []

    def measure():
        calls.append(1)
        return 0.6

    with mock.patch.object(precision_module, "measure_cpu_bf16_speedup", measure):
        assert precision_module.cpu_bf16_speedup() == 0.6
        assert precision_module.cpu_bf16_speedup() == 0.6
    assert len(calls) == 1
    cached = json.loads((tmp_path / "precision.json").read_text())
    assert list(cached.values()) == [0.6] and "torch" in next(iter(cached))
    (tmp_path / "precision.json").write_text("{not json")  # a damaged cache is measured again, not an error
    precision_module._SPEEDUPS.clear()
    with mock.patch.object(precision_module, "measure_cpu_bf16_speedup", measure):
        assert precision_module.cpu_bf16_speedup() == 0.6
    assert len(calls) == 2


def test_the_measured_speedup_is_a_positive_ratio():
    assert 0.05 < precision_module.measure_cpu_bf16_speedup(repeats=1) < 20


def test_other_devices_and_bad_names():
    assert bf16_supported("mps") is False
    assert resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(WorkbenchError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(WorkbenchError, match=r"unknown precision 'bf61' \(did you mean 'bf16'\?\)"):
        resolve_precision("bf61", "cpu")
    assert Precision.parse("BF16") is Precision.BF16 and resolve_precision(None, "cpu") == "fp32"
    with pytest.raises(ValueError, match="resolve it first"):
        autocast("cpu", "auto")


# -- on this CPU ------------------------------------------------------------------------------------------
def test_autocast_fp32_is_a_no_op_and_bf16_runs_convolutions_in_bf16():
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.randn(2, 1, 16, 16)
    with autocast("cpu", "fp32"):
        assert conv(x).dtype == torch.float32 and not torch.is_autocast_cpu_enabled()
    if HAS_BF16:
        with autocast(torch.device("cpu"), "bf16"):
            y = conv(x)
        assert y.dtype == torch.bfloat16 and conv.weight.dtype == torch.float32
        torch.testing.assert_close(y.float(), conv(x), atol=0.05, rtol=0.02)


def _data(shape=(3, 32, 36), seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.integers(60, 120, size=shape).astype(np.uint8)
    labels = np.zeros(shape, np.uint8)
    raw[:, 8:16, 8:20] = 200
    labels[:, 10:14, 10:18] = 2
    labels[:, 22:26, 4:30] = 1
    return raw, labels


def _config(**kw):
    from workbench.training import TrainConfig

    base = dict(arch="unet2d", arch_options=dict(TINY_UNET), iterations=4, batch_size=2, patch_shape=[1, 16, 16],
                log_every=1, val_every=2, checkpoint_seconds=3600, warmup=2, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_config_precision_default_and_validation():
    cfg = _config()
    assert cfg.precision == "auto"  # bf16 where native and faster (parity: benchmarks/results/precision.json)
    cfg.precision = "BF16"
    cfg.validate()
    assert cfg.precision is Precision.BF16 and cfg.to_dict()["precision"] == "bf16"
    cfg.precision = "half"
    with pytest.raises(WorkbenchError, match="unknown precision 'half'"):
        cfg.validate()


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    if not HAS_BF16:
        pytest.skip("this CPU has no native bfloat16")
    from workbench.training import Trainer

    raw, labels = _data()
    d = tmp_path_factory.mktemp("bf16") / "run"
    trainer = Trainer(_config(precision="bf16", val_slices=[2]), raw, labels, d)
    trainer.run()
    return trainer, d


@needs_bf16
def test_bf16_training_finishes_with_finite_loss_and_records_it(bf16_run):
    from workbench.training import TrainConfig
    from workbench.training.checkpoint import load_checkpoint

    trainer, d = bf16_run
    assert trainer.precision == "bf16" and trainer.scaler is None
    records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records) and np.isfinite(records[-1]["val_loss"])
    ck = load_checkpoint(d / "checkpoint.pt")
    assert ck["precision"] == "bf16" and ck["config"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())  # fp32 master
    assert TrainConfig.load(d / "config.json").precision == "bf16"


def test_fp32_and_forest_runs_record_fp32(tmp_path):
    from workbench.training import Trainer, load_run
    from workbench.training.checkpoint import load_checkpoint

    raw, labels = _data()
    Trainer(_config(iterations=1, bn_recalibration=False, precision="fp32"), raw, labels, tmp_path / "a").run()
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["precision"] == "fp32"
    forest = Trainer(_config(arch="forest", arch_options={}, precision="auto"), raw, labels, tmp_path / "f")
    forest.run()
    assert forest.precision == "fp32" and load_checkpoint(tmp_path / "f" / "checkpoint.pt")["precision"] == "fp32"
    assert load_run(tmp_path / "f", precision="bf16").precision == "fp32"  # the forest ignores it


@needs_bf16
def test_bf16_prediction_is_close_to_fp32_and_recorded(bf16_run, tmp_path):
    from workbench.inference import PredictOptions, open_prediction, predict_volume
    from workbench.inference.output import read_info
    from workbench.training import load_run

    _, d = bf16_run
    raw = np.random.default_rng(1).integers(0, 255, (2, 40, 48)).astype(np.uint8)
    p32, p16 = load_run(d, device="cpu"), load_run(d, device="cpu", precision="bf16")
    assert (p32.precision, p16.precision) == ("fp32", "bf16")
    a, b = p32.predict(raw), p16.predict(raw)
    assert b.dtype == np.float32 and np.abs(a - b).max() < 0.02
    opts = PredictOptions(dtype="float16", workers=1)
    predict_volume(p32, raw, tmp_path / "a.zarr", opts)
    predict_volume(p16, raw, tmp_path / "b.zarr", opts)
    assert read_info(tmp_path / "a.zarr")["precision"] == "fp32"
    assert read_info(tmp_path / "b.zarr")["precision"] == "bf16"
    za, zb = (np.asarray(open_prediction(tmp_path / n), np.float32) for n in ("a.zarr", "b.zarr"))
    assert np.abs(za - zb).max() < 0.02


# -- the command lines ------------------------------------------------------------------------------------
def _write_tifs(d):
    import tifffile

    raw, labels = _data()
    tifffile.imwrite(d / "raw.tif", raw, metadata={"axes": "ZYX"})
    tifffile.imwrite(d / "labels.tif", labels, metadata={"axes": "ZYX"})


def _train_argv(d, *extra):
    return ["train", "--raw", str(d / "raw.tif"), "--labels", str(d / "labels.tif"), "--arch", "unet2d",
            "--out", str(d / "run"), "--iterations", "2", "--patch", "1", "16", "16", "--batch", "2",
            "--device", "cpu", "--option", "depth=2", "--option", "base_channels=4", "--no-progress", *extra]


@pytest.mark.parametrize("command", ["train", "predict"])
def test_cli_unknown_precision_is_one_line_did_you_mean(tmp_path, capsys, command):
    _write_tifs(tmp_path)
    argv = (_train_argv(tmp_path, "--precision", "bf61") if command == "train" else
            ["predict", "--model", str(tmp_path / "run"), "--raw", str(tmp_path / "raw.tif"), "--out",
             str(tmp_path / "p.zarr"), "--precision", "bf61"])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"workbench {command}: error:"), err
    assert "unknown precision 'bf61' (did you mean 'bf16'?)" in err and "auto, fp32, bf16" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.zarr").exists()


def test_cli_defaults_are_auto(tmp_path, capsys):
    from workbench.inference.output import read_info
    from workbench.training.checkpoint import load_checkpoint

    _write_tifs(tmp_path)
    assert main(_train_argv(tmp_path)) == 0
    expected = resolve_precision("auto", "cpu")  # bf16 where native and measured faster
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["precision"] == expected
    out = tmp_path / "p.zarr"
    assert main(["predict", "--model", str(tmp_path / "run"), "--raw", str(tmp_path / "raw.tif"), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert read_info(out)["precision"] == expected


@needs_bf16
def test_cli_train_and_predict_with_bf16(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda: 2.0)  # auto as on an AMX CPU
    from workbench.inference.output import read_info
    from workbench.training.checkpoint import load_checkpoint

    _write_tifs(tmp_path)
    assert main(_train_argv(tmp_path, "--precision", "bf16")) == 0
    assert "(bf16)" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["precision"] == "bf16"
    out = tmp_path / "p.zarr"
    assert main(["predict", "--model", str(tmp_path / "run"), "--raw", str(tmp_path / "raw.tif"), "--out", str(out),
                 "--device", "cpu", "--precision", "auto", "--no-progress"]) == 0
    assert "bf16" in capsys.readouterr().out and read_info(out)["precision"] == "bf16"


def test_resume_in_another_precision_is_refused(tmp_path):
    from workbench.inference import PredictOptions, predict_volume

    class Plain:
        channel_names = ["a"]
        precision = "fp32"

        def predict(self, block):
            return (block.astype(np.float32) / 255)[None]

    raw = np.random.default_rng(0).integers(0, 255, (4, 8, 8)).astype(np.uint8)
    opts = PredictOptions(block_shape=(1, 8, 8), workers=1)
    predict_volume(Plain(), raw, tmp_path / "p.zarr", opts, should_stop=lambda: True)
    other = Plain()
    other.precision = "bf16"
    with pytest.raises(WorkbenchError, match="ran in fp32, this one in bf16; pass --precision fp32"):
        predict_volume(other, raw, tmp_path / "p.zarr", PredictOptions(block_shape=(1, 8, 8), resume=True))
    assert predict_volume(Plain(), raw, tmp_path / "p.zarr", PredictOptions(block_shape=(1, 8, 8), resume=True)).complete
