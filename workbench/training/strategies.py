"""How each kind of model trains: one strategy per ``ArchitectureInfo.kind``.

A strategy prepares what its kind needs from the Trainer's data (``prepare``), trains (``fit``), says what
its checkpoint holds (``state``) and checks the options that only make sense for it (``check_config``).
The Trainer, the config check and the CLI ask the strategy instead of branching on the kind.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from workbench.device import pick_device
from workbench.errors import WorkbenchError
from workbench.models.predictor import Predictor
from workbench.training.batches import BatchMaker
from workbench.training.hooks import (
    BatchNormRecalibration,
    Checkpointing,
    EarlyStopping,
    Hook,
    MeanTeacherHook,
    MetricsLogger,
    Validation,
    class_scores,
)
from workbench.training.predictor import ForestPredictor, TorchPredictor
from workbench.training.sampler import PatchSampler
from workbench.training.targets import IGNORE_INDEX, boundary_map

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.config import TrainConfig
    from workbench.training.trainer import Trainer


class TrainingStrategy(Protocol):
    """What the Trainer needs of a model kind."""

    kind: str
    #: a network that ``workbench export`` can write as TorchScript, ONNX or a BioImage Model Zoo zip
    exportable: bool

    def total(self, config: TrainConfig) -> int | None: ...
    def check_config(self, config: TrainConfig) -> None: ...
    def prepare(self, trainer: Trainer) -> None: ...
    def fit(self, trainer: Trainer) -> None: ...
    def state(self, trainer: Trainer) -> dict: ...
    def predictor(self, run_dir, config: TrainConfig, state: dict, info, device: str,
                  precision: str = "fp32") -> Predictor: ...


def balance_map(task_kind: str, labels: np.ndarray) -> np.ndarray:
    """The classes to balance when picking patch centres: the labels' classes; boundary / interior of
    instance labels for boundary targets; labelled voxels for affinities."""
    if task_kind == "semantic":
        return labels
    if task_kind == "boundaries":
        import torch

        b = boundary_map(torch.from_numpy(labels)[None])[0].numpy()
        return np.where(labels > 0, 1 + b, 0).astype(np.uint8)
    return (labels > 0).astype(np.uint8)


class TorchStrategy:
    """A ``torch.nn.Module`` trained by the hook loop (``workbench.training.loop.fit``)."""

    kind = "torch"
    exportable = True

    def total(self, config: TrainConfig) -> int | None:
        return config.iterations

    def check_config(self, config: TrainConfig) -> None:
        pass

    def prepare(self, trainer: Trainer) -> None:
        cfg = trainer.config

        def sampler(labels):
            if labels is None:
                return None
            return PatchSampler(trainer.raw_norm, labels, trainer.patch_shape,
                                balance_map(trainer.task.kind, labels), seed=cfg.seed)

        trainer.sampler = sampler(trainer.train_labels)
        trainer.val_sampler = sampler(trainer.val_labels)
        trainer.batches = BatchMaker(trainer.sampler, trainer.task, trainer.info.dims, trainer.batch_size,
                                     cfg.augment, cfg.seed)

    def build(self, trainer: Trainer) -> None:
        """Network, optimiser and grad scaler on the trainer's device (resumed when there is a checkpoint)."""
        import torch

        cfg = trainer.config
        torch.manual_seed(cfg.seed)
        net = trainer.info.build(1, trainer.task.out_channels, **cfg.arch_options)
        trainer.memory_format = torch.channels_last if trainer.info.dims == 2 else torch.channels_last_3d
        trainer.net = net.to(device=trainer.device, memory_format=trainer.memory_format)
        trainer.optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        trainer.scaler = torch.amp.GradScaler("cuda") if trainer.precision == "fp16" else None  # bf16 needs none

    def hooks(self, trainer: Trainer) -> list[Hook]:
        """The built-in hooks this run's config asks for, in their order."""
        from workbench.training.semisupervised import make_semi_supervised

        cfg = trainer.config
        hooks: list[Hook] = []
        semi = make_semi_supervised(cfg.semi_supervised, trainer.net, trainer.train_labels,
                                    trainer.task.activation, cfg.semi_options, seed=cfg.seed)
        if semi is not None:
            hooks.append(MeanTeacherHook(semi))
        val = trainer.batches.fixed(trainer.val_sampler)
        if val:
            hooks.append(Validation(val, cfg.val_every))
            if cfg.early_stopping:
                hooks.append(EarlyStopping(cfg.early_stopping))
        hooks.append(MetricsLogger(cfg.log_every))
        if cfg.bn_recalibration:
            tile = [trainer.patch_shape[0], *(2 * p for p in trainer.patch_shape[1:])]
            hooks.append(BatchNormRecalibration(trainer.raw_norm, tile, seed=cfg.seed))
        if trainer.task.kind == "semantic" and cfg.crf_weight > 0:
            from workbench.training.crf_loss import CRFLoss

            hooks.append(CRFLoss(cfg.crf_weight))
        if trainer.task.kind == "semantic":  # after the BatchNorm statistics are final
            from workbench.training.calibration import CalibrationHook

            hooks.append(CalibrationHook(cfg.calibration, trainer.train_labels, trainer.raw_norm,
                                         trainer.task.out_channels, seed=cfg.seed))
            from workbench.training.test_time import TestTimeChoice

            labelled = float(np.count_nonzero(trainer.train_labels)) / max(1, trainer.train_labels.size)
            hooks.append(TestTimeChoice(val, labelled))
        hooks.append(Checkpointing(cfg.checkpoint_seconds))
        return hooks

    def resume(self, trainer: Trainer) -> None:
        import torch

        state = trainer.resume_state
        if state is None:
            return
        trainer.net.load_state_dict(state["model"])
        for h in trainer.hooks:  # BatchNorm statistics of training, the mean teacher's student, ...
            h.on_resume(trainer, state)
        trainer.optimizer.load_state_dict(state["optimizer"])
        if trainer.scaler is not None and state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        trainer.iteration = int(state["iteration"])

    def fit(self, trainer: Trainer) -> None:
        from workbench.training.loop import fit

        self.build(trainer)
        trainer.iteration = 0
        trainer.hooks = self.hooks(trainer) + trainer.extra_hooks
        trainer.progress.initial = trainer.progress.done = int(trainer.start_iteration)
        self.resume(trainer)
        fit(trainer)

    def state(self, trainer: Trainer) -> dict:
        import torch

        return {
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else {},
            "rng": {"torch": torch.get_rng_state()},
        }

    def predictor(self, run_dir, config: TrainConfig, state: dict, info, device: str,
                  precision: str = "fp32") -> Predictor:
        """The trained network of a run on ``device``, its forward passes in ``precision``."""
        return TorchPredictor(run_dir, config, state, info, pick_device(device), precision)


