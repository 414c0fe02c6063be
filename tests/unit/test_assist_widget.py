"""The annotate step's help from the model: overlays, suggestions, accepting the prediction in a box,
and the refusal of strokes that cannot be right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.project import Project, ProjectOptions


def _cells(shape=(4, 64, 64), period=16):
    z, y, x = np.indices(shape)
    membrane = ((y % period) < 2) | ((x % period) < 2)
    rng = np.random.default_rng(0)
    raw = np.where(membrane, 50, 170) + rng.integers(-15, 15, size=shape)
    return raw.astype(np.uint8)


@pytest.fixture
def ctx(tmp_path):
    from widgets.context import AppContext

    project = Project.create(tmp_path / "ws" / "demo", raw=_cells(), options=ProjectOptions(voxel_size=(30, 8, 8)))
    c = AppContext(project, workspace=tmp_path / "ws")
    yield c
    c.shutdown()


@pytest.fixture
def trained(ctx):
    """An annotate panel with strokes and a tiny trained run in the project."""
    from widgets.annotate import AnnotatePanel
    from workbench.training import TrainConfig, Trainer

    panel = AnnotatePanel(ctx, size=128)
    store = ctx.project.annotations
    for z in (1, 2):
        store.add_stroke([[z, 16, 4], [z, 16, 60]], 1, width=2)
        store.add_stroke([[z, 8, 4], [z, 8, 60]], 2, width=3)
    cfg = TrainConfig(arch="unet2d", arch_options={"depth": 2, "base_channels": 4}, iterations=4, batch_size=2,
                      patch_shape=(1, 32, 32), device="cpu", calibration="none")  # a 4-step model's raw doubt
    raw = np.asarray(ctx.project.raw[:])
    Trainer(cfg, raw, np.asarray(store.read()), ctx.project.new_run_dir()).run()
    return panel


def test_overlays_and_suggestions_need_a_model_first(ctx):
    from widgets.annotate import AnnotatePanel

    panel = AnnotatePanel(ctx, size=128)
    panel.assist.show_uncertainty.value = True  # guarded: a one-line status, no exception
    assert panel.status.level == "error" and "train one" in panel.status.text
    panel.assist.suggest_btn.click()
    assert "no trained model yet" in panel.status.text


def test_prediction_and_uncertainty_overlays_change_the_view(trained):
    panel, assist = trained, trained.assist
    z = int(panel.z.value)
    plain = panel._overlay(z).copy()
    assist.show_prediction.value = True
    with_pred = panel._overlay(z)
    assert (with_pred[..., 3] > 0).sum() > (plain[..., 3] > 0).sum()  # the prediction fills the unlabelled
    labelled = plain[..., 3] > 0
    assert np.array_equal(with_pred[labelled], plain[labelled])  # strokes stay on top
    assist.show_prediction.value = False
    assist.show_uncertainty.value = True
    heat = panel._overlay(z)
    assert np.any(np.all(heat[..., :3] == (255, 0, 255), axis=-1))


def test_a_clicked_suggestion_moves_the_slice_draws_its_box_and_is_saved(trained, ctx):
    panel, assist = trained, trained.assist
    assist.suggest_btn.click()
    assert panel.status.level == "ok", panel.status.text
    saved = json.loads((ctx.project.root / "suggestions.json").read_text())
    assert len(saved) == len(assist.suggestions) >= 1
    last = len(assist.suggestions) - 1
    assist.list.value = last
    s = assist.suggestions[last]
    assert int(panel.z.value) == s.z
    over = panel._overlay(s.z)
    _, y0, x0, _, y1, x1 = s.box
    assert tuple(over[y0, x0 + 3, :3]) == (255, 225, 25)  # the box outline


def test_accept_prediction_in_the_box_is_one_undoable_edit(trained, ctx):
    panel, assist = trained, trained.assist
    store = ctx.project.annotations
    with pytest.raises(WorkbenchError, match="select a suggestion first"):
        assist.accept_box()
    assist.suggest()
    assist.list.value = 0
    before = store.read().copy()
    edit = assist.accept_box()
    after = store.read()
    z0, y0, x0, z1, y1, x1 = assist.active.box
    changed = after != before
    assert edit.changed == int(changed.sum()) > 0
    assert not changed[:z0].any() and not changed[z1:].any()  # only inside the box
    assert np.array_equal(after[before > 0], before[before > 0])  # the user's strokes win
    assert store.history()[-1]["op"] == "accept" and "prediction of" in store.history()[-1]["source"]
    panel.undo()
    assert np.array_equal(store.read(), before)


def test_strokes_outside_the_volume_or_of_a_deleted_class_are_refused(trained, ctx):
    panel = trained
    n = len(ctx.project.annotations.history())
    with pytest.raises(WorkbenchError, match="outside the volume"):
        panel.add_stroke([[1, -40, -40], [1, -30, -35]], label=1)
    with pytest.raises(WorkbenchError, match="no longer exists"):
        panel.add_stroke([[1, 10, 10], [1, 12, 12]], label=7)
    assert len(ctx.project.annotations.history()) == n  # nothing written


def test_train_after_new_strokes_continues_from_the_last_model(ctx):
    from widgets.train import TrainPanel

    p = ctx.project
    store = p.annotations
    for z in (1, 2):
        store.add_stroke([[z, 16, 4], [z, 16, 60]], 1, width=2)
        store.add_stroke([[z, 8, 4], [z, 8, 60]], 2, width=3)
    p.state.update(arch="unet2d", arch_options={"depth": 2, "base_channels": 4},
                   train={"batch_size": 2, "patch_shape": [1, 32, 32], "precision": "fp32"})
    train = TrainPanel(ctx, live=False)
    assert train.continue_last.value
    train.start(iterations=3)
    train.wait(120)
    first = train.run_dir
    store.add_stroke([[3, 40, 4], [3, 40, 60]], 2, width=3)
    train.start(iterations=3)
    assert train.trainer.config.init == str(first)  # a warm start, not random weights
    train.wait(120)
    assert train.trainer.error is None
    train.continue_last.value = False
    assert p.state["continue_last"] is False
    assert train.make_config(iterations=3).init is None
