"""The app's panels driven without a browser: set values, click buttons, check the project on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from workbench.errors import WorkbenchError
from workbench.project import Project, ProjectOptions
from workbench.training.checkpoint import load_checkpoint


def _membrane_volume(shape=(4, 64, 64), period=16):
    """Cells on a grid: dark membranes (truth 1) between bright interiors (truth 2)."""
    z, y, x = np.indices(shape)
    membrane = ((y % period) < 2) | ((x % period) < 2)
    rng = np.random.default_rng(0)
    raw = np.where(membrane, 50, 170) + rng.integers(-15, 15, size=shape)
    return raw.astype(np.uint8), np.where(membrane, 1, 2).astype(np.uint8)


@pytest.fixture
def project(tmp_path):
    raw, truth = _membrane_volume()
    return Project.create(tmp_path / "workspace" / "demo", raw=raw, options=ProjectOptions(voxel_size=(30, 8, 8)),
                          truth=truth)


@pytest.fixture
def ctx(project, tmp_path):
    from widgets.context import AppContext

    data_root = tmp_path / "data"
    data_root.mkdir()
    c = AppContext(project, workspace=tmp_path / "workspace", data_root=data_root)
    yield c
    c.shutdown()


def _scribble(panel, label, y):
    """A horizontal stroke at image row ``y`` (voxel row) through the middle slice, as if drawn."""
    panel.label_select.value = label
    n = panel.view.shape[1]
    panel.view.simulate_stroke(xs=[4, 20, 40, 60], ys=[n - y] * 4)


def test_slice_view_maps_image_points_to_voxels():
    from widgets.slice_view import stroke_to_voxels

    pts = stroke_to_voxels([0, 10, 10, 63.9], [64, 54, 54, 0.5], z=3, shape_yx=(64, 64))
    assert pts.shape == (3, 3)  # the repeated point is dropped
    np.testing.assert_allclose(pts[0], [3, 0, 0])
    np.testing.assert_allclose(pts[1], [3, 10, 10])
    np.testing.assert_allclose(pts[2], [3, 63.5, 63.9])


def test_data_panel_shows_the_volume_and_opens_files_inside_the_root(ctx, tmp_path):
    import tifffile

    from widgets.data import DataPanel

    panel = DataPanel(ctx)
    assert "4 × 64 × 64" in panel.info.value and "uint8" in panel.info.value and "30, 8, 8" in panel.info.value
    assert "wb-step-data" in panel.widget._dom_classes
    assert panel.z.max == 3

    tifffile.imwrite(ctx.data_root / "stack.tif", np.zeros((2, 32, 48), np.uint8))
    panel.browser.refresh()
    assert "stack.tif" in panel.browser.listing.options
    assert "../" not in panel.browser.listing.options  # at the root: no way up
    panel.browser.listing.value = "stack.tif"
    assert panel.browser.path.value == "stack.tif"
    panel.voxel.value = "40, 4, 4"
    panel.open_btn.click()
    assert panel.status.level == "ok", panel.status.text
    assert ctx.project.name == "stack.tif" and ctx.project.shape == (2, 32, 48)
    assert ctx.project.voxel_size == (40.0, 4.0, 4.0)
    assert "2 × 32 × 48" in panel.info.value

    # the browser cannot leave the data root, by path or by a typed ../
    with pytest.raises(WorkbenchError, match="outside the data root"):
        panel.browser.inside(tmp_path)
    panel.browser.path.value = "../workspace"
    panel.open_btn.click()
    assert panel.status.level == "error" and "outside the data root" in panel.status.text
    assert "Traceback" not in panel.status.text


def test_data_panel_reports_unreadable_files_in_one_line(ctx):
    from widgets.data import DataPanel

    panel = DataPanel(ctx)
    (ctx.data_root / "broken.tif").write_bytes(b"not a tiff")
    panel.browser.path.value = "broken.tif"
    panel.open_btn.click()
    assert panel.status.level == "error"
    assert "broken.tif" in panel.status.text and "\n" not in panel.status.text


def test_architecture_panel_choose_and_advanced_options(ctx):
    from widgets.architecture import ArchitecturePanel

    panel = ArchitecturePanel(ctx, measure=False)
    assert {"unet2d", "unet3d"} <= set(panel.cards)
    assert "2D" in panel.card_html["unet2d"].value and "parameters" in panel.card_html["unet2d"].value
    panel.buttons["unet3d"].click()
    assert ctx.project.state["arch"] == "unet3d"
    assert panel.buttons["unet3d"].description == "Chosen"
    panel.buttons["unet2d"].click()
    assert ctx.project.state["arch"] == "unet2d"
    assert panel.advanced.selected_index is None  # folded

    panel.option_widgets["base_channels"].value = 8
    panel.batch.value = 2
    panel.apply_btn.click()
    assert panel.status.level == "ok", panel.status.text
    assert ctx.project.state["arch_options"]["base_channels"] == 8
    assert ctx.project.state["train"]["batch_size"] == 2
    assert ctx.project.state["train"]["precision"] == "auto" and panel.precision.options == ("auto", "fp32", "bf16")
    panel.precision.value = "bf16"  # saved like the other advanced options, given to the TrainConfig
    panel.apply_btn.click()
    assert panel.status.level == "ok", panel.status.text
    assert ctx.project.state["train"]["precision"] == "bf16"
    from widgets.train import TrainPanel

    assert TrainPanel(ctx).make_config(iterations=2).precision == "bf16"
    panel.refresh()
    assert panel.precision.value == "bf16"
    assert ctx.project.state["train"]["crf_weight"] == 0.0  # the smoothness loss: off unless chosen
    panel.crf.value = 1.5
    panel.apply_btn.click()
    assert TrainPanel(ctx).make_config(iterations=2).crf_weight == 1.5

    panel.patch.value = "4, 64, 64"  # a 2D model needs z = 1
    panel.apply_btn.click()
    assert panel.status.level == "error" and "2D" in panel.status.text

    with pytest.raises(WorkbenchError, match="unet2d"):
        panel.choose("unet")


def test_annotate_panel_saves_strokes_undo_clear_and_classes(ctx, project):
    from widgets.annotate import ERASER, AnnotatePanel

    panel = AnnotatePanel(ctx, size=256)
    panel.z.value = 2
    assert project.state["annotate_z"] == 2
    _scribble(panel, 1, y=16)
    _scribble(panel, 2, y=8)
    counts = project.annotations.counts()
    assert counts[1] > 0 and counts[2] > 0
    labels = project.annotations.read()
    assert labels[2, 16, 30] == 1 and labels[2, 8, 30] == 2  # image y=N-16 is voxel row 16
    assert not labels[[0, 1, 3]].any()
    assert "wb-count-1" in panel.counts.value

    # a second session on the same folder finds the strokes
    again = Project.open(project.root)
    assert again.annotations.counts() == project.annotations.counts()
    assert len((project.root / "annotations.jsonl").read_text().splitlines()) >= 2

    panel.undo_btn.click()
    assert 2 not in project.annotations.counts()
    _scribble(panel, ERASER, y=16)
    assert 1 not in project.annotations.counts()

    panel.clear_btn.click()  # first click only asks
    assert project.annotations.counts() == {} or panel.status.level == "busy"
    _scribble(panel, 1, y=30)
    panel.clear_btn.click()
    assert project.annotations.counts() != {}
    panel.clear_btn.click()
    assert project.annotations.counts() == {}

    panel.new_name.value = "mitochondrion"
    panel.add_btn.click()
    assert [c.name for c in project.classes][-1] == "mitochondrion"
    assert panel.label_select.value == 3
    panel.class_rows.children[0].children[2].value = "membranes"
    assert project.get_class(1).name == "membranes"
    panel.class_rows.children[0].children[1].value = "#00ffff"
    assert project.get_class(1).color == "#00ffff"
    panel.class_rows.children[1].children[2].value = "membranes"  # duplicate name: refused in one line
    assert panel.status.level == "error" and "already" in panel.status.text


def test_app_resumes_step_and_labels(ctx, project, tmp_path):
    from widgets.app import STEPS, WorkbenchApp

    app = WorkbenchApp(project, workspace=tmp_path / "workspace", watchdog=False,
                       panel_options={"architecture": {"measure": False}})
    assert app.tabs.selected_index == 0 and "data" in app.panels
    assert [app.tabs.get_title(i) for i in range(len(STEPS))][2] == "3 Annotate"
    app.tabs.selected_index = 2
    assert "annotate" in app.panels and project.state["step"] == "annotate"
    _scribble(app.panels["annotate"], 1, y=16)
    app.close()

    again = WorkbenchApp(Project.open(project.root), watchdog=False)
    assert again.tabs.selected_index == 2
    assert again.project.annotations.counts()[1] > 0
    again.close()


def test_from_env_uses_workbench_project(tmp_path, monkeypatch, project):
    from widgets.app import WorkbenchApp

    monkeypatch.setenv("WORKBENCH_PROJECT", str(project.root))
    monkeypatch.setenv("WORKBENCH_DATA_ROOT", str(tmp_path))
    app = WorkbenchApp.from_env(watchdog=False)
    assert app.project.root == project.root
    assert app.panels["data"].browser is not None
    app.close()


def _check_prediction_precision(results, project) -> None:
    """The default (auto) is recorded resolved; bf16, where the CPU has it, is saved and recorded too."""
    from workbench.precision import bf16_supported, resolve_precision

    assert json.loads((results.pred_path() / ".zattrs").read_text())["workbench"]["precision"] == \
        resolve_precision("auto", "cpu")
    if bf16_supported("cpu"):
        results.tta.value = False
        results.precision.value = "bf16"
        assert project.state["predict_precision"] == "bf16"
        results.predict(wait=True)
        assert results.status.level == "ok", results.status.text
        assert json.loads((results.pred_path() / ".zattrs").read_text())["workbench"]["precision"] == "bf16"
        results.precision.value = "fp32"


def _check_run_inputs(run, project) -> None:
    """A run of the app records which strokes (journal length, labelled voxels) and which recipe it had."""
    inputs = json.loads((run.path / "inputs.json").read_text())
    assert inputs["journal_entries"] > 0 and sum(inputs["labelled_voxels"].values()) == sum(
        project.annotations.counts().values())
    assert inputs["recipe"] is None or inputs["recipe"].startswith("recipe: ")


def _check_own_run_is_kept(results, project, run) -> None:
    """A newer run trained by another page of the same project is listed, but this page keeps its own, also
    in a Results step first shown (built) after the training finished."""
    import shutil

    from widgets.results import ResultsPanel

    other = project.runs_path / (run.id + "-9")
    shutil.copytree(run.path, other)
    results.refresh_runs()
    assert results.run.value == run.id
    assert other.name in [v for _, v in results.run.options]
    assert ResultsPanel(results.ctx, size=64).run.value == run.id
    shutil.rmtree(other)
    results.refresh_runs()


def test_train_then_results(ctx, project):
    from widgets.annotate import AnnotatePanel
    from widgets.results import ResultsPanel
    from widgets.train import TrainPanel

    ann = AnnotatePanel(ctx, size=256)
    for z in (1, 2):
        ann.z.value = z
        _scribble(ann, 1, y=16)
        _scribble(ann, 1, y=32)
        _scribble(ann, 2, y=8)
        _scribble(ann, 2, y=24)
    project.state.update(arch="unet2d", arch_options={"depth": 2, "base_channels": 8},
                         train={"batch_size": 2, "patch_shape": [1, 32, 32]})
    train = TrainPanel(ctx)
    assert "CPU" in train.device.value
    results = ResultsPanel(ctx, size=128)
    assert results.predict_btn.disabled  # nothing trained yet

    shown_when_done = []
    train.progress_text.observe(lambda ch: ch["new"].startswith("done") and shown_when_done.append(results.run.value),
                                "value")
    train.start(iterations=12)
    assert train.stop_btn.disabled is False
    with pytest.raises(WorkbenchError, match="already running"):
        train.start(iterations=5)
    train.wait(120)
    assert train.trainer.error is None
    assert train.progress.value == 1.0 and train.start_btn.disabled is False
    assert train.history and train.history[-1]["iteration"] == 12
    run = project.runs()[-1]
    assert run.checkpoint is not None and json.loads((run.path / "config.json").read_text())["arch"] == "unet2d"
    _check_run_inputs(run, project)
    assert project.state["last_run"] == run.id
    # a reloaded page: the last run's curves are sent again at the first tick, once the plot is on the page
    again = TrainPanel(ctx, live=False)
    sent = []
    again._loss_pipe.send = sent.append
    again.poll()
    assert len(sent) == 1 and len(sent[0]) == len([h for h in train.history if "loss" in h])
    again.poll()
    assert len(sent) == 1  # once

    # results lists the run (the "run" event), predicts in the background, scores against the truth
    assert results.run.value == run.id and not results.predict_btn.disabled
    assert shown_when_done == [run.id]  # Results knew this run before the page said "done"
    _check_own_run_is_kept(results, project, run)
    assert results.tta.value is bool(load_checkpoint(run.path / "checkpoint.pt")["prediction_defaults"]["tta"])
    results.tta.value = False  # the run's recommendation is the default; one view first
    results.predict(wait=True)
    assert results.status.level == "ok", results.status.text
    assert results.pred_path().exists()
    assert "pixel error" in results.metrics.value
    assert [n for n, _ in results.views] == ["raw", "prediction", "ground truth"]
    plain = np.asarray(zarr.open_array(str(results.pred_path() / "0"), mode="r"))
    results.tta.value = True  # the 8 rotations and flips, recorded with the prediction
    results.predict(wait=True)
    assert results.status.level == "ok", results.status.text
    assert json.loads((results.pred_path() / ".zattrs").read_text())["workbench"]["tta"] is True
    assert not np.array_equal(np.asarray(zarr.open_array(str(results.pred_path() / "0"), mode="r")), plain)
    _check_prediction_precision(results, project)
    results.seg_method.value = "cc"
    results.seg_channel.value = 1
    results.segment_btn.click()
    assert results.status.level == "ok", results.status.text
    assert results.seg_path().exists() and [n for n, _ in results.views][2] == "instances"
    results.seg_method.value = "watershed"
    results.seg_merge.value = 0.5
    results.segment_btn.click()
    assert results.status.level == "ok", results.status.text
    assert json.loads((results.seg_path() / ".zattrs").read_text())["workbench"]["merge_threshold"] == 0.5
    for what in ("zarr", "tiff", "model"):
        path = results.export(what)
        assert path.exists() and path.parent == project.root / "exports"

    # a new page on the same project shows the last run's curve
    again = TrainPanel(ctx, live=False)
    assert again.history and "last run" in again.progress_text.value


def test_train_panel_reports_missing_labels(ctx):
    from widgets.train import TrainPanel

    panel = TrainPanel(ctx, live=False)
    panel.start_btn.click()
    assert panel.status.level == "error"
    assert "label" in panel.status.text.lower() and "Traceback" not in panel.status.text
    assert panel.start_btn.disabled is False


def test_watchdog_ends_the_session_without_heartbeats():
    import time

    from widgets.lifecycle import SessionWatchdog

    ended = []
    dog = SessionWatchdog(timeout=0.6, interval=0.1, enabled=True, exit_process=False)
    dog.on_end(lambda: ended.append("cleanup"))
    dog.start()
    for _ in range(5):  # the page's heartbeat keeps it alive
        dog.heartbeat.value += 1
        time.sleep(0.1)
    assert not dog.ended and dog.beats == 5
    time.sleep(1.5)  # the page is gone
    assert dog.ended and ended == ["cleanup"] and "no page" in dog.reason


def test_watchdog_is_off_outside_voila(monkeypatch):
    from widgets.lifecycle import SessionWatchdog

    monkeypatch.delenv("VOILA_APP_PORT", raising=False)
    monkeypatch.delenv("VOILA_BASE_URL", raising=False)
    monkeypatch.delenv("WORKBENCH_WATCHDOG", raising=False)
    assert not SessionWatchdog().enabled
    monkeypatch.setenv("VOILA_APP_PORT", "1")
    assert SessionWatchdog().enabled
    monkeypatch.setenv("WORKBENCH_WATCHDOG", "0")
    assert not SessionWatchdog().enabled


def test_data_panel_offers_the_volume_the_app_was_started_on(project, tmp_path):
    import tifffile

    from widgets.context import AppContext
    from widgets.data import SOURCES, DataPanel

    tif = tmp_path / "data" / "one.tif"
    tif.parent.mkdir()
    tifffile.imwrite(tif, np.zeros((2, 16, 16), np.uint8))
    ctx = AppContext(project, workspace=tmp_path / "workspace", data_root=tif)
    panel = DataPanel(ctx)
    assert ctx.data_root == tif.parent and panel.browser.path.value == "one.tif"
    assert panel.source.value == SOURCES[2]
    panel.open_btn.click()
    assert ctx.project.shape == (2, 16, 16), panel.status.text
