"""Self-supervised warm-up on the user's own volume (no labels): a pretext task for the registered networks.

Two pretext tasks, both a reconstruction of the (augmented, normalised) raw patch that the loss looks at only
where the input was hidden, so the network must infer those voxels from their context:

- ``masked`` (masked-image reconstruction, as MAE/SparK for images): square blocks (``block`` pixels in y, x,
  per slice) covering ``mask_ratio`` of the patch are replaced by the patch mean; the network redraws them.
  Large holes ask for membranes and organelles to be continued across them: features a segmentation needs.
- ``blind-spot`` (Noise2Void, Krull et al. 2019): a ``blind_fraction`` of the voxels is replaced by a random
  neighbour within ``radius`` (y, x); the network predicts the original value, which it can only get from the
  surroundings, so it learns to denoise (independent noise cannot be predicted from the neighbours).

The warm-up is the Trainer's own loop (``workbench.training.loop``) with a :class:`PretextTask` (masked MSE),
patches from anywhere in the volume (:class:`RandomPatches`), batches whose input is the corrupted patch
(:class:`PretextBatchMaker`) and a validation of the same loss on fixed patches; the run folder is an ordinary
run (``config.json`` with ``pretext`` set, ``checkpoint.pt``, ``metrics.jsonl``) that
``workbench train --init RUN`` fine-tunes (the one-channel reconstruction head is re-initialised for the classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from workbench.choices import Choice
from workbench.errors import WorkbenchError
from workbench.training.batches import VAL_PATCHES, BatchMaker, batch_generators
from workbench.training.config import TrainConfig
from workbench.training.data import as_array
from workbench.training.hooks import BatchNormRecalibration, Checkpointing, Hook, MetricsLogger, Validation
from workbench.training.sampler import _pad_reflect
from workbench.training.strategies import TorchStrategy
from workbench.training.task import Task
from workbench.training.trainer import Trainer

#: the one output channel of a warm-up run
PRETEXT_CHANNELS = ["reconstruction"]


class PretextKind(Choice, what="pretext task"):
    """What the warm-up learns to reconstruct."""

    MASKED = "masked"  # blocks hidden behind the patch mean, redrawn from their context
    BLIND_SPOT = "blind-spot"  # Noise2Void: single voxels swapped for a neighbour, their value predicted


@dataclass
class PretextConfig:
    """The pretext task of a warm-up run (saved as ``TrainConfig.pretext``).

    Attributes:
        task: ``masked`` or ``blind-spot``.
        mask_ratio: ``masked``: fraction of the blocks hidden per patch.
        block: ``masked``: block side in pixels (y, x).
        blind_fraction: ``blind-spot``: fraction of the voxels swapped for a neighbour.
        radius: ``blind-spot``: the neighbour is at most this far in y and x.
    """

    task: PretextKind = PretextKind.MASKED
    mask_ratio: float = 0.5
    block: int = 8
    blind_fraction: float = 0.01
    radius: int = 2

    def __post_init__(self):
        self.task = PretextKind.parse(self.task)
        if not 0 < self.mask_ratio < 1:
            raise WorkbenchError(f"pretext mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if int(self.block) < 1 or int(self.radius) < 1:
            raise WorkbenchError(f"pretext block and radius must be positive, got {self.block} and {self.radius}")
        if not 0 < self.blind_fraction < 1:
            raise WorkbenchError(f"pretext blind_fraction must be in (0, 1), got {self.blind_fraction}")

    @classmethod
    def from_dict(cls, data: dict) -> PretextConfig:
        """From ``TrainConfig.pretext``; unknown keys raise ``WorkbenchError``."""
        known = [f.name for f in fields(cls)]
        bad = sorted(set(data) - set(known))
        if bad:
            raise WorkbenchError(f"unknown pretext options {bad}; valid: {', '.join(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task"] = str(self.task)
        return d


# -- corruption and targets ------------------------------------------------------------------------------------
def masked_blocks(raw, ratio: float, block: int, g):
    """Hide blocks of ``raw`` (B, Z, Y, X): returns (input with the blocks set to each patch's mean, target = raw,
    mask 1.0 on the hidden voxels). Blocks are ``block`` x ``block`` in y, x, drawn per slice."""
    import torch

    B, Z, Y, X = raw.shape
    gy, gx = -(-Y // block), -(-X // block)
    hidden = torch.rand((B, Z, gy, gx), generator=g) < ratio
    hidden = hidden.repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :Y, :X]
    fill = raw.mean(dim=(1, 2, 3), keepdim=True).expand_as(raw)
    return torch.where(hidden, fill, raw), raw, hidden.float()


def _reflect(i, size: int):
    """Indices reflected into 0..size-1 (``-1 -> 1``, ``size -> size - 2``)."""
    if size == 1:
        return i.clamp(0, 0)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return (size - 1) - ((size - 1) - i).abs()


def blind_spots(raw, fraction: float, radius: int, g):
    """Noise2Void's corruption of ``raw`` (B, Z, Y, X): each voxel with probability ``fraction`` takes the value
    of a random other voxel within ``radius`` in y, x (reflected at the edges). Returns (input, target = raw,
    mask 1.0 on the swapped voxels)."""
    import torch

    B, Z, Y, X = raw.shape
    chosen = torch.rand(raw.shape, generator=g) < fraction
    b, z, y, x = chosen.nonzero(as_tuple=True)
    n = b.numel()
    off = torch.randint(-radius, radius + 1, (n, 2), generator=g)
    centre = (off == 0).all(1)  # never the voxel itself: one step in x instead, left or right at random
    step = torch.where(torch.rand(n, generator=g) < 0.5, -1, 1)
    off[:, 1] = torch.where(centre, step, off[:, 1])
    yy, xx = _reflect(y + off[:, 0], Y), _reflect(x + off[:, 1], X)
    if X == 1:  # a one-pixel-wide patch: the neighbour is in y
        yy = _reflect(y + torch.where(off[:, 0] == 0, step, off[:, 0]), Y)
    inp = raw.clone()
    inp[b, z, y, x] = raw[b, z, yy, xx]
    return inp, raw, chosen.float()


def corrupt(raw, pretext: PretextConfig, g):
    """The pretext's (input, target, mask) for a normalised raw batch (B, Z, Y, X)."""
    if pretext.task == PretextKind.MASKED:
        return masked_blocks(raw, pretext.mask_ratio, int(pretext.block), g)
    return blind_spots(raw, pretext.blind_fraction, int(pretext.radius), g)


