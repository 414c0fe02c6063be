"""Training hooks: what happens around the Trainer's one short loop.

The loop (``workbench.training.loop.fit``) does only this per iteration: take a batch, compute the
learning rate, run the network, add up the loss, step the optimiser. Everything else is a :class:`Hook`:
logging and progress, validation, checkpoints, mean teacher, BatchNorm recalibration, early stopping,
the app's live preview; a benchmark or a user adds their own (``Trainer(..., hooks=[MyHook()])``).

A hook overrides only the methods it needs; each gets the running :class:`~workbench.training.Trainer`
(``trainer.net`` is the network being optimised, ``trainer.model`` the one kept for prediction,
``trainer.iteration``, ``trainer.train_seconds``, ``trainer.config``, ``trainer.task``, ...) and, per step,
a :class:`Step`. Hooks run in list order; the built-in ones come first, the caller's after them.

==========================  ========================================================================
method                      called
==========================  ========================================================================
``on_train_start(t)``       once the network, optimiser and resumed state are in place
``before_step(t, step)``    before the forward pass: may replace ``step.input`` or ``step.lr``
``loss(t, step, loss)``     after the supervised loss: returns the loss to optimise (add terms, reweight)
``after_step(t, step)``     after the optimiser step (EMA updates, running averages)
``log_due(t, step)``        True asks for a metrics record at this iteration
``on_log(t, record)``       a metrics record is being made: add keys to it (validation scores)
``should_stop(t)``          True ends training after this iteration (early stopping)
``on_checkpoint(t, state)`` a checkpoint is being written: add or swap entries of ``state``
``on_resume(t, state)``     a checkpoint is being resumed: restore what ``on_checkpoint`` added
``on_checkpoint_saved(t, path)``  a checkpoint is on disk (the app's live preview listens to this)
``kept_model(t)``           the model to keep for prediction, or None (the first non-None wins)
``on_train_end(t)``         after the last iteration, before the final checkpoint
==========================  ========================================================================
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.training.targets import IGNORE_INDEX

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.trainer import Trainer


@dataclass
class Step:
    """One training iteration as the hooks see it (tensors on the training device).

    Attributes:
        iteration: the iteration being trained (0-based; ``trainer.iteration`` is this + 1 after the step).
        x: the network input batch (augmented); ``input``: what the network is given (a hook may change it).
        target, mask: the training targets and their mask.
        lr: the learning rate of this step (a hook may change it in ``before_step``).
        progress: fraction of the run done, 0..1.
        logits, loss: set after the forward pass; ``loss_value``: the float loss after the step.
        is_last: True when the iterations or the time budget end with this step.
    """

    iteration: int
    x: Any
    target: Any
    mask: Any
    lr: float
    progress: float
    input: Any = None
    logits: Any = None
    loss: Any = None
    loss_value: float = math.nan
    is_last: bool = False


class Hook:
    """Base class: every method does nothing. See the module docstring for when each is called."""

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def before_step(self, trainer: Trainer, step: Step) -> None:
        pass

    def loss(self, trainer: Trainer, step: Step, loss):
        return loss

    def after_step(self, trainer: Trainer, step: Step) -> None:
        pass

    def log_due(self, trainer: Trainer, step: Step) -> bool:
        return False

    def on_log(self, trainer: Trainer, record: dict) -> None:
        pass

    def should_stop(self, trainer: Trainer) -> bool:
        return False

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        pass

    def on_resume(self, trainer: Trainer, state: dict) -> None:
        pass

    def on_checkpoint_saved(self, trainer: Trainer, path: Path) -> None:
        pass

    def kept_model(self, trainer: Trainer):
        return None

    def on_train_end(self, trainer: Trainer) -> None:
        pass


# -- logging and progress -------------------------------------------------------------------------------
class MetricsLogger(Hook):
    """Averages the loss between records and logs one every ``log_every`` iterations (and when another hook
    asks, at the first and the last iteration); reports each iteration to the trainer's progress."""

    def __init__(self, log_every: int):
        self.log_every = max(1, int(log_every))
        self._loss, self._n, self._since = 0.0, 0, time.monotonic()
        self._first = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self._first = trainer.iteration + 1
        self._since = time.monotonic()

    def after_step(self, trainer: Trainer, step: Step) -> None:
        self._loss += step.loss_value
        self._n += 1
        postfix = {"loss": f"{step.loss_value:.4f}"}
        if trainer.deadline < math.inf:
            postfix["left"] = f"{max(0.0, trainer.deadline - time.monotonic()):.0f}s"
        trainer.progress.advance(1, postfix)
        it = trainer.iteration
        asked = [h.log_due(trainer, step) for h in trainer.hooks if h is not self]  # every hook is asked
        if it % self.log_every == 0 or step.is_last or it == self._first or any(asked):
            self.record(trainer, step.lr)

    def record(self, trainer: Trainer, lr: float) -> None:
        """Log the loss averaged since the last record (with every hook's additions)."""
        now = time.monotonic()
        rec = {"iteration": trainer.iteration, "elapsed_s": trainer.train_seconds, "loss": self._loss / self._n,
               "lr": lr, "patches_per_s": self._n * trainer.batch_size / max(now - self._since, 1e-9)}
        for h in trainer.hooks:
            h.on_log(trainer, rec)
        trainer.log(rec)
        self._loss, self._n, self._since = 0.0, 0, time.monotonic()

    def on_train_end(self, trainer: Trainer) -> None:
        if self._n:  # a run stopped between records: log what is left
            self.record(trainer, trainer.lr_at(trainer.iteration - 1, trainer.train_seconds))


