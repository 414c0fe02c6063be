"""The Trainer, checkpoints, resume, load_run, export and the ``workbench train`` / ``export`` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.training import AugmentConfig, TrainConfig, Trainer, load_run
from workbench.training.checkpoint import load_checkpoint
from workbench.training.hooks import MeanTeacherHook

TINY_UNET = {"depth": 2, "base_channels": 4}


def _data(shape=(3, 32, 36), seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.integers(60, 120, size=shape).astype(np.uint8)
    labels = np.zeros(shape, np.uint8)
    raw[:, 8:16, 8:20] = 200
    labels[:, 10:14, 10:18] = 2  # bright object
    labels[:, 22:26, 4:30] = 1  # background stroke
    return raw, labels


def _config(**kw):
    # fp32: these tests compare resumed and uninterrupted runs number for number
    base = dict(arch="unet2d", arch_options=dict(TINY_UNET), iterations=4, batch_size=2, patch_shape=[1, 16, 16],
                log_every=1, val_every=2, checkpoint_seconds=3600, warmup=2, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def test_run_writes_config_metrics_checkpoint(tmp_path):
    raw, labels = _data()
    trainer = Trainer(_config(val_slices=[2]), raw, labels, tmp_path / "run")
    last = trainer.run()
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.jsonl", "checkpoint.pt"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["patches_per_s"] > 0 for r in lines)
    assert {"val_loss", "val_accuracy", "val_f1"} <= set(lines[1]) and last == lines[-1] | last
    assert TrainConfig.load(tmp_path / "run" / "config.json") == trainer.config
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["iteration"] == 4 and ck["arch"] == "unet2d" and ck["channel_names"] == ["class 1", "class 2"]
    assert set(ck["normalisation"]) >= {"low", "high"} and "optimizer" in ck and "rng" in ck


def test_background_thread_stops_on_stop(tmp_path):
    raw, labels = _data()
    seen = []
    trainer = Trainer(_config(iterations=None, minutes=10), raw, labels, tmp_path / "run", on_metrics=seen.append)
    trainer.start()
    deadline = time.monotonic() + 60
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trainer.running
    trainer.stop()
    trainer.wait(timeout=60)
    assert not trainer.running and trainer.iteration >= 3
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == trainer.iteration


def test_should_stop_hook_and_progress(tmp_path):
    raw, labels = _data()

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

        def set_postfix(self, d, refresh=False):
            self.postfix = d

    bar = Bar()
    trainer = Trainer(_config(iterations=100), raw, labels, tmp_path / "run", progress=bar,
                      should_stop=lambda: bar.n >= 3)
    trainer.run()
    assert trainer.iteration == 3 and bar.n == 3 and "loss" in bar.postfix


def test_same_seed_same_loss_curve_on_cpu(tmp_path):
    raw, labels = _data()
    curves = []
    for name in ("a", "b"):
        t = Trainer(_config(iterations=5, seed=3), raw, labels, tmp_path / name)
        t.run()
        curves.append([r["loss"] for r in t.history])
    assert curves[0] == curves[1]
    t = Trainer(_config(iterations=5, seed=4), raw, labels, tmp_path / "c")
    t.run()
    assert [r["loss"] for r in t.history] != curves[0]
    # batches made in the caller's thread are the same as those made in the background thread
    t = Trainer(_config(iterations=5, seed=3, prefetch=0), raw, labels, tmp_path / "d")
    t.run()
    assert [r["loss"] for r in t.history] == curves[0]


def test_checkpoint_reload_predicts_identically(tmp_path):
    raw, labels = _data()
    trainer = Trainer(_config(), raw, labels, tmp_path / "run")
    trainer.run()
    p1 = load_run(tmp_path / "run", device="cpu")
    p2 = load_run(tmp_path / "run", device="cpu")
    out = p1.predict(raw)
    assert out.shape == (2, *raw.shape) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(out, p2.predict(raw))
    model = trainer.model.eval()
    lo, hi = p1.normalisation["low"], p1.normalisation["high"]
    x = torch.from_numpy(((raw.astype(np.float32) - lo) / (hi - lo))[:, None])
    with torch.no_grad():
        ref = model(x).softmax(1).movedim(1, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert p1.spatial_dims == 2 and p1.halo[0] == 0 and p1.halo[1] > 0 and p1.channel_names == ["class 1", "class 2"]


_KILLED_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_training_trainer import _config, _data
    from workbench.training import Trainer
    raw, labels = _data()
    Trainer(_config(iterations=10_000, checkpoint_seconds=0, schedule="constant"), raw, labels, {run!r}).run()
""")


