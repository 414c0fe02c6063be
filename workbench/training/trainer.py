"""The ``Trainer``: trains a registered architecture on sparse labels, in the caller's thread or in the background.

A run directory holds ``config.json`` (the :class:`TrainConfig`), ``metrics.jsonl`` (one JSON object per
logged step, appended as training goes) and ``checkpoint.pt`` (model, optimizer, config, normalisation,
channel names, iteration and RNG state; written atomically every ``checkpoint_seconds`` and at the end).

The Trainer holds the run's state (data, task, network, optimiser, clock); how a model kind trains is its
strategy (``workbench.training.strategies``): torch networks run the short loop of
``workbench.training.loop`` with :mod:`workbench.training.hooks` around it, the random forest fits once.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from workbench.atomic import atomic_write
from workbench.device import pick_device
from workbench.errors import WorkbenchError
from workbench.models import get_architecture
from workbench.precision import resolve_precision
from workbench.progress import Progress, as_progress
from workbench.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from workbench.training.config import TrainConfig
from workbench.training.data import as_array, compute_normalisation, normalise
from workbench.training.hooks import Hook
from workbench.training.sampler import split_validation
from workbench.training.strategies import strategy_for
from workbench.training.task import Task

CHECKPOINT_FORMAT = 1


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Sparse labels as int64, or a one-line error (fractions, negatives, nothing labelled)."""
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)):
            raise WorkbenchError(f"labels must be integers (0 = unlabelled), got {labels.dtype} with fractions")
    if labels.min() < 0:
        raise WorkbenchError("labels must be non-negative (0 = unlabelled, 1..K = classes)")
    labels = labels.astype(np.int64, copy=False)
    if not labels.any():
        raise WorkbenchError("labels contain no labelled voxel (0 = unlabelled): annotate something first")
    return labels