# -- the task, the patches, the batches ------------------------------------------------------------------------
class PretextTask(Task):
    """A reconstruction target: one output channel, mean squared error on the hidden voxels only."""

    def __init__(self):
        super().__init__("pretext", list(PRETEXT_CHANNELS))

    @property
    def activation(self) -> str:
        return "identity"

    def make(self, labels):  # pragma: no cover - the batches come from PretextBatchMaker
        raise TypeError("a pretext target is made from the raw patch (PretextBatchMaker), not from labels")

    def loss(self, logits, target, mask):
        """Mean squared error of ``logits`` against ``target`` where ``mask`` is 1."""
        err = (logits.float() - target) ** 2 * mask
        return err.sum() / mask.sum().clamp(min=1.0)


class RandomPatches:
    """Patches from anywhere in a normalised volume (no labels): ``sample(rng, n)`` -> (raw, zero labels)."""

    def __init__(self, raw: np.ndarray, patch_shape: Sequence[int]):
        self.patch_shape = tuple(int(p) for p in patch_shape)
        pad = [(0, 0) if s >= p else ((p - s) // 2, p - s - (p - s) // 2) for s, p in zip(raw.shape, self.patch_shape)]
        self.raw = _pad_reflect(raw, pad) if any(any(p) for p in pad) else raw

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        raws = np.empty((batch_size, *self.patch_shape), np.float32)
        for b in range(batch_size):
            start = [int(rng.integers(0, s - p + 1)) for s, p in zip(self.raw.shape, self.patch_shape)]
            raws[b] = self.raw[tuple(slice(s, s + p) for s, p in zip(start, self.patch_shape))]
        return raws, np.zeros(raws.shape, np.int64)


class PretextBatchMaker(BatchMaker):
    """Batches of the warm-up: an augmented raw patch, corrupted as the pretext says -> (input, raw, mask)."""

    def __init__(self, sampler: RandomPatches, pretext: PretextConfig, dims: int, batch_size: int, augment,
                 seed: int):
        super().__init__(sampler, PretextTask(), dims, batch_size, augment, seed)
        self.pretext = pretext

    def layout(self, inp, target, mask):
        """(B, Z, Y, X) tensors -> (B, 1, [Z,] Y, X): the network's input, its target and the loss mask."""
        inp, target, mask = inp[:, None], target[:, None], mask[:, None]
        if self.dims == 2:
            inp, target, mask = inp[:, :, 0], target[:, :, 0], mask[:, :, 0]
        return inp, target, mask

    def make(self, index: int):
        import torch

        from workbench.training.augment import augment_batch

        rng, g = batch_generators(self.seed, index)
        raw, labels = self.sampler.sample(rng, self.batch_size)
        raw_t, _ = augment_batch(torch.from_numpy(raw), torch.from_numpy(labels), self.augment, g)
        return self.layout(*corrupt(raw_t, self.pretext, g))

    def fixed(self, sampler: RandomPatches | None = None, n: int = VAL_PATCHES) -> list:
        """``n`` corrupted patches (no augmentation) drawn once with a fixed seed: the validation batches."""
        import torch

        sampler = sampler or self.sampler
        rng, g = batch_generators(self.seed, 2**31)
        batches, left = [], n
        while left > 0:
            k = min(left, self.batch_size)
            raw, _ = sampler.sample(rng, k)
            batches.append(self.layout(*corrupt(torch.from_numpy(raw), self.pretext, g)))
            left -= k
        return batches


class PretextValidation(Validation):
    """The pretext loss (``val_loss``) of ``trainer.net`` on fixed corrupted patches."""

    def scores(self, trainer: Trainer) -> dict:
        import torch

        from workbench.precision import autocast

        net = trainer.net
        net.eval()
        losses = []
        with torch.no_grad():
            for x, t, m in self.batches:
                with autocast(trainer.device, trainer.precision):
                    logits = net(trainer.to_device(x))
                losses.append(float(trainer.task.loss(logits.float(), t.to(trainer.device), m.to(trainer.device))))
        net.train()
        return {"val_loss": float(np.mean(losses))}


class PretextStrategy(TorchStrategy):
    """A network trained on the pretext task by the same hook loop as supervised training."""

    exportable = False

    def __init__(self, pretext: PretextConfig):
        self.pretext = pretext

    def check_config(self, config: TrainConfig) -> None:
        if config.semi_supervised != "none":
            raise WorkbenchError("a warm-up has no labels to add pseudo-labels to: use semi_supervised none")

    def prepare(self, trainer: Trainer) -> None:
        cfg = trainer.config
        trainer.sampler = RandomPatches(trainer.raw_norm, trainer.patch_shape)
        trainer.val_sampler = None
        trainer.batches = PretextBatchMaker(trainer.sampler, self.pretext, trainer.info.dims, trainer.batch_size,
                                            cfg.augment, cfg.seed)

    def hooks(self, trainer: Trainer) -> list[Hook]:
        cfg = trainer.config
        hooks: list[Hook] = [PretextValidation(trainer.batches.fixed(), cfg.val_every), MetricsLogger(cfg.log_every)]
        if cfg.bn_recalibration:
            tile = [trainer.patch_shape[0], *(2 * p for p in trainer.patch_shape[1:])]
            hooks.append(BatchNormRecalibration(trainer.raw_norm, tile, seed=cfg.seed))
        hooks.append(Checkpointing(cfg.checkpoint_seconds))
        return hooks


class PretextTrainer(Trainer):
    """A :class:`~workbench.training.Trainer` for a self-supervised warm-up: the raw volume only, no labels.

    Args:
        config: the run's ``TrainConfig``; ``config.pretext`` holds the :class:`PretextConfig` fields (empty:
            the defaults, masked reconstruction); ``val_fraction`` must be 0.
        raw: ``Volume`` or array (Z, Y, X).
        run_dir, progress, on_metrics, should_stop, resume, hooks: as for the Trainer.

    Raises:
        WorkbenchError: a random forest (nothing to warm up), unknown pretext options, a patch larger than the volume.
    """

    def __init__(self, config: TrainConfig, raw, run_dir, **kwargs):
        self.pretext = PretextConfig.from_dict(dict(config.pretext))
        config.pretext = self.pretext.to_dict()
        raw = as_array(raw, "raw")
        # every voxel may be a patch centre; the labels themselves are never read
        super().__init__(config, raw, np.ones(raw.shape, np.uint8), run_dir, **kwargs)

    def _strategy(self):
        if not self.info.is_network:
            raise WorkbenchError(f"architecture {self.info.name!r} is not a neural network: there is nothing to warm up")
        return PretextStrategy(self.pretext)

    def _make_task(self, labels: np.ndarray) -> Task:
        return PretextTask()


def pretext_trainer(raw, run_dir, arch: str = "unet2d", *, pretext: PretextConfig | dict | str | None = None,
                    minutes: float | None = None, iterations: int | None = None, **config) -> PretextTrainer:
    """A warm-up run ready to ``run()`` or ``start()`` (``config``: other ``TrainConfig`` fields, plus
    ``progress``, ``on_metrics``, ``should_stop``, ``resume`` and ``hooks`` for the Trainer).

    ``iterations`` and ``minutes`` both None: 500 iterations."""
    trainer_keys = ("progress", "on_metrics", "should_stop", "resume", "hooks")
    kwargs = {k: config.pop(k) for k in trainer_keys if k in config}
    if isinstance(pretext, str):
        pretext = PretextConfig(task=pretext)
    if isinstance(pretext, PretextConfig):
        pretext = pretext.to_dict()
    cfg = TrainConfig(arch=arch, iterations=iterations if (iterations or minutes) else 500, minutes=minutes,
                      pretext=dict(pretext or {}), **config)
    return PretextTrainer(cfg, raw, run_dir, **kwargs)


def pretrain(raw, run_dir, arch: str = "unet2d", **kwargs) -> PretextTrainer:
    """Warm ``arch`` up on ``raw`` (no labels) into ``run_dir`` and return the finished trainer (its
    ``history``, ``iteration``); arguments as :func:`pretext_trainer`. ``workbench train --init RUN_DIR``
    (``TrainConfig(init=...)``) then fine-tunes it."""
    trainer = pretext_trainer(raw, run_dir, arch, **kwargs)
    trainer.run()
    return trainer


def is_pretext_run(run_dir) -> bool:
    """True when ``run_dir`` holds a warm-up (its ``config.json`` has ``pretext`` set)."""
    try:
        return bool(TrainConfig.load(Path(run_dir) / "config.json").pretext)
    except WorkbenchError:
        return False


__all__ = ["PRETEXT_CHANNELS", "PretextBatchMaker", "PretextConfig", "PretextKind", "PretextStrategy", "PretextTask",
           "PretextTrainer", "PretextValidation", "RandomPatches", "blind_spots", "corrupt", "is_pretext_run",
           "masked_blocks", "pretext_trainer", "pretrain"]
