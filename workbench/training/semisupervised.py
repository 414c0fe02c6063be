"""Learning from the unlabelled voxels of sparse annotations (scribbles).

With scribbles, 95-99 % of every training patch is unlabelled. Mean-teacher self-training uses them:
a teacher network whose weights are an exponential moving average (EMA) of the student's predicts each
batch (weak view: geometry only); where the teacher is confident, its class becomes a pseudo-label that the
student (strong view: the same geometry plus intensity changes) is trained on, next to the masked loss on
the scribbles. Pseudo-labels are refreshed at every step as the teacher improves.

References: Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017; Sohn et al., FixMatch,
NeurIPS 2020 (confidence-thresholded pseudo-labels under weak/strong augmentation).

All functions work on torch tensors of shape (B, C, *spatial) (logits / probabilities) and (B, *spatial)
(labels, masks); torch is imported lazily.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

#: the choices of ``TrainConfig.semi_supervised``
SEMI_SUPERVISED = ("none", "mean-teacher")


@dataclass
class SemiSupervisedConfig:
    """Settings of mean-teacher self-training.

    Attributes:
        threshold: a teacher probability at least this high makes a pseudo-label; or a list, one per class
            (class order of the labels), e.g. lower for thin membranes than for large interiors.
        weight: weight of the pseudo-label loss relative to the scribble loss (after ramp-up).
        ema_decay: teacher weights = decay * teacher + (1 - decay) * student after each step.
        start: fraction of the run (iterations, or minutes) before pseudo-labels are used.
        ramp: fraction of the run over which the weight ramps from 0 to ``weight`` after ``start``.
    """

    threshold: float | list[float] = 0.9
    weight: float = 1.0
    ema_decay: float = 0.99
    start: float = 0.15
    ramp: float = 0.15


class EMATeacher:
    """A frozen copy of a model whose weights follow the student's by exponential moving average.

    Args:
        student: the network being trained (``torch.nn.Module``).
        decay: EMA decay in [0, 1); 0 copies the student at every update.

    Buffers (batch-norm statistics) are copied from the student at every update; the teacher predicts in
    eval mode.
    """

    def __init__(self, student, decay: float = 0.99):
        import torch

        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(student)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0
        self._torch = torch

    def update(self, student) -> None:
        """teacher = decay * teacher + (1 - decay) * student (parameters); buffers copied."""
        torch = self._torch
        # a short warm-up (as in common mean-teacher code): early on the teacher follows the student closely
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for t, s in zip(self.model.parameters(), student.parameters()):
                t.mul_(decay).add_(s.detach(), alpha=1 - decay)
            for t, s in zip(self.model.buffers(), student.buffers()):
                t.copy_(s)
        self.updates += 1

    def predict(self, x):
        """Softmax probabilities (B, C, ...) of the teacher for input ``x`` (no gradient)."""
        torch = self._torch
        with torch.no_grad():
            return self.model(x).float().softmax(1)


def pseudo_labels(teacher_probs, labelled, threshold: float):
    """Confident teacher classes on unlabelled voxels.

    Args:
        teacher_probs: (B, C, *spatial) probabilities.
        labelled: bool (B, *spatial), True where the annotation already gives a class.
        threshold: minimum teacher probability of the arg-max class; a sequence gives one per class
            (e.g. a lower one for thin membranes, which a teacher is rarely sure of).

    Returns:
        (classes long (B, *spatial), mask bool (B, *spatial)): mask is True on unlabelled voxels where the
        teacher is confident.
    """
    conf, cls = teacher_probs.max(1)
    if isinstance(threshold, (int, float)):
        mask = conf >= threshold
    else:  # one threshold per class: the arg-max class's own
        per_class = teacher_probs.new_tensor([float(t) for t in threshold])
        mask = conf >= per_class[cls]
    mask = mask & ~labelled.bool()
    return cls, mask


def pseudo_label_loss(student_logits, teacher_probs, labelled, threshold: float):
    """Cross-entropy of the student against confident teacher pseudo-labels, mean over *all* unlabelled voxels.

    Dividing by the number of unlabelled voxels (not of the confident ones) lets the loss grow as the teacher
    becomes confident in more places, and makes it exactly zero (with zero gradient) when no voxel is
    confident.

    Returns:
        (loss scalar tensor, fraction of unlabelled voxels that got a pseudo-label as float).
    """
    import torch.nn.functional as F

    cls, mask = pseudo_labels(teacher_probs, labelled, threshold)
    unlabelled = (~labelled.bool()).sum().clamp_min(1)
    ce = F.cross_entropy(student_logits.float(), cls, reduction="none")
    loss = (ce * mask).sum() / unlabelled
    return loss, float(mask.sum()) / float(unlabelled)


def ramp_weight(progress: float, config: SemiSupervisedConfig) -> float:
    """Weight of the pseudo-label loss at ``progress`` in [0, 1] of the run: 0 before ``start``, then a
    sigmoid-shaped ramp (exp(-5 (1 - t)^2), Laine & Aila 2017) to ``weight`` over ``ramp``."""
    if progress < config.start:
        return 0.0
    if config.ramp <= 0:
        return config.weight
    t = min(1.0, (progress - config.start) / config.ramp)
    return config.weight * math.exp(-5.0 * (1.0 - t) ** 2)


def strong_view(x, generator, noise: float = 0.08, contrast: float = 0.25, brightness: float = 0.1):
    """A photometrically perturbed copy of a model input batch (B, C, *spatial) for the student.

    Per sample: contrast scaled by a factor in [1 - contrast, 1 + contrast] around the sample mean, a
    brightness shift in [-brightness, brightness], and Gaussian noise with standard deviation up to
    ``noise`` (inputs are percentile-normalised to about [0, 1]). Geometry is unchanged, so teacher and
    student predictions stay voxel-aligned.
    """
    import torch

    b = x.shape[0]
    shape = (b,) + (1,) * (x.ndim - 1)
    factor = 1 + (torch.rand(shape, generator=generator) * 2 - 1) * contrast
    shift = (torch.rand(shape, generator=generator) * 2 - 1) * brightness
    sigma = torch.rand(shape, generator=generator) * noise
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    eps = torch.randn(x.shape, generator=generator)
    out = (x - mean) * factor.to(x) + mean + shift.to(x) + eps.to(x) * sigma.to(x)
    return out.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else out


class MeanTeacher:
    """Mean-teacher self-training, called by the Trainer around each step.

    Usage per training step::

        x_student = mt.student_input(x, step)            # strong view (same geometry)
        logits = model(x_student)
        loss = supervised + mt.loss(x, logits, labelled, progress)
        loss.backward(); optimizer.step()
        mt.after_step(model)                             # EMA update of the teacher

    Args:
        model: the student network (its current weights start the teacher).
        config: :class:`SemiSupervisedConfig`.
        seed: with the step number, seeds the strong view's random perturbations.
    """

    def __init__(self, model, config: SemiSupervisedConfig | None = None, seed: int = 0):
        self.config = config or SemiSupervisedConfig()
        self.teacher = EMATeacher(model, self.config.ema_decay)
        self.seed = int(seed)
        #: fraction of unlabelled voxels that got a pseudo-label at the last step
        self.pseudo_fraction = 0.0
        self.last_weight = 0.0

    def student_input(self, x, step: int = 0):
        """The strong view of batch ``x`` for training step ``step`` (reproducible from seed and step)."""
        import torch

        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(step) + 7919)
        return strong_view(x, g)

    def loss(self, x_teacher, student_logits, labelled, progress: float):
        """Weighted pseudo-label loss for this step (a zero tensor before ``config.start``).

        Args:
            x_teacher: the unperturbed input batch (B, C, *spatial).
            student_logits: the student's logits on the strong view.
            labelled: bool (B, *spatial), True where the annotation gives a class.
            progress: fraction of the run done, in [0, 1].
        """
        w = ramp_weight(progress, self.config)
        self.last_weight = w
        if w <= 0:
            self.pseudo_fraction = 0.0
            return student_logits.sum() * 0.0
        probs = self.teacher.predict(x_teacher)
        loss, self.pseudo_fraction = pseudo_label_loss(student_logits, probs, labelled, self.config.threshold)
        return w * loss

    def after_step(self, model) -> None:
        self.teacher.update(model)

    @property
    def model(self):
        """The teacher network (the one to keep for prediction)."""
        return self.teacher.model

    def state_dict(self) -> dict:
        """Teacher weights and EMA step count (to resume exactly)."""
        return {"teacher": self.teacher.model.state_dict(), "updates": int(self.teacher.updates)}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.model.load_state_dict(state["teacher"])
        self.teacher.updates = int(state.get("updates", 0))


#: with more of the training voxels labelled than this, there is little left to pseudo-label: no teacher
DENSE_FRACTION = 0.5


def make_semi_supervised(method: str, model, labels, activation: str = "softmax", options: dict | None = None,
                         seed: int = 0):
    """The semi-supervised helper a training run should use, or None.

    Args:
        method: ``"none"`` or ``"mean-teacher"`` (see ``SEMI_SUPERVISED``).
        model: the student network.
        labels: the training labels (0 = unlabelled), numpy array.
        activation: the task's output activation; pseudo-labels need ``softmax`` classes.
        options: overrides of :class:`SemiSupervisedConfig` fields.
        seed: random seed of the strong view.

    Returns:
        a :class:`MeanTeacher`, or None when ``method`` is ``"none"``, the outputs are not classes, or the
        labels are (nearly) dense.

    Raises:
        ValueError: unknown method or option name.
        WorkbenchError: per-class thresholds whose number differs from the number of classes.
    """
    import numpy as np

    if method not in SEMI_SUPERVISED:
        raise ValueError(f"unknown semi-supervised method {method!r}; choose one of {', '.join(SEMI_SUPERVISED)}")
    options = dict(options or {})
    known = set(SemiSupervisedConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown semi-supervised option(s) {unknown}; valid: {', '.join(sorted(known))}")
    if method == "none" or activation != "softmax":
        return None
    if float(np.count_nonzero(labels)) / max(1, np.size(labels)) > DENSE_FRACTION:
        return None
    thr = options.get("threshold")
    if isinstance(thr, (list, tuple)) and len(thr) != int(np.max(labels)):
        from workbench.errors import WorkbenchError

        raise WorkbenchError(f"semi_options threshold has {len(thr)} values but the labels have "
                             f"{int(np.max(labels))} classes")
    return MeanTeacher(model, SemiSupervisedConfig(**options), seed=seed)


def estimate_prior(probs, train_prior, iterations: int = 100, tol: float = 1e-6):
    """Class frequencies of unlabelled data, estimated from a model's posteriors without labels.

    Scribbles rarely have the classes' true proportions (annotators draw thin membranes as often as large
    interiors), so a model trained on them is calibrated to the scribbles' proportions. The EM procedure of
    Saerens, Latinne & Decaestecker (Neural Computation 2002) re-weights the posteriors until the
    estimated proportions are consistent with them.

    Args:
        probs: (C, N) or (C, *spatial) posteriors of unlabelled voxels (numpy).
        train_prior: (C,) class proportions the model was trained with (of the labelled voxels).

    Returns:
        (C,) estimated class proportions (float64, sums to 1).
    """
    import numpy as np

    p = np.asarray(probs, np.float64).reshape(len(train_prior), -1)
    pt = np.asarray(train_prior, np.float64)
    pt = pt / pt.sum()
    prior = pt.copy()
    for _ in range(iterations):
        q = p * (prior / pt)[:, None]
        q /= np.maximum(q.sum(0, keepdims=True), 1e-12)
        new = q.mean(1)
        if np.abs(new - prior).max() < tol:
            prior = new
            break
        prior = new
    return prior / prior.sum()


def adjust_to_prior(probs, train_prior, prior):
    """Posteriors (C, ...) re-weighted from the training class proportions to ``prior`` (Bayes' rule)."""
    import numpy as np

    p = np.asarray(probs, np.float32)
    w = (np.asarray(prior, np.float64) / np.asarray(train_prior, np.float64)).astype(np.float32)
    q = p * w.reshape((-1,) + (1,) * (p.ndim - 1))
    return q / np.maximum(q.sum(0, keepdims=True), 1e-12)
