"""Class-prior calibration of semantic models: undo the class proportions that patch sampling taught them.

The patch sampler centres patches on each class equally often (``sampler.PatchSampler``), so a rare class
(mitochondria: a few per cent of the voxels) fills a large share of what the network sees, and the network
learns that share as its prior: its argmax covers the rare class about twice too widely. Bayes' rule says how
to undo it: posteriors trained under class proportions ``pi_train`` become posteriors under ``pi`` by
multiplying with ``pi / pi_train`` and renormalising, which for a softmax is adding
``log(pi / pi_train)`` to the logits. Two targets ``pi`` are available without extra labels:

- ``sampling``: the proportions of the labels themselves. Undoes the sampler's shift exactly for dense
  labels; for scribbles it gives the annotator's proportions.
- ``prior``: the proportions of the whole volume, estimated from the model's own posteriors on the
  unlabelled voxels by the EM procedure of Saerens, Latinne & Decaestecker (Neural Computation 2002,
  :func:`workbench.training.semisupervised.estimate_prior`). The only label-free route to the true areas when
  scribbles over-represent a class.

``auto`` chooses from the data (:func:`choose_mode`). The bias is stored in the checkpoint and added to the
logits by the run's predictor; ``--calibration none`` switches it off.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from workbench.choices import Choice
from workbench.training.hooks import Hook
from workbench.training.targets import IGNORE_INDEX

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.trainer import Trainer

#: voxels of the training volume whose posteriors feed the prior estimate (random tiles beyond it)
PRIOR_VOXELS = 2_000_000
#: class proportions are clipped to this before their logarithm
MIN_PROPORTION = 1e-4


class CalibrationMode(Choice, what="calibration"):
    """How the predicted class proportions are corrected (module docstring)."""

    AUTO = "auto"
    NONE = "none"
    SAMPLING = "sampling"
    PRIOR = "prior"


@dataclass
class Calibration:
    """A run's calibration: the logit bias its predictor adds, and where it came from.

    Attributes:
        mode: ``none``, ``sampling`` or ``prior`` (what was applied).
        bias: (C,) added to the logits (zeros for ``none``).
        train_prior: class proportions of the labelled voxels of the training batches.
        label_prior: class proportions of the training labels.
        data_prior: the EM estimate of the volume's proportions (None when not computed).
        predicted_share: the share of the unlabelled voxels the uncorrected argmax gives each class.
        reason: one sentence saying why this mode.
    """

    mode: str = "none"
    bias: list[float] = field(default_factory=list)
    train_prior: list[float] = field(default_factory=list)
    label_prior: list[float] = field(default_factory=list)
    data_prior: list[float] | None = None
    predicted_share: list[float] | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Calibration | None:
        """The calibration of a checkpoint entry (None when absent or unreadable)."""
        if not isinstance(data, dict):
            return None
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None

    def active(self) -> bool:
        return self.mode != "none" and any(abs(b) > 0 for b in self.bias)


def proportions(counts) -> np.ndarray:
    """Counts -> proportions (float64, clipped to :data:`MIN_PROPORTION`, summing to 1)."""
    p = np.maximum(np.asarray(counts, np.float64), 0)
    p = p / max(p.sum(), 1e-12)
    p = np.maximum(p, MIN_PROPORTION)
    return p / p.sum()


def logit_bias(train_prior, target_prior) -> list[float]:
    """``log(target / train)`` per class, centred (a softmax ignores a common shift)."""
    b = np.log(proportions(target_prior)) - np.log(proportions(train_prior))
    return [float(v) for v in b - b.mean()]


def choose_mode(label_prior, train_prior, data_prior, dense: bool, predicted_share=None) -> tuple[str, str]:
    """The calibration ``auto`` applies, and why (one sentence).

    Rules (measured: benchmarks/results/defaults.json): dense labels state the classes' proportions, so the
    sampler's shift is undone (``sampling``); sparse labels do not, and the volume's estimated proportions
    (``prior``) are used when the labels over-represent a class that the volume holds little of: under a third
    of its label share and under 15 % by the EM estimate, and under half of its label share in the uncorrected
    prediction too (an undertrained model's EM estimate can run off to one class; its prediction then
    disagrees). Otherwise nothing is changed (thin structures such as membranes are over-represented by
    scribbles too, but shrinking them opens gaps between cells).
    """
    label_prior, train_prior = proportions(label_prior), proportions(train_prior)
    shift = float(np.max(np.abs(np.log(label_prior / train_prior))))
    if dense:
        if shift < math.log(1.1):
            return "none", "the training batches already had the labels' class proportions"
        return "sampling", "dense labels: the patch sampler's class proportions are undone"
    if data_prior is None:
        return "none", "no estimate of the volume's class proportions"
    data_prior = proportions(data_prior)
    rare = data_prior < label_prior / 3
    if predicted_share is not None:
        rare &= np.asarray(predicted_share, np.float64) < label_prior / 2
    if rare.any() and data_prior[rare].max() < 0.15:
        names = ", ".join(str(i + 1) for i in np.flatnonzero(rare))
        return "prior", (f"class {names} is rarer in the volume ({', '.join(f'{data_prior[i]:.1%}' for i in np.flatnonzero(rare))}) "
                         "than in the labels: predictions are corrected to the volume's proportions")
    return "none", "the labels' class proportions are close enough to the volume's"


class CalibrationHook(Hook):
    """Counts the classes of the training batches and, when training ends, fits the run's :class:`Calibration`.

    Args:
        mode: a :class:`CalibrationMode` (``auto`` chooses with :func:`choose_mode`).
        labels: the training labels (0 unlabelled, 1..C).
        volume: the normalised training volume (for the posteriors of the unlabelled voxels).
        dense_fraction: labels covering at least this share of the voxels count as dense.
    """

    def __init__(self, mode: str, labels: np.ndarray, volume: np.ndarray, classes: int,
                 dense_fraction: float = 0.5, seed: int = 0):
        self.mode = CalibrationMode.parse(mode)
        self.classes = int(classes)
        counts = np.bincount(labels.ravel(), minlength=self.classes + 1)[1:self.classes + 1]
        self.label_counts = counts.astype(np.float64)
        self.dense = float(counts.sum()) / max(1, labels.size) >= dense_fraction
        self.labels = labels
        self.volume = volume
        self.seed = seed
        self.batch_counts = np.zeros(self.classes, np.float64)
        self.result: Calibration | None = None

    def after_step(self, trainer: Trainer, step) -> None:
        import torch

        t = step.target
        keep = t[t != IGNORE_INDEX]
        if keep.numel():
            self.batch_counts += torch.bincount(keep.flatten().long(), minlength=self.classes)[:self.classes].cpu().numpy()

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        state["class_counts"] = self.batch_counts.tolist()
        if self.result is not None:
            state["calibration"] = self.result.to_dict()

    def on_resume(self, trainer: Trainer, state: dict) -> None:
        if state.get("class_counts") is not None and len(state["class_counts"]) == self.classes:
            self.batch_counts = np.asarray(state["class_counts"], np.float64)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.mode == "none" or self.batch_counts.sum() == 0:
            self.result = Calibration("none", [0.0] * self.classes, reason="calibration switched off"
                                      if self.mode == "none" else "no labelled voxel was trained on")
        else:
            self.result = self.fit(trainer)
        trainer.calibration = self.result

    def fit(self, trainer: Trainer) -> Calibration:
        """The calibration of the trained model (after its BatchNorm statistics are final)."""
        train_prior, label_prior = proportions(self.batch_counts), proportions(self.label_counts)
        data_prior = share = None
        if not self.dense and self.mode in ("auto", "prior"):
            from workbench.training.semisupervised import estimate_prior

            probs = unlabelled_posteriors(trainer, self.volume, self.labels, self.seed)
            if probs is not None:
                data_prior = estimate_prior(probs, train_prior)
                share = np.bincount(probs.argmax(0), minlength=self.classes) / probs.shape[1]
        if self.mode == "auto":
            mode, reason = choose_mode(label_prior, train_prior, data_prior, self.dense, share)
        elif self.mode == "prior" and data_prior is None:
            mode, reason = "sampling", "asked for the volume's proportions, but no voxel is unlabelled"
        else:
            mode, reason = str(self.mode), f"calibration {self.mode} asked for"
        target = {"sampling": label_prior, "prior": data_prior}.get(mode)
        bias = [0.0] * self.classes if target is None else logit_bias(train_prior, target)
        return Calibration(mode, bias, train_prior.tolist(), label_prior.tolist(),
                           None if data_prior is None else [float(v) for v in data_prior],
                           None if share is None else [float(v) for v in share], reason)


def unlabelled_posteriors(trainer: Trainer, volume: np.ndarray, labels: np.ndarray, seed: int = 0):
    """Softmax posteriors (C, N) of the kept model at unlabelled voxels of random tiles (None: none unlabelled)."""
    import torch

    from workbench.precision import autocast
    from workbench.training.batchnorm import volume_tiles

    tile = [trainer.patch_shape[0], *(2 * p for p in trainer.patch_shape[1:])]
    tiles = volume_tiles(volume.shape, tile, PRIOR_VOXELS, seed)
    model = trainer.model
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for t in tiles:
            mask = labels[t] == 0
            if not mask.any():
                continue
            x = torch.from_numpy(np.ascontiguousarray(volume[t]))[None, None]
            if trainer.info.dims == 2:
                x = x[:, :, 0]
                mask = mask[0]
            with autocast(trainer.device, trainer.precision):
                logits = model(trainer.to_device(x))
            p = logits.float().softmax(1)[0].cpu().numpy()
            out.append(p[:, mask])
    model.train(was_training)
    return np.concatenate(out, axis=1) if out else None