def test_killed_then_resumed_training_continues_exactly(tmp_path):
    run = tmp_path / "killed"
    script = _KILLED_SCRIPT.format(tests=os.path.dirname(__file__), run=str(run))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 4:
                break
            assert proc.poll() is None, "training process ended early"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ck = load_checkpoint(run / "checkpoint.pt")  # readable: written atomically even when killed
    done = ck["iteration"]
    assert done >= 3
    raw, labels = _data()
    total = done + 3
    resumed = Trainer(_config(iterations=total, schedule="constant"), raw, labels, run, resume=True)
    assert resumed.start_iteration == done
    resumed.run()
    straight = Trainer(_config(iterations=total, schedule="constant"), raw, labels, tmp_path / "straight")
    straight.run()
    # the checkpoint's weights were loaded, and the continued run equals an uninterrupted one
    for (k, a), b in zip(resumed.model.state_dict().items(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k, rtol=1e-5, atol=1e-6)
    resumed_losses = [r["loss"] for r in resumed.history if r["iteration"] > done]
    straight_losses = [r["loss"] for r in straight.history if r["iteration"] > done]
    np.testing.assert_allclose(resumed_losses, straight_losses, rtol=1e-5)


def test_resume_with_another_architecture_is_refused(tmp_path):
    raw, labels = _data()
    Trainer(_config(iterations=2), raw, labels, tmp_path / "run").run()
    cfg = _config(arch="unet3d", arch_options={"depth": 2, "base_channels": 4}, patch_shape=[2, 16, 16])
    with pytest.raises(WorkbenchError, match="architecture 'unet2d', not 'unet3d'"):
        Trainer(cfg, raw, labels, tmp_path / "run", resume=True)


@pytest.mark.parametrize("arch,options,patch", [
    ("unet3d", {"depth": 2, "base_channels": 4}, [3, 16, 16]),
    ("residual-unet3d", {"features": [4, 6]}, [3, 16, 16]),
])
@pytest.mark.parametrize("target", ["boundaries", "affinities"])
def test_3d_instance_targets_train_and_predict(tmp_path, arch, options, patch, target):
    raw, labels = _data()
    inst = labels.astype(np.uint16)
    inst[:, 22:26, 17:30] = 3  # another object touching object 1
    cfg = _config(arch=arch, arch_options=options, patch_shape=patch, target=target, iterations=2)
    Trainer(cfg, raw, inst, tmp_path / "run").run()
    p = load_run(tmp_path / "run")
    out = p.predict(raw[:, :20, :20])
    assert out.shape == (p.out_channels, 3, 20, 20) and p.spatial_dims == 3 and p.halo[0] > 0
    assert np.all((out >= 0) & (out <= 1))
    assert p.out_channels == (2 if target == "boundaries" else 6)


def test_forest_through_trainer_and_predictor(tmp_path):
    raw, labels = _data()
    cfg = _config(arch="forest", arch_options={"n_estimators": 8}, val_slices=[2])
    trainer = Trainer(cfg, raw, labels, tmp_path / "run")
    last = trainer.run()
    assert last["val_accuracy"] > 0.9
    p = load_run(tmp_path / "run")
    out = p.predict(raw)
    assert out.shape == (2, *raw.shape) and p.spatial_dims == 2
    assert (out.argmax(0)[labels > 0] == labels[labels > 0] - 1).mean() > 0.9


def test_load_run_errors(tmp_path):
    raw, labels = _data()
    with pytest.raises(WorkbenchError, match="no such run directory"):
        load_run(tmp_path / "missing")
    run = tmp_path / "run"
    run.mkdir()
    _config().save(run / "config.json")
    with pytest.raises(WorkbenchError, match="no checkpoint.pt"):
        load_run(run)
    Trainer(_config(iterations=1), raw, labels, run).run()
    cfg = json.loads((run / "config.json").read_text())
    cfg["arch"] = "unet3d"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WorkbenchError, match="from architecture 'unet2d' but config.json says 'unet3d'"):
        load_run(run)


@pytest.mark.parametrize("labels_fn,message", [
    (lambda lab: np.zeros_like(lab), "no labelled voxel"),
    (lambda lab: (lab > 0).astype(np.uint8), "only class 1 is labelled"),
    (lambda lab: lab[:, :20], "differs from raw shape"),
])
def test_trainer_bad_labels(tmp_path, labels_fn, message):
    raw, labels = _data()
    with pytest.raises(WorkbenchError, match=message):
        Trainer(_config(), raw, labels_fn(labels), tmp_path / "run")


