"""Exploration recipes for sparse labels, as hooks of the workbench Trainer (``Trainer(..., hooks=[...])``).

Each recipe is a plain :class:`workbench.training.Hook`; ``bench_sparse.py --recipe NAME`` trains a run with
it and scores the model it keeps. Their earlier figures (``exploration_*`` in results/sparse.json) found no
gain over the Trainer's defaults; they stay runnable so the next idea starts from a working baseline.

- ``swa``: stochastic weight averaging: the uniform average of the weights from ``start`` of the run on is
  the model kept (its BatchNorm statistics are then recomputed on the volume, as for every run).
- ``ema``: an exponential moving average of the weights is the model kept.
- ``cycles``: cosine restarts; the network at the end of each cycle is kept in ``snapshots`` (an ensemble).
- ``entropy``: entropy minimisation on the unlabelled voxels of each batch.
- ``self-train``: at the given points of the run, the unlabelled training voxels that a BatchNorm-recalibrated
  copy of the network predicts with probability above ``threshold`` become labels.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from workbench.training import Hook, Step
from workbench.training.batchnorm import TileSampling, recalibrate_batchnorm
from workbench.training.sampler import PatchSampler
from workbench.training.targets import IGNORE_INDEX


def _frozen_copy(net):
    model = copy.deepcopy(net).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class WeightAveraging(Hook):
    """Uniform average of the weights from ``start`` (fraction of the run) on; the average is kept."""

    def __init__(self, start: float = 0.6):
        self.start = float(start)
        self.average = None
        self.n = 0

    def after_step(self, trainer, step: Step) -> None:
        import torch

        if step.progress < self.start:
            return
        if self.average is None:
            self.average = _frozen_copy(trainer.net)
        self.n += 1
        with torch.no_grad():
            for qa, qm in zip(self.average.parameters(), trainer.net.parameters()):
                qa.add_(qm.detach() - qa, alpha=1.0 / self.n)
            for ba, bm in zip(self.average.buffers(), trainer.net.buffers()):
                ba.copy_(bm)

    def kept_model(self, trainer):
        return self.average


class EmaWeights(Hook):
    """An exponential moving average of the weights (``decay`` per step, after ``warmup`` steps) is kept."""

    def __init__(self, decay: float = 0.99, warmup: int = 20):
        self.decay = float(decay)
        self.warmup = int(warmup)
        self.ema = None

    def on_train_start(self, trainer) -> None:
        self.ema = _frozen_copy(trainer.net)

    def after_step(self, trainer, step: Step) -> None:
        import torch

        d = self.decay if step.iteration >= self.warmup else 0.0
        with torch.no_grad():
            for qe, qm in zip(self.ema.parameters(), trainer.net.parameters()):
                qe.mul_(d).add_(qm.detach(), alpha=1 - d)
            for be, bm in zip(self.ema.buffers(), trainer.net.buffers()):
                be.copy_(bm)

    def kept_model(self, trainer):
        return self.ema


class SnapshotCycles(Hook):
    """Cosine learning rate restarted ``cycles`` times; ``snapshots`` holds the weights at each cycle's end."""

    def __init__(self, cycles: int = 3):
        self.cycles = int(cycles)
        self.snapshots: list[dict] = []

    def before_step(self, trainer, step: Step) -> None:
        if step.iteration < trainer.config.warmup:
            return
        c = min(1.0, step.progress) * self.cycles
        if int(c) > len(self.snapshots) and int(c) < self.cycles:
            self.snapshots.append(copy.deepcopy(trainer.net.state_dict()))
        t = min(1.0, c - int(min(c, self.cycles - 1)))
        step.lr = trainer.config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


class EntropyMinimisation(Hook):
    """Adds ``weight`` x the mean prediction entropy of the unlabelled voxels, from ``start`` of the run on."""

    def __init__(self, weight: float = 0.1, start: float = 0.15):
        self.weight = float(weight)
        self.start = float(start)

    def loss(self, trainer, step: Step, loss):
        if step.progress < self.start or trainer.task.activation != "softmax":
            return loss
        p = step.logits.float().softmax(1)
        ent = -(p * p.clamp_min(1e-8).log()).sum(1)
        unl = (step.target == IGNORE_INDEX).float()
        return loss + self.weight * (ent * unl).sum() / unl.sum().clamp_min(1)


class ConfidentPseudoLabels(Hook):
    """At each point of ``at`` (fractions of the run), confident predictions of the unlabelled training
    voxels (max class probability > ``threshold``) join the labels the patches are drawn from."""

    def __init__(self, at=(0.5,), threshold: float = 0.95):
        self.at = sorted(float(a) for a in at)
        self.threshold = float(threshold)
        self.rounds: list[dict] = []

    def _probabilities(self, trainer) -> np.ndarray:
        import torch

        model = copy.deepcopy(trainer.net)
        tile = [1, *(2 * p for p in trainer.patch_shape[1:])]
        recalibrate_batchnorm(model, trainer.raw_norm, TileSampling(tuple(tile), trainer.info.dims,
                                                                    seed=trainer.config.seed),
                              trainer.device, trainer.memory_format)
        model.eval()
        out = []
        with torch.inference_mode():
            for z in range(trainer.raw_norm.shape[0]):
                x = trainer.to_device(torch.from_numpy(trainer.raw_norm[z])[None, None])
                out.append(model(x).float().softmax(1)[0].cpu().numpy())
        trainer.net.train()
        return np.stack(out, axis=1)  # (C, Z, Y, X)

    def before_step(self, trainer, step: Step) -> None:
        if len(self.rounds) >= len(self.at) or step.progress < self.at[len(self.rounds)]:
            return
        if trainer.info.dims != 2 or trainer.task.kind != "semantic":
            raise ValueError("ConfidentPseudoLabels is written for 2D class targets")
        probs = self._probabilities(trainer)
        labels = trainer.train_labels.copy()
        unl = labels == 0
        sure = probs.max(0) > self.threshold
        labels[unl & sure] = probs.argmax(0)[unl & sure] + 1
        trainer.batches.sampler = PatchSampler(trainer.raw_norm, labels, trainer.patch_shape,
                                               balance=trainer.train_labels, seed=trainer.config.seed + 1)
        self.rounds.append({"iteration": step.iteration, "labelled": round(float((labels > 0).mean()), 4)})


#: name -> hooks factory (``bench_sparse.py --recipe NAME``)
RECIPES = {
    "swa": lambda: [WeightAveraging(0.6)],
    "ema": lambda: [EmaWeights(0.99)],
    "cycles": lambda: [SnapshotCycles(3)],
    "entropy": lambda: [EntropyMinimisation(0.1)],
    "self-train": lambda: [ConfidentPseudoLabels((0.5,), 0.95)],
}