class Trainer:
    """Train ``config.arch`` on ``raw`` with sparse ``labels``, writing into ``run_dir``.

    Args:
        config: the run's :class:`TrainConfig`.
        raw: ``Volume`` or array (Z, Y, X) (or (Y, X)).
        labels: same shape; 0 = unlabelled; classes 1..K (semantic) or instance ids (boundaries, affinities).
        run_dir: created if missing.
        progress: tqdm-like object or callable ``(iteration, total)`` (``workbench.progress``).
        on_metrics: called with each metrics dict as it is logged.
        should_stop: polled every iteration; training ends (with a checkpoint) when it returns True.
        resume: ``True``: continue from ``run_dir/checkpoint.pt`` (a one-line error when there is none yet);
            ``"if-present"``: continue when it exists, else start afresh; ``False``: start afresh.
        hooks: extra :class:`~workbench.training.hooks.Hook` s, run after the built-in ones.

    Raises:
        WorkbenchError: bad input (shapes differ, nothing labelled, one class only, patch larger than the
        volume, a checkpoint of another architecture when resuming, ...).
    """

    def __init__(self, config: TrainConfig, raw, labels, run_dir, progress=None, on_metrics=None,
                 should_stop: Callable[[], bool] | None = None, resume: bool | str = False,
                 hooks: list[Hook] | tuple[Hook, ...] = ()):
        config.validate()
        self.config = config
        self.info = get_architecture(config.arch)
        self.strategy = self._strategy()
        self.strategy.check_config(config)
        self.run_dir = Path(run_dir)
        self.on_metrics = on_metrics
        self.should_stop = should_stop
        self.resume = resume
        self.extra_hooks = list(hooks)
        self.iteration = 0
        #: seconds spent training, over every resumed part of the run (what ``minutes`` limits)
        self.train_seconds = 0.0
        #: what the BatchNorm recalibration at the end of training did (tiles, voxels, seconds)
        self.bn_recalibration: dict | None = None
        #: the class-prior calibration fitted when training ended (``workbench.training.calibration``)
        self.calibration = None
        #: what prediction should do by default, decided on validation (``workbench.training.test_time``)
        self.prediction_defaults: dict = {}
        self.history: list[dict] = []
        self.error: BaseException | None = None
        self.last_checkpoint: Path | None = None
        #: the hook that loads ``config.init`` (its ``note`` says what was kept), or None
        self.init_weights = None
        self.hooks: list[Hook] = []
        self.deadline = math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self.device = pick_device(config.device)  # a device this machine lacks: fail before reading data
        #: the forward passes' precision on this device ("fp32", "bf16" or "fp16"; a forest: always fp32)
        self.precision = resolve_precision(config.precision, self.device) if self.info.is_network else "fp32"
        raw = as_array(raw, "raw")
        labels = as_array(labels, "labels")
        if raw.shape != labels.shape:
            raise WorkbenchError(f"labels shape {labels.shape} differs from raw shape {raw.shape}")
        labels = check_labels(labels)
        self.volume_shape = raw.shape
        self.task = self._make_task(labels)
        self.patch_shape = self._patch_shape(raw.shape)
        self.batch_size = int(config.batch_size or self.info.default_batch)
        self.progress = progress

        self.resume_state = self._read_resume_state()
        #: iteration the run starts from (the checkpoint's when resuming)
        self.start_iteration = int(self.resume_state["iteration"]) if self.resume_state else 0
        if self.resume_state is not None:
            self.normalisation = dict(self.resume_state["normalisation"])
        else:
            self.normalisation = compute_normalisation(raw, config.normalize_percentiles)
        if config.val_fraction and not config.val_slices and self.task.kind != "semantic":
            raise WorkbenchError("val_fraction holds out strokes of sparse class labels; use val_slices for instance labels")
        train, val = split_validation(labels, config.val_slices, config.val_fraction if not config.val_slices else 0,
                                      seed=config.seed)
        self.raw_norm = normalise(raw, self.normalisation)
        self.train_labels = train
        self.val_labels = val
        if config.init:  # start from a model file: checked now (one-line errors before training), loaded at the start
            from workbench.training.init import InitWeights

            self.init_weights = InitWeights.for_trainer(self, config.init)
            self.extra_hooks.insert(0, self.init_weights)
        self.strategy.prepare(self)

    def _strategy(self):
        """How this run trains (its architecture kind's strategy; a self-supervised warm-up overrides it)."""
        return strategy_for(self.info)

    # -- set-up ------------------------------------------------------------------------------------------
    def _make_task(self, labels: np.ndarray) -> Task:
        cfg = self.config
        if cfg.target == "semantic":
            present = [int(c) for c in np.unique(labels) if c > 0]
            if len(present) < 2:
                raise WorkbenchError(f"only class {present[0]} is labelled: label at least two classes to train on")
            k = max(len(cfg.classes), max(present))
            names = list(cfg.classes) + [f"class {i}" for i in range(len(cfg.classes) + 1, k + 1)]
            return Task.for_config("semantic", names, self.info.dims, [])
        return Task.for_config(cfg.target, [], self.info.dims, cfg.effective_offsets(self.info.dims))

    def _patch_shape(self, shape) -> tuple[int, int, int]:
        cfg = self.config
        if cfg.patch_shape is None:
            return tuple(min(p, s) for p, s in zip(self.info.default_patch, shape))
        patch = tuple(int(p) for p in cfg.patch_shape)
        if any(p > s for p, s in zip(patch, shape)):
            raise WorkbenchError(f"patch {list(patch)} is larger than the volume {list(shape)} (z, y, x); choose a smaller --patch")
        return patch

    def _read_resume_state(self) -> dict | None:
        path = self.run_dir / CHECKPOINT_NAME
        if self.resume not in (True, False, "if-present"):
            raise ValueError(f"resume must be True, False or 'if-present', got {self.resume!r}")
        if not self.resume:
            return None
        if not path.exists():
            if self.resume == "if-present":
                return None
            raise WorkbenchError("no checkpoint to resume from yet: train without --resume, or use "
                                 "--resume-or-start to start afresh when there is none", self.run_dir)
        state = load_checkpoint(path)
        if state.get("arch") != self.config.arch:
            raise WorkbenchError(
                f"checkpoint was trained with architecture {state.get('arch')!r}, not {self.config.arch!r}: "
                "resume with the same architecture or use another run directory", path)
        if list(state.get("channel_names", [])) != list(self.task.channel_names):
            raise WorkbenchError(
                f"checkpoint predicts {state.get('channel_names')}, these labels need {self.task.channel_names}", path)
        return state

    # -- threads -----------------------------------------------------------------------------------------
    def start(self) -> Trainer:
        """Train in a background thread; returns at once (see :meth:`wait`, :meth:`stop`)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("training is already running")
        self._stop.clear()

        def target():
            try:
                self.run()
            except BaseException as err:  # kept for wait()
                self.error = err

        self._thread = threading.Thread(target=target, name="workbench-trainer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the training to end after the current iteration (it writes a final checkpoint)."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> dict | None:
        """Wait for the background training; returns the last metrics; re-raises its error."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.history[-1] if self.history else None

    def stopping(self) -> bool:
        """True once a stop was asked (:meth:`stop` or the ``should_stop`` callable)."""
        return self._stop.is_set() or bool(self.should_stop and self.should_stop())

    # -- what hooks and strategies use -------------------------------------------------------------------
    @property
    def progress(self) -> Progress:
        """Where each iteration is reported (:class:`workbench.progress.Progress`; assign a tqdm bar or a
        callable and it is wrapped)."""
        return self._progress

    @progress.setter
    def progress(self, value) -> None:
        self._progress = as_progress(value, total=self.strategy.total(self.config))

    @property
    def model(self):
        """The model kept for prediction: a hook's (the mean teacher, the best validation) or the network."""
        for h in self.hooks:
            kept = h.kept_model(self)
            if kept is not None:
                return kept
        return getattr(self, "net", None)

    @model.setter
    def model(self, value) -> None:  # strategies without a network of their own (the forest) set it
        self.net = value

    def hook(self, kind: type[Hook]) -> Hook | None:
        """The first hook of type ``kind`` in this run, or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    def log(self, record: dict) -> None:
        """Append a metrics record to ``metrics.jsonl`` and the history; NaN becomes null."""
        record = {k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
                  for k, v in record.items()}
        self.history.append(record)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.on_metrics is not None:
            self.on_metrics(record)

    def clock(self) -> float:
        """Update and return ``train_seconds`` (this part's elapsed time plus the resumed parts')."""
        self.train_seconds = self._seconds_before + time.monotonic() - self._t0
        return self.train_seconds

    def start_clock(self) -> None:
        """Start this part's clock; a resumed run trains for what is left of its time budget."""
        self._seconds_before = float(self.resume_state.get("train_seconds", 0.0)) if self.resume_state else 0.0
        self.train_seconds = self._seconds_before
        self._t0 = time.monotonic()
        minutes = self.config.minutes
        self.deadline = self._t0 + max(0.0, minutes * 60 - self._seconds_before) if minutes else math.inf

    def done_fraction(self, it: int, seconds: float) -> float:
        """How far the run is, 0..1: the larger of iterations done / ``iterations`` and seconds / ``minutes``."""
        cfg = self.config
        done = 0.0
        if cfg.iterations:
            done = max(done, (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup))
        if cfg.minutes:
            done = max(done, seconds / (cfg.minutes * 60))
        return min(1.0, max(0.0, done))

    def lr_at(self, it: int, seconds: float = 0.0) -> float:
        """Learning rate at iteration ``it`` after ``seconds`` of training: linear warm-up, then cosine decay
        to 5 % over the run (over its time budget when ``minutes`` is what ends it first)."""
        cfg = self.config
        if cfg.warmup and it < cfg.warmup:
            return cfg.lr * (it + 1) / cfg.warmup
        if cfg.schedule == "cosine":
            t = self.done_fraction(it, seconds)
            return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
        return cfg.lr

    def to_device(self, x, non_blocking: bool = False):
        """A model input batch on the training device, in the network's memory format."""
        return x.to(self.device, non_blocking=non_blocking).contiguous(memory_format=self.memory_format)

    def base_state(self) -> dict:
        """The checkpoint entries every kind has (architecture, config, normalisation, task, progress)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": self.config.arch,
            "kind": str(self.info.kind),
            "arch_options": self.info.options(**self.config.arch_options),
            "config": json.loads(json.dumps(self.config.to_dict())),
            "normalisation": dict(self.normalisation),
            "target": self.task.kind,
            "channel_names": list(self.task.channel_names),
            "offsets": self.task.offsets,
            "iteration": int(self.iteration),
            "train_seconds": float(self.train_seconds),
            "precision": self.precision,
        }

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` (the strategy's state plus every hook's additions), atomically."""
        state = self.base_state()
        state.update(self.strategy.state(self))
        for h in self.hooks:
            h.on_checkpoint(self, state)
        path = self.run_dir / CHECKPOINT_NAME
        save_checkpoint(state, path)
        self.last_checkpoint = path
        for h in self.hooks:
            h.on_checkpoint_saved(self, path)
        return path

    # -- training ----------------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.run_dir / "config.json")
        metrics = self.run_dir / "metrics.jsonl"
        if self.resume_state is None and metrics.exists():
            metrics.unlink()
        elif self.resume_state is not None and metrics.exists():
            self._truncate_metrics(metrics, self.start_iteration)

    @staticmethod
    def _truncate_metrics(metrics: Path, iteration: int) -> None:
        """Drop the records after the checkpoint's ``iteration`` (a killed run logged past its last checkpoint:
        the resumed run logs those iterations again), atomically; an unreadable tail line is dropped too."""
        keep = []
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            if int(record.get("iteration", 0)) <= iteration:
                keep.append(line)
        atomic_write(metrics, "".join(f"{line}\n" for line in keep))

    def run(self) -> dict | None:
        """Train until the iterations or minutes are used up or a stop is asked; returns the last metrics."""
        self._prepare_run_dir()
        self.start_clock()
        self.strategy.fit(self)
        return self.history[-1] if self.history else None