def test_trainer_patch_larger_than_volume(tmp_path):
    raw, labels = _data()
    with pytest.raises(WorkbenchError, match="larger than the volume"):
        Trainer(_config(patch_shape=[1, 64, 64]), raw, labels, tmp_path / "run")


def test_default_patch_is_clipped_to_a_small_volume(tmp_path):
    raw, labels = _data()
    t = Trainer(_config(patch_shape=None, batch_size=None, augment=AugmentConfig.none(), iterations=1), raw, labels,
                tmp_path / "r")
    assert t.patch_shape == (1, 32, 36) and t.batch_size == 16  # unet2d: 16 patches of up to 128^2
    t.run()


def test_mean_teacher_run_keeps_the_teacher_and_resumes_exactly(tmp_path):
    raw, labels = _data()

    def config(n):
        return _config(iterations=n, schedule="constant", semi_supervised="mean-teacher",
                       semi_options={"start": 0.0, "ramp": 0.0, "threshold": [0.5, 0.6]})

    Trainer(config(3), raw, labels, tmp_path / "a").run()
    resumed = Trainer(config(6), raw, labels, tmp_path / "a", resume=True)
    assert resumed.start_iteration == 3
    resumed.run()
    straight = Trainer(config(6), raw, labels, tmp_path / "b")
    straight.run()
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert {"student", "semi"} <= set(ck) and ck["semi"]["updates"] == 6
    assert straight.hook(MeanTeacherHook).semi.pseudo_fraction > 0  # pseudo-labels were used
    for (k, a), b in zip(resumed.model.state_dict().items(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k, rtol=1e-5, atol=1e-6)


# -- command line --------------------------------------------------------------------------------------
@pytest.fixture
def tiff_data(tmp_path):
    import tifffile

    raw, labels = _data()
    def write(name, a):
        tifffile.imwrite(tmp_path / name, a, metadata={"axes": "ZYX"})

    write("raw.tif", raw)
    write("labels.tif", labels)
    write("one_class.tif", (labels > 0).astype(np.uint8))
    write("empty.tif", np.zeros_like(labels))
    write("small.tif", labels[:, :20])
    return tmp_path


def test_cli_train_and_export_end_to_end(tiff_data):
    d = tiff_data
    env = dict(os.environ)
    env.pop("WORKBENCH_NO_REEXEC", None)  # exercise the re-exec with the tuned allocator too
    cmd = [sys.executable, "-m", "workbench", "train", "--raw", str(d / "raw.tif"), "--labels", str(d / "labels.tif"),
           "--arch", "unet2d", "--out", str(d / "run"), "--iterations", "4", "--patch", "1", "16", "16", "--batch", "2",
           "--seed", "1", "--device", "cpu", "--semi", "mean-teacher", "--option", "depth=2", "--option", "base_channels=4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    summary = res.stdout.strip().splitlines()
    assert len(summary) == 1 and "4 iterations" in summary[0] and "loss" in summary[0]
    assert "BatchNorm statistics from" in summary[0]
    assert "train unet2d" in res.stderr  # the progress bar
    ck = load_checkpoint(d / "run" / "checkpoint.pt")
    assert ck["iteration"] == 4 and "semi" in ck  # the teacher's state, to resume exactly
    assert ck["arch_options"]["base_channels"] == 4 and ck["arch_options"]["depth"] == 2
    cmd[cmd.index("--iterations") + 1] = "6"
    bad = subprocess.run([*cmd, "--option", "widht=8"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no option 'widht'" in bad.stderr and "base_channels" in bad.stderr
    assert "Traceback" not in bad.stderr
    res = subprocess.run([*cmd, "--resume", "--no-bn-recalibration"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(d / "run" / "checkpoint.pt")["iteration"] == 6 and "BatchNorm" not in res.stdout
    # exports
    assert main(["export", "--model", str(d / "run"), "--format", "torchscript", str(d / "m.pt")]) == 0
    scripted = torch.jit.load(str(d / "m.pt"))
    y = scripted(torch.rand(1, 1, 24, 40))
    assert y.shape == (1, 2, 24, 40)
    torch.testing.assert_close(y.sum(1), torch.ones(1, 24, 40))
    assert main(["export", "--model", str(d / "run"), "--format", "onnx", str(d / "m.onnx")]) == 0
    import onnx

    onnx.checker.check_model(onnx.load(str(d / "m.onnx")))
    assert main(["export", "--model", str(d / "run"), "--format", "bioimageio", str(d / "m.zip")]) == 0
    with zipfile.ZipFile(d / "m.zip") as zf:
        names = set(zf.namelist())
    assert {"rdf.yaml", "test_input.npy", "test_output.npy", "weights.pt", "weights_torchscript.pt",
            "architecture.py", "README.md"} <= names
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    descr = load_description(d / "m.zip", perform_io_checks=True)
    assert isinstance(descr, ModelDescr), descr.validation_summary.format()
    assert descr.validation_summary.status in ("passed", "valid-format")
    # the packaged test output is what the TorchScript weights give on the test input (after preprocessing)
    with zipfile.ZipFile(d / "m.zip") as zf:
        zf.extractall(d / "pkg")
    x = np.load(d / "pkg" / "test_input.npy")
    p = load_run(d / "run")
    xn = (x - p.normalisation["low"]) / (p.normalisation["high"] - p.normalisation["low"])
    out = torch.jit.load(str(d / "pkg" / "weights_torchscript.pt"))(torch.from_numpy(xn.astype(np.float32)))
    np.testing.assert_allclose(out.detach().numpy(), np.load(d / "pkg" / "test_output.npy"), atol=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--labels", "{d}/empty.tif"], "no labelled voxel"),
    (["--labels", "{d}/one_class.tif"], "only class 1 is labelled"),
    (["--labels", "{d}/small.tif"], "shape"),
    (["--arch", "unet-2d"], "unknown architecture 'unet-2d' (did you mean 'unet2d'?)"),
    (["--patch", "1", "64", "64"], "larger than the volume"),
])
def test_cli_bad_input_one_line_message(tiff_data, capsys, args, message):
    d = tiff_data
    base = {"--raw": str(d / "raw.tif"), "--labels": str(d / "labels.tif"), "--arch": "unet2d",
            "--out": str(d / "run"), "--iterations": "2"}
    argv = ["train"]
    overrides = [a.format(d=d) for a in args]
    keys = set(overrides) & set(base)
    for k, v in base.items():
        if k not in keys:
            argv += [k, v]
    argv += overrides
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("workbench train: error:") and message in err


def test_cli_resume_with_other_architecture(tiff_data, capsys):
    d = tiff_data
    common = ["--raw", str(d / "raw.tif"), "--labels", str(d / "labels.tif"), "--out", str(d / "run"),
              "--iterations", "1", "--patch", "1", "16", "16", "--no-progress"]
    assert main(["train", "--arch", "unet2d", *common]) == 0
    capsys.readouterr()  # the first run's notes (its recipe)
    assert main(["train", "--arch", "forest", "--resume", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained with architecture 'unet2d', not 'forest'" in err[0]


def test_export_of_forest_is_refused(tmp_path, capsys):
    raw, labels = _data()
    Trainer(_config(arch="forest", arch_options={"n_estimators": 2}), raw, labels, tmp_path / "run").run()
    assert main(["export", "--model", str(tmp_path / "run"), "--format", "torchscript", str(tmp_path / "m.pt")]) == 2
    assert "not a neural network" in capsys.readouterr().err


def test_cosine_schedule_follows_the_time_budget():
    raw, labels = _data()
    lr = 1e-3
    timed = Trainer(_config(iterations=None, minutes=2, lr=lr), raw, labels, "unused", resume=False)
    assert timed.lr_at(0, 0.0) == pytest.approx(lr / 2)  # warm-up
    assert timed.lr_at(5, 0.0) == pytest.approx(lr)
    assert timed.lr_at(5, 60.0) == pytest.approx(lr * (0.05 + 0.95 * 0.5))
    assert timed.lr_at(5, 120.0) == pytest.approx(lr * 0.05)
    both = Trainer(_config(iterations=10, minutes=2, lr=lr), raw, labels, "unused", resume=False)
    assert both.lr_at(6, 0.0) == pytest.approx(lr * (0.05 + 0.95 * 0.5))  # iterations are further along
    assert both.lr_at(6, 90.0) < both.lr_at(6, 0.0)  # time is further along
    constant = Trainer(_config(iterations=None, minutes=2, lr=lr, schedule="constant"), raw, labels, "unused")
    assert constant.lr_at(5, 119.0) == lr


def test_resumed_run_trains_only_the_rest_of_its_time_budget(tmp_path):
    raw, labels = _data()
    run = tmp_path / "timed"
    first = Trainer(_config(iterations=None, minutes=0.01), raw, labels, run)
    first.run()
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["train_seconds"] >= 0.6 and ck["iteration"] == first.iteration >= 1
    again = Trainer(_config(iterations=None, minutes=0.01), raw, labels, run, resume=True)
    again.run()  # the budget is used up: nothing more is trained
    assert again.iteration == first.iteration
    longer = Trainer(_config(iterations=None, minutes=0.02), raw, labels, run, resume=True)
    longer.run()
    assert longer.iteration > first.iteration and load_checkpoint(run / "checkpoint.pt")["train_seconds"] >= 1.2
    logged = [json.loads(line)["elapsed_s"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(logged)  # time counts on across the resumed parts


def test_final_model_has_the_volume_batchnorm_statistics_and_resumes_exactly(tmp_path):
    from workbench.training.batchnorm import batchnorm_buffers

    raw, labels = _data()
    first = Trainer(_config(iterations=4, schedule="constant"), raw, labels, tmp_path / "run")
    first.run()
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert first.bn_recalibration["tiles"] >= 1 and ck["bn_recalibration"] == first.bn_recalibration
    kept = {k: v for k, v in ck["model"].items() if k in ck["bn_training"]}
    assert kept.keys() == ck["bn_training"].keys() and kept
    assert any(not torch.equal(kept[k], ck["bn_training"][k]) for k in kept if "running_mean" in k)
    off = Trainer(_config(iterations=4, schedule="constant", bn_recalibration=False), raw, labels, tmp_path / "off")
    off.run()
    off_ck = load_checkpoint(tmp_path / "off" / "checkpoint.pt")
    assert "bn_training" not in off_ck and off.bn_recalibration is None
    for k, v in ck["bn_training"].items():  # the same training, only the statistics differ
        torch.testing.assert_close(v, off_ck["model"][k])
    # resuming continues from the training statistics: equal to an uninterrupted run
    resumed = Trainer(_config(iterations=7, schedule="constant"), raw, labels, tmp_path / "run", resume=True)
    resumed.run()
    straight = Trainer(_config(iterations=7, schedule="constant"), raw, labels, tmp_path / "straight")
    straight.run()
    for (k, a), b in zip(resumed.model.state_dict().items(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k, rtol=1e-5, atol=1e-6)
    assert batchnorm_buffers(resumed.model).keys() == ck["bn_training"].keys()


def test_cli_option_values_are_parsed():
    from workbench.commands.train import parse_options

    assert parse_options(["base_channels=8", "growth=1.5", "norm=group"]) == {"base_channels": 8, "growth": 1.5,
                                                                             "norm": "group"}
    with pytest.raises(WorkbenchError, match="KEY=VALUE"):
        parse_options(["base_channels"])


def test_resume_continues_the_metrics_without_repeating_iterations(tmp_path):
    raw, labels = _data()
    run = tmp_path / "run"
    Trainer(_config(iterations=4, schedule="constant"), raw, labels, run).run()
    metrics = run / "metrics.jsonl"
    # a killed run logged past its last checkpoint (iteration 4), and its last line was cut short
    with open(metrics, "a") as f:
        f.write(json.dumps({"iteration": 5, "loss": 9.0}) + "\n" + json.dumps({"iteration": 6, "loss": 9.0}) + "\n")
        f.write('{"iteration": 7, "lo')
    Trainer(_config(iterations=7, schedule="constant"), raw, labels, run, resume=True).run()
    its = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert its == [1, 2, 3, 4, 5, 6, 7]
    assert all(json.loads(line)["loss"] != 9.0 for line in metrics.read_text().splitlines())


def test_resume_without_a_checkpoint_says_so(tmp_path, tiff_data, capsys):
    raw, labels = _data()
    with pytest.raises(WorkbenchError, match="no checkpoint to resume from yet"):
        Trainer(_config(), raw, labels, tmp_path / "empty", resume=True)
    fresh = Trainer(_config(iterations=2), raw, labels, tmp_path / "empty", resume="if-present")
    assert fresh.start_iteration == 0
    d = tiff_data
    common = ["--arch", "unet2d", "--option", "depth=2", "--option", "base_channels=4", "--raw", str(d / "raw.tif"),
              "--labels", str(d / "labels.tif"), "--out", str(d / "new"), "--patch", "1", "16", "16", "--no-progress"]
    assert main(["train", "--resume", *common, "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint to resume from yet" in err[0] and "--resume-or-start" in err[0]
    assert main(["train", "--resume-or-start", *common, "--iterations", "1"]) == 0
    assert "starting a new run" in capsys.readouterr().err
    assert main(["train", "--resume-or-start", *common, "--iterations", "2"]) == 0
    assert "resuming from iteration 1" in capsys.readouterr().err