class ForestStrategy:
    """A random forest on filter features, fitted once on the labelled voxels of the labelled slices."""

    kind = "forest"
    exportable = False

    def total(self, config: TrainConfig) -> int | None:
        return 1

    def check_config(self, config: TrainConfig) -> None:
        if config.target == "affinities":
            raise WorkbenchError("the random forest predicts classes; use target semantic or boundaries")

    def prepare(self, trainer: Trainer) -> None:
        trainer.hooks = list(trainer.extra_hooks)  # the caller's hooks hear of the checkpoint

    def _samples(self, trainer: Trainer, model, labels: np.ndarray):
        """Features (N, F) and targets (N,) of the labelled voxels of every labelled slice."""
        import torch

        target = trainer.task.make(torch.from_numpy(labels)[None])[0][0].numpy()
        feats, ys = [], []
        for z in np.flatnonzero((target != IGNORE_INDEX).any(axis=(1, 2))):
            if trainer.stopping():
                break
            sel = target[z] != IGNORE_INDEX
            feats.append(model.features(trainer.raw_norm[z])[:, sel].T)
            ys.append(target[z][sel])
        return feats, ys

    def fit(self, trainer: Trainer) -> None:
        cfg = trainer.config
        t0 = time.monotonic()
        options = trainer.info.options(**cfg.arch_options)
        model = trainer.info.build(1, trainer.task.out_channels, **cfg.arch_options)
        feats, ys = self._samples(trainer, model, trainer.train_labels)
        if not feats:
            raise WorkbenchError("training stopped before any features were computed")
        x, y = np.concatenate(feats), np.concatenate(ys)
        rng = np.random.default_rng(cfg.seed)
        keep = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if idx.size > options["max_samples_per_class"]:
                idx = rng.choice(idx, options["max_samples_per_class"], replace=False)
            keep.append(idx)
        keep = np.sort(np.concatenate(keep))
        model.fit(x[keep], y[keep], seed=cfg.seed)
        trainer.model = model
        trainer.iteration = 1
        record = {"iteration": 1, "elapsed_s": time.monotonic() - t0, "samples": int(keep.size),
                  "train_accuracy": float((model.predict_features(x[keep]).argmax(1) == y[keep]).mean())}
        if trainer.val_labels is not None:
            vf, vy = self._samples(trainer, model, trainer.val_labels)
            preds = [model.predict_features(f).argmax(1) for f in vf]
            acc, f1 = class_scores(np.concatenate(preds), np.concatenate(vy), trainer.task.out_channels)
            record.update({"val_accuracy": acc, "val_f1": f1})
        trainer.clock()
        trainer.log(record)
        trainer.progress.advance(1, {"samples": int(keep.size)})
        trainer.save_checkpoint()

    def state(self, trainer: Trainer) -> dict:
        import torch

        return {"forest": trainer.model.state_dict(), "rng": {"torch": torch.get_rng_state()}}

    def predictor(self, run_dir, config: TrainConfig, state: dict, info, device: str,
                  precision: str = "fp32") -> Predictor:
        """The fitted forest of a run (on the CPU in float32, whatever ``device`` and ``precision`` say)."""
        return ForestPredictor(run_dir, config, state, info)


STRATEGIES: dict[str, TrainingStrategy] = {"torch": TorchStrategy(), "forest": ForestStrategy()}


def strategy_for(info) -> TrainingStrategy:
    """The training strategy of an architecture (by its ``kind``)."""
    try:
        return STRATEGIES[str(info.kind)]
    except KeyError:
        raise WorkbenchError(f"architecture {info.name!r} has kind {info.kind!r}, which nothing can train; "
                             f"known kinds: {', '.join(STRATEGIES)}") from None
