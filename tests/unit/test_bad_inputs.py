"""Bad inputs across the commands and the app's forms: each is refused with one line naming the file and the
problem (exit code 2 on the command line, a WorkbenchError in the app), and nothing half-written is left
under the final output name. The import readers' own corrupt-file cases are in ``test_io_errors.py``.

A full disk is a real one: a 192 kB tmpfs mounted in a private mount namespace (``unshare -rm``), the
command run inside it. Where a kernel refuses user namespaces that case fails and says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile

from workbench.cli import main
from workbench.errors import WorkbenchError

LONG = "n" * 240  # a file name near the 255-byte limit of most file systems


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(env) -> argv`` (a CLI case) or a callable raising WorkbenchError (an app case);
    ``names``: what the message must mention (the file); ``problem``: a regex for the problem;
    ``out``: the output that must not exist afterwards (relative to the case folder), if any."""

    id: str
    build: Callable
    names: str
    problem: str
    out: str | None = None


class Env:
    """The files a case needs, made on first use in the case's folder (a shared trained run and prediction)."""

    def __init__(self, d: Path, shared: dict):
        self.d, self.shared = d, shared

    def path(self, name: str) -> str:
        return str(self.d / name)

    def raw(self, name="raw.tif", shape=(4, 32, 32), dtype=np.uint8) -> str:
        p = self.d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            tifffile.imwrite(p, np.random.default_rng(0).integers(0, 200, shape).astype(dtype), photometric="minisblack")
        return str(p)

    def labels(self, name="labels.tif", shape=(4, 32, 32), value=None, dtype=np.uint8) -> str:
        p = self.d / name
        lab = np.zeros(shape, dtype)
        if value is None:
            lab[:, 2:6, :] = 1
            lab[:, 20:24, :] = 2
        else:
            lab[...] = value
        tifffile.imwrite(p, lab, photometric="minisblack")
        return str(p)

    @property
    def run(self) -> str:
        return str(self.shared["run"])

    @property
    def pred(self) -> str:
        return str(self.shared["pred"])

    def copy_run(self, name="run") -> Path:
        dst = self.d / name
        shutil.copytree(self.shared["run"], dst)
        return dst