# -- validation -----------------------------------------------------------------------------------------
def class_scores(pred: np.ndarray, target: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Accuracy and macro F1 over the classes present in prediction or target (flat int arrays)."""
    if target.size == 0:
        return float("nan"), float("nan")
    acc = float((pred == target).mean())
    f1s = []
    for c in range(n_classes):
        tp = np.count_nonzero((pred == c) & (target == c))
        fp = np.count_nonzero((pred == c) & (target != c))
        fn = np.count_nonzero((pred != c) & (target == c))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return acc, float(np.mean(f1s)) if f1s else float("nan")


class Validation(Hook):
    """Scores held-out batches (``val_loss``, ``val_accuracy``, ``val_f1``) every ``every`` iterations and at
    the end; the batches are drawn once (seeded) and reused, so the curve compares like with like."""

    def __init__(self, batches: list, every: int):
        self.batches = batches
        self.every = max(1, int(every))
        self.last: dict = {}
        self._due = False

    def log_due(self, trainer: Trainer, step: Step) -> bool:
        self._due = bool(self.batches) and (trainer.iteration % self.every == 0 or step.is_last)
        return self._due

    def on_log(self, trainer: Trainer, record: dict) -> None:
        if self._due:
            self.last = self.scores(trainer)
            record.update(self.last)
            self._due = False

    def scores(self, trainer: Trainer) -> dict:
        """Loss, accuracy and macro F1 of ``trainer.net`` on the validation batches."""
        import torch

        from workbench.precision import autocast

        if not self.batches:
            return {}
        net, task = trainer.net, trainer.task
        net.eval()
        losses, preds, targets = [], [], []
        precision = getattr(trainer, "precision", "fp32")  # the training's: scores what training sees
        with torch.no_grad():
            for x, t, m in self.batches:
                x = trainer.to_device(x)
                t, m = t.to(trainer.device), m.to(trainer.device)
                with autocast(trainer.device, precision):
                    logits = net(x)
                logits = logits.float()
                losses.append(float(task.loss(logits, t, m)))
                keep = (t != IGNORE_INDEX) if task.activation == "softmax" else (m > 0)
                pred = logits.argmax(1) if task.activation == "softmax" else (logits > 0).long()
                preds.append(pred[keep].cpu().numpy())
                targets.append(t[keep].long().cpu().numpy())
        net.train()
        n_classes = task.out_channels if task.activation == "softmax" else 2
        acc, f1 = class_scores(np.concatenate(preds), np.concatenate(targets), n_classes)
        return {"val_loss": float(np.mean(losses)), "val_accuracy": acc, "val_f1": f1}


class EarlyStopping(Hook):
    """Stops when the validation loss has not improved by ``min_delta`` for ``patience`` validations; with
    ``keep_best`` the model kept is the one of the best validation (its weights are copied when it improves).

    Needs a :class:`Validation` hook before it in the list (the Trainer adds one when validation is set up).
    """

    def __init__(self, patience: int, min_delta: float = 0.0, keep_best: bool = True):
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.keep_best = keep_best
        self.best = math.inf
        self.best_iteration = 0
        self.bad = 0
        self._best_model = None

    def on_log(self, trainer: Trainer, record: dict) -> None:
        loss = record.get("val_loss")
        if loss is None or not math.isfinite(loss):
            return
        if loss < self.best - self.min_delta:
            self.best, self.best_iteration, self.bad = loss, trainer.iteration, 0
            if self.keep_best:
                self._best_model = copy.deepcopy(trainer.net).eval()
        else:
            self.bad += 1

    def should_stop(self, trainer: Trainer) -> bool:
        return self.patience > 0 and self.bad >= self.patience

    def kept_model(self, trainer: Trainer):
        return self._best_model

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        state["early_stopping"] = {"best_val_loss": self.best, "best_iteration": self.best_iteration,
                                   "bad": self.bad}

    def on_resume(self, trainer: Trainer, state: dict) -> None:
        es = state.get("early_stopping") or {}
        self.best = float(es.get("best_val_loss", math.inf))
        self.best_iteration = int(es.get("best_iteration", 0))
        self.bad = int(es.get("bad", 0))


# -- checkpoints ----------------------------------------------------------------------------------------
class Checkpointing(Hook):
    """Writes the checkpoint every ``seconds`` of training and once more at the end (atomically)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self._last = time.monotonic()

    def on_train_start(self, trainer: Trainer) -> None:
        self._last = time.monotonic()

    def after_step(self, trainer: Trainer, step: Step) -> None:
        if time.monotonic() - self._last >= self.seconds:
            trainer.save_checkpoint()
            self._last = time.monotonic()


# -- mean teacher ---------------------------------------------------------------------------------------
class MeanTeacherHook(Hook):
    """Mean-teacher self-training (``workbench.training.semisupervised.MeanTeacher``) as a hook: the student
    sees a strong view, the teacher's confident pseudo-labels of the unlabelled voxels add a loss term, the
    teacher follows the student by EMA and is the model kept (the checkpoint's ``model``)."""

    def __init__(self, teacher):
        self.semi = teacher

    def before_step(self, trainer: Trainer, step: Step) -> None:
        step.input = self.semi.student_input(step.x, step.iteration)

    def loss(self, trainer: Trainer, step: Step, loss):
        return loss + self.semi.loss(step.x, step.logits, step.target != IGNORE_INDEX, step.progress)

    def after_step(self, trainer: Trainer, step: Step) -> None:
        self.semi.after_step(trainer.net)

    def kept_model(self, trainer: Trainer):
        return self.semi.model

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        state.update({"student": trainer.net.state_dict(), "semi": self.semi.state_dict()})

    def on_resume(self, trainer: Trainer, state: dict) -> None:
        import torch

        if "semi" not in state:
            return
        trainer.net.load_state_dict(state["student"])  # "model" holds the teacher
        self.semi.load_state_dict(state["semi"])
        with torch.no_grad():  # the teacher's statistics are the student's after every step
            for teacher_buf, student_buf in zip(self.semi.model.buffers(), trainer.net.buffers()):
                teacher_buf.copy_(student_buf)


# -- BatchNorm recalibration ----------------------------------------------------------------------------
class BatchNormRecalibration(Hook):
    """When training ends, recomputes the kept model's BatchNorm statistics over tiles of the whole
    (normalised) training volume; the statistics training reached are kept in the checkpoint
    (``bn_training``) so a resumed run trains on from them."""

    def __init__(self, volume: np.ndarray, tile: list[int], seed: int = 0):
        self.volume = volume
        self.tile = tile
        self.seed = seed
        self.bn_training: dict = {}
        self.report: dict | None = None

    def on_resume(self, trainer: Trainer, state: dict) -> None:
        if state.get("bn_training"):  # the statistics training had reached, before their recalibration
            trainer.net.load_state_dict(state["bn_training"], strict=False)

    def on_train_end(self, trainer: Trainer) -> None:
        from workbench.training.batchnorm import TileSampling, batchnorm_buffers, recalibrate_batchnorm

        if trainer.model is trainer.net:  # a teacher's statistics are copied from the student at each step
            self.bn_training.update(batchnorm_buffers(trainer.net))
        sampling = TileSampling(tuple(self.tile), trainer.info.dims, seed=self.seed)
        self.report = recalibrate_batchnorm(trainer.model, self.volume, sampling, trainer.device,
                                            trainer.memory_format)
        trainer.bn_recalibration = self.report

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        if self.bn_training:
            state["bn_training"] = self.bn_training
            state["bn_recalibration"] = self.report


# -- events for the app ---------------------------------------------------------------------------------
class OnCheckpoint(Hook):
    """Calls ``fn(path, iteration)`` each time a checkpoint is on disk (in the training thread)."""

    def __init__(self, fn: Callable[[Path, int], Any]):
        self.fn = fn

    def on_checkpoint_saved(self, trainer: Trainer, path: Path) -> None:
        self.fn(path, trainer.iteration)
