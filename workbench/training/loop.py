"""The training loop of torch models: one short loop; everything around it is a hook (``hooks.py``)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from workbench.device import pin_batch, prepare_device
from workbench.errors import WorkbenchError
from workbench.precision import autocast
from workbench.training.batches import Prefetcher
from workbench.training.hooks import Step

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.trainer import Trainer


def _running(trainer: Trainer) -> bool:
    """Whether to take another step; a fresh run always takes its first, so even a tiny time budget that the
    set-up used up leaves a trained model (a resumed run with its budget spent takes none)."""
    total = trainer.config.iterations
    in_time = trainer.iteration == 0 or time.monotonic() < trainer.deadline
    return (total is None or trainer.iteration < total) and in_time and not trainer.stopping()


def train_step(trainer: Trainer, batch) -> Step:
    """One optimiser step on ``batch`` (input, target, mask), with every hook around it."""
    x, target, mask = batch
    x = trainer.to_device(x, non_blocking=True)
    target, mask = target.to(trainer.device, non_blocking=True), mask.to(trainer.device, non_blocking=True)
    trainer.clock()
    it = trainer.iteration
    step = Step(it, x, target, mask, lr=trainer.lr_at(it, trainer.train_seconds),
                progress=trainer.done_fraction(it, trainer.train_seconds), input=x)
    for h in trainer.hooks:
        h.before_step(trainer, step)
    for group in trainer.optimizer.param_groups:
        group["lr"] = step.lr
    with autocast(trainer.device, trainer.precision):  # fp32 master weights; the losses cast logits to fp32
        step.logits = trainer.net(step.input)
    loss = trainer.task.loss(step.logits, target, mask)
    for h in trainer.hooks:
        loss = h.loss(trainer, step, loss)
    step.loss = loss
    trainer.optimizer.zero_grad(set_to_none=True)
    if trainer.scaler is not None:
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        loss.backward()
        trainer.optimizer.step()
    step.loss_value = float(loss.detach())
    if not math.isfinite(step.loss_value):
        raise WorkbenchError(f"training diverged (loss {step.loss_value}) at iteration {it}; lower the learning rate")
    trainer.iteration += 1
    trainer.clock()
    total = trainer.config.iterations
    step.is_last = (total is not None and trainer.iteration >= total) or time.monotonic() >= trainer.deadline
    for h in trainer.hooks:
        h.after_step(trainer, step)
    return step


def fit(trainer: Trainer) -> None:
    """Train ``trainer.net`` until its iterations or time budget are used up, a stop is asked, or a hook
    says stop; then the hooks' ``on_train_end`` and the final checkpoint."""
    for h in trainer.hooks:
        h.on_train_start(trainer)
    prepare_device(trainer.device)
    on_cuda = getattr(trainer.device, "type", str(trainer.device)) == "cuda"
    prefetch = Prefetcher(trainer.batches.make, trainer.iteration, trainer.config.prefetch,
                          transfer=pin_batch if on_cuda and trainer.config.prefetch > 0 else None)
    trainer.net.train()
    try:
        while _running(trainer):
            train_step(trainer, prefetch.get())
            if any(h.should_stop(trainer) for h in trainer.hooks):
                break
    finally:
        prefetch.close()
        #: seconds the steps waited for batches (the data pipeline not keeping up; inline: making them)
        trainer.batch_wait_seconds = prefetch.wait_seconds
    trainer.clock()  # a run ended by its deadline used all of its budget
    for h in trainer.hooks:
        h.on_train_end(trainer)
    trainer.save_checkpoint()