# ------------------------------------------------------------------------------------------ the CLI cases
def _corrupt_checkpoint(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    return ["predict", "--model", str(run), "--raw", e.raw(), "--out", e.path("out.zarr"), "--no-progress"]


def _garbage_config(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "config.json").write_text("[" * 100000)
    return ["predict", "--model", str(run), "--raw", e.raw(), "--out", e.path("out.zarr"), "--no-progress"]


def _config_wrong_types(e: Env) -> list[str]:
    run = e.copy_run()
    cfg = json.loads((run / "config.json").read_text())
    cfg["arch"] = ["unet2d"]
    cfg["patch_shape"] = "big"
    (run / "config.json").write_text(json.dumps(cfg))
    return ["predict", "--model", str(run), "--raw", e.raw(), "--out", e.path("out.zarr"), "--no-progress"]


def _no_checkpoint(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "checkpoint.pt").unlink()
    return ["export", "--model", str(run), "--format", "torchscript", e.path("model.pt")]


def _incomplete_prediction(e: Env) -> list[str]:
    dst = e.d / "pred.zarr"
    shutil.copytree(e.pred, dst)
    attrs = json.loads((dst / ".zattrs").read_text())
    attrs["workbench"]["complete"] = False
    (dst / ".zattrs").write_text(json.dumps(attrs))
    return ["segment", str(dst), "--out", e.path("seg.zarr"), "--no-progress"]


def _raw_as_prediction(e: Env) -> list[str]:
    assert main(["import", e.raw(), e.path("raw.zarr"), "--no-progress"]) == 0
    return ["segment", e.path("raw.zarr"), "--out", e.path("seg.zarr"), "--no-progress"]


def _symlink_loop(e: Env) -> list[str]:
    (e.d / "loop.tif").symlink_to(e.d / "loop.tif")
    return ["import", e.path("loop.tif"), e.path("out.zarr"), "--no-progress"]


def _dangling_symlink(e: Env) -> list[str]:
    (e.d / "gone.tif").symlink_to(e.d / "deleted.tif")
    return ["import", e.path("gone.tif"), e.path("out.zarr"), "--no-progress"]


def _out_under_a_file(e: Env) -> list[str]:
    (e.d / "afile").write_text("x")
    return ["import", e.raw(), e.path("afile/out.zarr"), "--no-progress"]


def _long_corrupt(e: Env) -> list[str]:
    (e.d / f"{LONG}.tif").write_bytes(b"II*\x00" + bytes(64))
    return ["import", e.path(f"{LONG}.tif"), e.path("out.zarr"), "--no-progress"]


def _unicode_corrupt(e: Env) -> list[str]:
    (e.d / "données-ß-日本.tif").write_bytes(b"MM\x00*" + bytes(64))
    return ["import", e.path("données-ß-日本.tif"), e.path("out.zarr"), "--no-progress"]


def _mrc_huge_header(e: Env) -> list[str]:
    import mrcfile

    p = e.d / "huge.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.zeros((2, 8, 8), np.uint8))
    b = bytearray(p.read_bytes())
    b[0:12] = np.array([100000, 100000, 100000], "<i4").tobytes()  # nx, ny, nz: 10^15 voxels claimed
    p.write_bytes(bytes(b))
    return ["import", str(p), e.path("out.zarr"), "--no-progress"]


def _zarr_bad_metadata(e: Env) -> list[str]:
    d = e.d / "bad.zarr"
    d.mkdir()
    (d / ".zarray").write_text('{"zarr_format": 2, "shape": [4, -1, 8], "chunks": [1, 1], "dtype": "|u1"}')
    return ["import", str(d), e.path("out.zarr"), "--no-progress"]


def _train_base(e: Env, *extra, labels=None) -> list[str]:
    return ["train", "--raw", e.raw(), "--labels", labels or e.labels(), "--arch", "unet2d", "--out",
            e.path("newrun"), "--iterations", "1", "--device", "cpu", "--no-progress", *extra]


def _train_existing_file_out(e: Env) -> list[str]:
    (e.d / "newrun").write_text("a file, not a folder")
    return _train_base(e)


def _predict_raw_2d_rgb(e: Env) -> list[str]:
    p = e.d / "rgb.png"
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(p)
    return ["predict", "--model", e.run, "--raw", str(p), "--out", e.path("out.zarr"), "--no-progress"]


def _evaluate_corrupt(e: Env) -> list[str]:
    (e.d / "broken.tif").write_bytes(b"II*\x00" + bytes(16))
    return ["evaluate", "--pred", e.path("broken.tif"), "--truth", e.labels()]


def _share_project(e: Env, damage: str | None = None) -> str:
    from workbench.project import Project

    root = e.d / "proj"
    Project.create(root, np.zeros((2, 16, 16), np.uint8))
    if damage == "json":
        (root / "project.json").write_text('{"schema": 1, "raw": ')
    elif damage == "raw-gone":
        shutil.rmtree(root / "data.zarr")
    return str(root)


CLI_CASES = [
    # import
    Case("import-missing-unicode", lambda e: ["import", e.path("données/ß.tif"), e.path("out.zarr")],
         "ß.tif", "no such file", "out.zarr"),
    Case("import-long-name-corrupt", _long_corrupt, LONG[:50], "TIFF|tiff", "out.zarr"),
    Case("import-unicode-corrupt", _unicode_corrupt, "日本.tif", "TIFF|tiff", "out.zarr"),
    Case("import-symlink-loop", _symlink_loop, "loop.tif", "symbolic links|no such file|cannot", "out.zarr"),
    Case("import-dangling-symlink", _dangling_symlink, "gone.tif", "no such file", "out.zarr"),
    Case("import-out-under-a-file", _out_under_a_file, "afile", "not a directory|not a folder|cannot", None),
    Case("import-voxel-nan", lambda e: ["import", e.raw(), e.path("out.zarr"), "--voxel-size", "nan", "4", "4"],
         "raw.tif", "voxel size", "out.zarr"),
    Case("import-voxel-zero", lambda e: ["import", e.raw(), e.path("out.zarr"), "--voxel-size", "0", "4", "4"],
         "raw.tif", "voxel size", "out.zarr"),
    Case("import-mrc-huge-header", _mrc_huge_header, "huge.mrc", "MRC|claims|truncated|size", "out.zarr"),
    Case("import-zarr-bad-metadata", _zarr_bad_metadata, "bad.zarr", "zarr|metadata|shape", "out.zarr"),
    Case("import-chunks-zero", lambda e: ["import", e.raw(), e.path("out.zarr"), "--chunks", "0", "8", "8"],
         "chunks", "positive", "out.zarr"),
    # train
    Case("train-raw-missing", lambda e: ["train", "--raw", e.path("nope.tif"), "--labels", e.labels(), "--arch",
                                         "unet2d", "--out", e.path("newrun")], "nope.tif", "no such file", None),
    Case("train-labels-shape", lambda e: _train_base(e, labels=e.labels(shape=(4, 32, 30))), "labels.tif",
         r"shape", None),
    Case("train-unknown-arch", lambda e: [*_train_base(e)[:5], "--arch", "unet9d", *_train_base(e)[7:]],
         "unet9d", "unknown|did you mean", None),
    Case("train-float-labels", lambda e: _train_base(e, labels=e.labels(value=0.5, dtype=np.float32)),
         "labels.tif", "integer", None),
    Case("train-no-labels", lambda e: _train_base(e, labels=e.labels(value=0)), "labels.tif",
         "no label|unlabelled|empty|nothing", None),
    Case("train-option-no-equals", lambda e: _train_base(e, "--option", "depth"), "depth", "KEY=VALUE|=", None),
    Case("train-option-unknown", lambda e: _train_base(e, "--option", "wings=3"), "wings", "unknown|option", None),
    Case("train-iterations-zero", lambda e: [*_train_base(e)[:-5], "--iterations", "0", "--device", "cpu",
                                             "--no-progress"], "iterations", "positive|at least|>", None),
    Case("train-out-is-a-file", _train_existing_file_out, "newrun", "not a folder|not a directory|exists|file", None),
    Case("train-resume-nothing", lambda e: _train_base(e, "--resume"), "newrun", "checkpoint", None),
    Case("train-val-slice-outside", lambda e: _train_base(e, "--val-slices", "99"), "99", "slice|outside|range", None),
    # predict
    Case("predict-model-missing", lambda e: ["predict", "--model", e.path("norun"), "--raw", e.raw(), "--out",
                                             e.path("out.zarr")], "norun", "no such", "out.zarr"),
    Case("predict-corrupt-checkpoint", _corrupt_checkpoint, "checkpoint.pt", "cannot read checkpoint", "out.zarr"),
    Case("predict-config-nested", _garbage_config, "config.json", "unreadable training config", "out.zarr"),
    Case("predict-config-wrong-types", _config_wrong_types, "config.json", "config|patch|arch_options", "out.zarr"),
    Case("predict-raw-missing", lambda e: ["predict", "--model", e.run, "--raw", e.path("nope.h5:/raw"), "--out",
                                           e.path("out.zarr")], "nope.h5", "no such file", "out.zarr"),
    Case("predict-block-zero", lambda e: ["predict", "--model", e.run, "--raw", e.raw(), "--out", e.path("out.zarr"),
                                          "--block", "0", "16", "16", "--no-progress"], "block", "block", "out.zarr"),
    Case("predict-rgb-raw", _predict_raw_2d_rgb, "rgb.png", "channel|RGB|colour|color", "out.zarr"),
    # segment
    Case("segment-pred-missing", lambda e: ["segment", e.path("nopred.zarr"), "--out", e.path("seg.zarr")],
         "nopred.zarr", "no such|predict|not", "seg.zarr"),
    Case("segment-incomplete", _incomplete_prediction, "pred.zarr", "incomplete|not complete|resume", "seg.zarr"),
    Case("segment-not-a-prediction", _raw_as_prediction, "raw.zarr", "not a workbench prediction", "seg.zarr"),
    Case("segment-channel-outside", lambda e: ["segment", e.pred, "--out", e.path("seg.zarr"), "--channel", "7"],
         "pred", "channel", "seg.zarr"),
    Case("segment-block-zero", lambda e: ["segment", e.pred, "--out", e.path("seg.zarr"), "--block", "0", "8", "8"],
         "block", "block", "seg.zarr"),
    Case("segment-threshold-nan", lambda e: ["segment", e.pred, "--out", e.path("seg.zarr"), "--threshold", "nan"],
         "threshold", "threshold", "seg.zarr"),
    # evaluate
    Case("evaluate-truth-missing", lambda e: ["evaluate", "--pred", e.labels(), "--truth", e.path("nogt.tif")],
         "nogt.tif", "no such file", None),
    Case("evaluate-shape-mismatch", lambda e: ["evaluate", "--pred", e.labels(), "--truth",
                                               e.labels("gt.tif", shape=(4, 30, 32))], "gt.tif", "shape", None),
    Case("evaluate-corrupt", _evaluate_corrupt, "broken.tif", "TIFF|tiff", None),
    # view
    Case("view-missing", lambda e: ["view", e.path("novol.zarr"), "--no-wait"], "novol.zarr", "no such", None),
    Case("view-voxel-nan", lambda e: ["view", e.raw(), "--voxel-size", "nan", "1", "1", "--no-wait"], "raw.tif",
         "voxel size", None),
    Case("view-port-outside", lambda e: ["view", e.raw(), "--port", "70000", "--no-wait"], "70000", "port", None),
    # export
    Case("export-model-missing", lambda e: ["export", "--model", e.path("norun"), "--format", "onnx",
                                            e.path("m.onnx")], "norun", "no such run|not a training run", "m.onnx"),
    Case("export-no-checkpoint", _no_checkpoint, "run", "checkpoint", "model.pt"),
    # share
    Case("share-missing-project", lambda e: ["share", e.path("noproj"), e.path("site")], "noproj", "no such", "site"),
    Case("share-not-a-project", lambda e: ["share", str(Path(e.raw("plainfolder/raw.tif")).parent), e.path("site")],
         "plainfolder", "not an EM Workbench project", "site"),
    Case("share-corrupt-project", lambda e: ["share", _share_project(e, "json"), e.path("site")], "project.json",
         "corrupt", "site"),
    Case("share-unknown-run", lambda e: ["share", _share_project(e), e.path("site"), "--run", "run-x"], "run-x",
         "no run", "site"),
    Case("share-max-mb-negative", lambda e: ["share", _share_project(e), e.path("site"), "--max-mb", "-1"],
         "max-mb", "positive", "site"),
]


# ------------------------------------------------------------------------------------------ the app cases
def _browser(e: Env):
    from widgets.data import FileBrowser

    root = e.d / "data"
    root.mkdir(exist_ok=True)
    return FileBrowser(root)


def _symlink_out_of_root(e: Env):
    b = _browser(e)
    (e.d / "secret.tif").write_bytes(b"x")
    (b.root / "link.tif").symlink_to(e.d / "secret.tif")
    return lambda: b.inside(Path("link.tif"))


def _dir_symlink_out_of_root(e: Env):
    b = _browser(e)
    (b.root / "up").symlink_to(e.d)
    return lambda: b.inside(Path("up/raw.tif"))


def _project(e: Env):
    from workbench.project import Project

    return Project.create(e.d / "proj", np.zeros((2, 16, 16), np.uint8))


def _data_panel(e: Env, voxel: str):
    """The data panel's open button on a readable file with ``voxel`` typed in the voxel size box."""
    from widgets.context import AppContext
    from widgets.data import DataPanel

    project = _project(e)
    root = e.d / "data"
    root.mkdir(exist_ok=True)
    tifffile.imwrite(root / "stack.tif", np.zeros((2, 16, 16), np.uint8))
    ctx = AppContext(project, workspace=e.d / "workspace", data_root=root)
    panel = DataPanel(ctx)
    panel.voxel.value = voxel

    def open_it():
        try:
            panel.use_path(Path("stack.tif"))
        finally:
            ctx.shutdown()
    return open_it


APP_CASES = [
    Case("app-voxel-two-numbers", lambda e: _data_panel(e, "40, 4"), "40, 4", "three numbers"),
    Case("app-voxel-text", lambda e: _data_panel(e, "forty four four"), "forty", "three numbers"),
    Case("app-voxel-nan", lambda e: _data_panel(e, "nan 4 4"), "nan", "positive|three"),
    Case("app-voxel-negative", lambda e: _data_panel(e, "-40 4 4"), "-40", "positive"),
    Case("app-voxel-inf", lambda e: _data_panel(e, "inf, 4, 4"), "inf", "positive|three"),
    Case("app-browser-dotdot", lambda e: partial(_browser(e).inside, Path("../../etc/passwd")),
         "etc/passwd", "outside the data root"),
    Case("app-browser-absolute", lambda e: partial(_browser(e).inside, Path("/etc")), "/etc",
         "outside the data root"),
    Case("app-browser-symlink-out", _symlink_out_of_root, "link.tif", "outside the data root"),
    Case("app-browser-dir-symlink-out", _dir_symlink_out_of_root, "up/raw.tif", "outside the data root"),
    Case("app-browser-long-name", lambda e: partial(_browser(e).inside, Path("x" * 300 + ".tif")),
         "xxxx", "too long"),
    Case("app-class-empty", lambda e: partial(_project(e).add_class, "   "), "class", "empty"),
    Case("app-class-duplicate", lambda e: partial(_project(e).add_class, "MEMBRANE"), "MEMBRANE", "already"),
    Case("app-class-newline", lambda e: partial(_project(e).add_class, "a\nb"), "class", "line|control"),
    Case("app-class-too-long", lambda e: partial(_project(e).add_class, "m" * 1000), "class",
         "too long|characters"),
    Case("app-class-colour", lambda e: partial(_project(e).recolor_class, 1, "bluish"), "bluish", "colou?r"),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A two-iteration training run and a complete two-channel prediction, made once."""
    from workbench.inference import PredictOptions, predict_volume
    from workbench.training import AugmentConfig, TrainConfig, Trainer

    d = tmp_path_factory.mktemp("shared")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (4, 32, 32)).astype(np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[:, 2:6] = 1
    labels[:, 20:24] = 2
    cfg = TrainConfig(arch="unet2d", arch_options={"depth": 2, "base_channels": 4}, iterations=1, batch_size=1,
                      patch_shape=[1, 32, 32], augment=AugmentConfig.none(), device="cpu", prefetch=0,
                      bn_recalibration=False)
    Trainer(cfg, raw, labels, d / "run").run()

    class TwoClasses:
        out_channels = 2

        def predict(self, block):
            p = block.astype(np.float32)[None] / 255.0
            return np.concatenate([p, 1 - p])

    predict_volume(TwoClasses(), raw, d / "pred.zarr", PredictOptions(block_shape=(4, 32, 32)))
    return {"run": d / "run", "pred": d / "pred.zarr"}


def _half_written(d: Path, out: str | None) -> list[str]:
    found = [p.name for p in d.rglob("*")
             if "partial" in p.name or p.name.startswith(".creating-") or p.name.endswith(".tmp")]
    if out is not None and (d / out).exists():
        found.append(out)
    return found


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_refuses_bad_input_in_one_line(case, tmp_path, shared, capsys):
    argv = case.build(Env(tmp_path, shared))
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:  # what a user's terminal would show beside the line
        warnings.simplefilter("always")
        code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    shown = [f"{w.category.__name__}: {w.message}" for w in seen
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))]
    assert shown == [], shown
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"workbench {argv[0]}: error:"), err
    assert case.names in err, err
    assert re.search(case.problem, err, re.IGNORECASE), err
    assert _half_written(tmp_path, case.out) == []


@pytest.mark.parametrize("case", APP_CASES, ids=[c.id for c in APP_CASES])
def test_app_forms_refuse_bad_input_in_one_line(case, tmp_path, shared):
    action = case.build(Env(tmp_path, shared))
    with pytest.raises(WorkbenchError) as info:
        action()
    msg = str(info.value)
    assert "\n" not in msg and case.names in msg, msg
    assert re.search(case.problem, msg, re.IGNORECASE), msg
    assert _half_written(tmp_path, case.out) == []


def test_there_are_forty_bad_inputs():
    assert len(CLI_CASES) + len(APP_CASES) >= 40


# ------------------------------------------------------------------------------------------ changing files
def test_a_file_that_shrinks_while_it_is_read(tmp_path):
    """A TIFF cut short between opening and copying: one line naming it, no output."""
    from workbench.io import open_volume, write_ome_zarr

    p = tmp_path / "growing.tif"
    tifffile.imwrite(p, np.random.default_rng(0).integers(0, 255, (8, 64, 64)).astype(np.uint8))
    vol = open_volume(str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(WorkbenchError, match="growing.tif") as info:
        write_ome_zarr(vol, tmp_path / "out.zarr")
    assert "\n" not in str(info.value)
    assert _half_written(tmp_path, "out.zarr") == []


@pytest.mark.parametrize("change", ["removed", "resized"])
def test_a_slice_that_changes_while_a_stack_is_read(tmp_path, change):
    """A slice deleted, or replaced by one of another size, after the folder was opened: one line naming it."""
    from PIL import Image

    from workbench.io import open_volume, write_ome_zarr

    stack = tmp_path / "stack"
    stack.mkdir()
    for z in range(4):
        Image.fromarray(np.full((16, 16), z, np.uint8)).save(stack / f"s{z:02d}.png")
    vol = open_volume(str(stack))
    if change == "removed":
        (stack / "s02.png").unlink()
    else:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(stack / "s02.png")
    with pytest.raises(WorkbenchError, match="s02.png") as info:
        write_ome_zarr(vol, tmp_path / "out.zarr")
    assert "\n" not in str(info.value)
    assert _half_written(tmp_path, "out.zarr") == []


# ------------------------------------------------------------------------------------------ a disk that fills
def _in_full_tmpfs(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) with a 192 kB tmpfs mounted at ``tmp_path/full`` in a private mount namespace."""
    full = tmp_path / "full"
    full.mkdir()
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to mount a small tmpfs without touching the host"
    cmd = f"mount -t tmpfs -o size=192k tmpfs {full} && {script}"
    proc = subprocess.run([unshare, "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "WORKBENCH_NO_REEXEC": "1", "HOME": str(tmp_path)})
    assert "mount:" not in proc.stderr, f"cannot mount a tmpfs here: {proc.stderr}"
    return proc


@pytest.mark.parametrize("what", ["import", "sample"])
def test_a_disk_that_fills_leaves_nothing_under_the_final_name(tmp_path, what):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 255, (8, 256, 256)).astype(np.uint8))
    out = tmp_path / "full" / "out.zarr"
    args = {"import": f"import {src} {out}", "sample": f"sample {out} --shape 8 128 128"}[what]
    proc = _in_full_tmpfs(f"{sys.executable} -m workbench {args} --no-progress; echo rc=$?; ls -A {out.parent}",
                          tmp_path)
    lines = proc.stdout.strip().splitlines()
    assert "rc=2" in lines, proc.stdout + proc.stderr
    assert lines[-1] == "rc=2", f"something was left in the full folder: {lines}"
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0] and "out.zarr" in err[0], proc.stderr


def test_a_disk_that_fills_keeps_the_previous_small_file(tmp_path, monkeypatch):
    """ENOSPC in the middle of an atomic write (simulated: os.write raises it): the old file is unchanged."""
    import errno
    import os

    from workbench.atomic import atomic_write_json
    from workbench.project import Project

    project = Project.create(tmp_path / "p", np.zeros((2, 8, 8), np.uint8))
    before = (project.root / "project.json").read_bytes()
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr("builtins.open", _open_full(open))
    with pytest.raises(WorkbenchError, match="project.json: no space left"):
        project.state["step"] = "train"
    with pytest.raises(WorkbenchError, match="no space left"):
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    monkeypatch.setattr(os, "write", real_write)
    monkeypatch.undo()
    assert (project.root / "project.json").read_bytes() == before
    assert sorted(p.name for p in project.root.iterdir() if p.name.startswith(".")) == []
    assert not (tmp_path / "x.json").exists()


def _open_full(real_open):
    """``open`` whose files raise ENOSPC when written (what a full disk does at write or flush time)."""
    import errno

    class Full:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def opener(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Full(f) if any(m in mode for m in "wax") else f

    return opener
