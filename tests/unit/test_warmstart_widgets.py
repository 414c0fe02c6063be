"""The app's warm start: a warm-up in the Train step, a model file in the Architecture step, and the Results
step's from-scratch / warm-started comparison (panels driven without a browser)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.project import Project, ProjectOptions


def _membrane_volume(shape=(3, 64, 64), period=16):
    z, y, x = np.indices(shape)
    membrane = ((y % period) < 2) | ((x % period) < 2)
    raw = np.where(membrane, 50, 170) + np.random.default_rng(0).integers(-15, 15, size=shape)
    return raw.astype(np.uint8), np.where(membrane, 1, 2).astype(np.uint8)


@pytest.fixture
def ctx(tmp_path):
    from widgets.context import AppContext

    raw, truth = _membrane_volume()
    project = Project.create(tmp_path / "workspace" / "demo", raw=raw, options=ProjectOptions(voxel_size=(30, 8, 8)),
                             truth=truth)
    project.annotations.import_labels(np.where(np.indices(raw.shape)[1] % 8 == 0, truth, 0).astype(np.uint8))
    project.state.update(arch="unet2d", arch_options={"depth": 2, "base_channels": 4},
                         train={"batch_size": 2, "patch_shape": [1, 32, 32]})
    (tmp_path / "data").mkdir()
    c = AppContext(project, workspace=tmp_path / "workspace", data_root=tmp_path / "data")
    yield c
    c.shutdown()


def test_warm_up_then_train_then_compare(ctx):
    from widgets.architecture import ArchitecturePanel
    from widgets.results import ResultsPanel
    from widgets.train import TrainPanel

    project = ctx.project
    train = TrainPanel(ctx, live=False)
    results = ResultsPanel(ctx, size=96)
    train.start(iterations=4)  # from scratch
    train.wait(120)
    assert train.trainer.error is None
    train.warm_up.button.click()  # the warm-up: same progress, curves and stop as training
    assert train.running and train.stop_btn.disabled is False
    with pytest.raises(WorkbenchError, match="already running"):
        train.warm_up.start(iterations=2)
    train.wait(120)
    assert train.trainer.error is None and train.history and "warm-up finished" in train.status.text
    warm_run = project.runs()[-1]
    assert warm_run.config["pretext"] and project.state["init_model"] == str(warm_run.path)
    assert warm_run.id not in [v for _, v in results.run.options]  # a warm-up predicts no classes

    arch = ArchitecturePanel(ctx, measure=False)
    assert str(warm_run.path) in arch.model_file.choices.options
    assert "starts from" in arch.model_file.note.value and warm_run.id in arch.model_file.note.value

    train.start(iterations=4)  # fine-tunes the warm-up
    train.wait(120)
    assert train.trainer.error is None
    assert "re-initialised" in train.history[0]["init"]
    compare = results.runs_compare
    compare.refresh()
    assert not compare.button.disabled
    scores = compare.compare(z=1)
    assert set(scores) == {"from scratch", "warm-started"}
    assert all("pixel_error" in s and "uncertainty" in s for s in scores.values())
    assert len(compare.views_box.children) == 2 and "pixel error" in compare.scores.value


def test_model_file_picker_stays_inside_the_data_root_and_checks_the_file(ctx, tmp_path):
    from widgets.architecture import ArchitecturePanel

    arch = ArchitecturePanel(ctx, measure=False)
    picker = arch.model_file
    with pytest.raises(WorkbenchError, match="outside the data root"):
        picker.use("/etc/passwd")
    (tmp_path / "data" / "junk.pt").write_bytes(b"nothing")
    with pytest.raises(WorkbenchError, match="not a readable torch file"):
        picker.use("junk.pt")
    picker.refresh()
    assert "junk.pt" in " ".join(picker.choices.options)
    assert not ctx.project.state.get("init_model")
    picker.clear()
    assert "random weights" in picker.note.value
