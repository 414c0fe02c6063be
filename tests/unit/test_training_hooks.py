"""The Trainer's hooks: the documented interface, early stopping, the checkpoint event, the benchmark recipes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_trainer import _config as _trainer_config
from test_training_trainer import _data

from workbench.training import Hook, Trainer, load_run
from workbench.training.checkpoint import load_checkpoint
from workbench.training.hooks import EarlyStopping, MetricsLogger, OnCheckpoint, Validation


def _config(**kw):
    return _trainer_config(**{"iterations": 6, "log_every": 2, **kw})


class Recorder(Hook):
    """Writes down every call it gets, and adds to the loss, the log and the checkpoint."""

    def __init__(self):
        self.calls: list[str] = []
        self.inputs_changed = 0

    def on_train_start(self, trainer):
        self.calls.append("start")

    def before_step(self, trainer, step):
        self.calls.append(f"before {step.iteration}")
        step.input = step.input * 1.0  # a hook may replace the network input
        self.inputs_changed += 1

    def loss(self, trainer, step, loss):
        assert step.logits is not None
        return loss + 0.0 * step.logits.sum()

    def after_step(self, trainer, step):
        assert trainer.iteration == step.iteration + 1 and np.isfinite(step.loss_value)
        self.calls.append(f"after {step.iteration}")

    def on_log(self, trainer, record):
        record["recorder"] = len(self.calls)

    def on_checkpoint(self, trainer, state):
        state["recorder"] = {"calls": len(self.calls)}

    def on_train_end(self, trainer):
        self.calls.append("end")


def test_a_hook_sees_every_step_and_extends_logs_and_checkpoints(tmp_path):
    raw, labels = _data()
    rec = Recorder()
    trainer = Trainer(_config(val_slices=[2]), raw, labels, tmp_path / "run", hooks=[rec])
    trainer.run()
    assert rec.calls[0] == "start" and rec.calls[-1] == "end"
    assert [c for c in rec.calls if c.startswith("after")] == [f"after {i}" for i in range(6)]
    assert rec.inputs_changed == 6
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("recorder" in r for r in lines)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["recorder"]["calls"] == len(rec.calls)
    # the built-in hooks come first, the caller's last
    kinds = [type(h) for h in trainer.hooks]
    assert kinds.index(Validation) < kinds.index(MetricsLogger) < kinds.index(Recorder) == len(kinds) - 1


def test_a_hook_can_stop_training(tmp_path):
    class StopAtThree(Hook):
        def should_stop(self, trainer):
            return trainer.iteration >= 3

    raw, labels = _data()
    trainer = Trainer(_config(iterations=50), raw, labels, tmp_path / "run", hooks=[StopAtThree()])
    trainer.run()
    assert trainer.iteration == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 3


def test_checkpoint_event_reaches_the_listener(tmp_path):
    raw, labels = _data()
    seen = []
    trainer = Trainer(_config(checkpoint_seconds=0.0), raw, labels, tmp_path / "run",
                      hooks=[OnCheckpoint(lambda path, it: seen.append((Path(path).name, it)))])
    trainer.run()
    assert seen[-1] == ("checkpoint.pt", 6)
    assert [it for _, it in seen][:-1] == list(range(1, 7))  # every step (interval 0) and once at the end


def test_early_stopping_stops_when_validation_stops_improving_and_keeps_the_best_model(tmp_path):
    raw, labels = _data()
    cfg = _config(iterations=200, val_slices=[2], val_every=1, bn_recalibration=False)
    # an improvement has to be larger than 1.0 to count: the first validation sets the best, two more end it
    trainer = Trainer(cfg, raw, labels, tmp_path / "run", hooks=[EarlyStopping(2, min_delta=1.0)])
    trainer.run()
    es = trainer.hook(EarlyStopping)
    assert trainer.iteration == 3 and es.best_iteration == 1 and es.bad == 2
    assert trainer.model is not trainer.net  # the model of the best validation is kept
    kept = load_run(tmp_path / "run", device="cpu").model
    for a, b in zip(kept.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["early_stopping"]["best_iteration"] == 1


def test_early_stopping_from_the_config(tmp_path):
    raw, labels = _data()
    trainer = Trainer(_config(val_slices=[2], early_stopping=3), raw, labels, tmp_path / "run")
    assert trainer.hook(EarlyStopping) is None  # hooks are made when training starts
    trainer.run()
    assert trainer.hook(EarlyStopping).patience == 3
    no_val = Trainer(_config(early_stopping=3), raw, labels, tmp_path / "run2")
    no_val.run()
    assert no_val.hook(EarlyStopping) is None  # nothing to watch without validation


def test_early_stopping_needs_a_non_negative_patience():
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="early_stopping"):
        _config(early_stopping=-1).validate()


@pytest.fixture
def explore_hooks():
    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import explore_hooks

        yield explore_hooks
    finally:
        sys.path.remove(str(bench))


@pytest.mark.parametrize("recipe", ["swa", "ema", "cycles", "entropy", "self-train"])
def test_benchmark_recipes_run_on_the_trainer(tmp_path, explore_hooks, recipe):
    raw, labels = _data()
    hooks = explore_hooks.RECIPES[recipe]()
    trainer = Trainer(_config(iterations=8, warmup=1), raw, labels, tmp_path / "run", hooks=hooks)
    trainer.run()
    assert trainer.iteration == 8
    predictor = load_run(tmp_path / "run", device="cpu")
    probs = predictor.predict(raw)
    assert probs.shape == (2, *raw.shape) and np.isfinite(probs).all()
    if recipe in ("swa", "ema"):
        assert trainer.model is not trainer.net  # the averaged weights are the model kept
    if recipe == "cycles":
        assert len(hooks[0].snapshots) == 2
    if recipe == "self-train":
        assert hooks[0].rounds and hooks[0].rounds[0]["labelled"] >= float((labels > 0).mean())
