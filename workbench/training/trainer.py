"""The ``Trainer``: trains a registered architecture on sparse labels, in the caller's thread or in the background.

A run directory holds ``config.json`` (the :class:`TrainConfig`), ``metrics.jsonl`` (one JSON object per
logged step, appended as training goes) and ``checkpoint.pt`` (model, optimizer, config, normalisation,
channel names, iteration and RNG state; written atomically every ``checkpoint_seconds`` and at the end).

Batches are made in a background thread (patch sampling, augmentation and targets; numpy and torch release
the GIL) while the current batch trains. Batch ``i`` is drawn from generators seeded with ``(seed, i)``, so
the sequence of batches does not depend on timing, and a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from workbench.training.config import TrainConfig
from workbench.training.data import as_array, compute_normalisation, normalise
from workbench.training.sampler import PatchSampler, split_validation
from workbench.training.targets import IGNORE_INDEX, Task

CHECKPOINT_FORMAT = 1
#: validation patches are drawn once (seeded) and reused at every validation
VAL_PATCHES = 8


def _batch_generators(seed: int, index: int):
    import torch

    rng = np.random.default_rng([int(seed), int(index)])
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return rng, g


def _scores(pred: np.ndarray, target: np.ndarray, n_classes: int) -> tuple[float, float]:
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


class _Prefetcher:
    """Makes batches ``make(i)`` for i = start, start+1, ... in a background thread, ``depth`` ahead."""

    def __init__(self, make: Callable[[int], tuple], start: int, depth: int):
        self._make = make
        self._next = start
        self._depth = depth
        self._stop = threading.Event()
        if depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._work, name="workbench-batches", daemon=True)
            self._thread.start()

    def _work(self):
        import torch

        # torch's thread count is per thread (OpenMP): one here, so batch making does not fight the training
        # step's threads for the cores (small ops with 2 OpenMP threads on busy cores were 10-20x slower)
        torch.set_num_threads(1)
        i = self._next
        while not self._stop.is_set():
            try:
                item = ("ok", self._make(i))
            except BaseException as err:  # handed to the consumer
                item = ("error", err)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] == "error":
                return
            i += 1

    def get(self):
        if self._depth <= 0:
            batch = self._make(self._next)
            self._next += 1
            return batch
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        return value

    def close(self):
        self._stop.set()
        if self._depth > 0:
            self._thread.join(timeout=5)


class Trainer:
    """Train ``config.arch`` on ``raw`` with sparse ``labels``, writing into ``run_dir``.

    Args:
        config: the run's :class:`TrainConfig`.
        raw: ``Volume`` or array (Z, Y, X) (or (Y, X)).
        labels: same shape; 0 = unlabelled; classes 1..K (semantic) or instance ids (boundaries, affinities).
        run_dir: created if missing.
        progress: tqdm-like object (``update(n)``, optional ``set_postfix``) or callable ``(iteration, total)``.
        on_metrics: called with each metrics dict as it is logged.
        should_stop: polled every iteration; training ends (with a checkpoint) when it returns True.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists.

    Raises:
        WorkbenchError: bad input (shapes differ, nothing labelled, one class only, patch larger than the
        volume, a checkpoint of another architecture when resuming, ...).
    """

    def __init__(self, config: TrainConfig, raw, labels, run_dir, progress=None, on_metrics=None,
                 should_stop: Callable[[], bool] | None = None, resume: bool = False):
        config.validate()
        self.config = config
        from workbench.models import get_architecture

        self.info = get_architecture(config.arch)
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.on_metrics = on_metrics
        self.should_stop = should_stop
        self.resume = resume
        self.iteration = 0
        #: seconds spent training, over every resumed part of the run (what ``minutes`` limits)
        self.train_seconds = 0.0
        #: what the BatchNorm recalibration at the end of training did (tiles, voxels, seconds)
        self.bn_recalibration: dict | None = None
        self.history: list[dict] = []
        self.error: BaseException | None = None
        self.last_checkpoint: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        from workbench.device import pick_device

        self.device = pick_device(config.device)  # a device this machine lacks: fail before reading data
        raw = as_array(raw, "raw")
        labels = as_array(labels, "labels")
        if raw.shape != labels.shape:
            raise WorkbenchError(f"labels shape {labels.shape} differs from raw shape {raw.shape}")
        labels = self._check_labels(labels)
        self.volume_shape = raw.shape
        self.task = self._make_task(labels)
        self.patch_shape = self._patch_shape(raw.shape)
        self.batch_size = int(config.batch_size or self.info.default_batch)

        self._resume_state = self._read_resume_state()
        #: iteration the run starts from (the checkpoint's when resuming)
        self.start_iteration = int(self._resume_state["iteration"]) if self._resume_state else 0
        if self._resume_state is not None:
            self.normalisation = dict(self._resume_state["normalisation"])
        else:
            self.normalisation = compute_normalisation(raw, config.normalize_percentiles)

        if config.val_fraction and not config.val_slices and self.task.kind != "semantic":
            raise WorkbenchError("val_fraction holds out strokes of sparse class labels; use val_slices for instance labels")
        train, val = split_validation(labels, config.val_slices, config.val_fraction if not config.val_slices else 0,
                                      seed=config.seed)
        self._raw_norm = normalise(raw, self.normalisation)
        self._train_labels = train
        self._val_labels = val
        if self.info.kind == "torch":
            self.sampler = PatchSampler(self._raw_norm, train, self.patch_shape, self._balance(train), seed=config.seed)
            self.val_sampler = (PatchSampler(self._raw_norm, val, self.patch_shape, self._balance(val), seed=config.seed)
                                if val is not None else None)

    # -- set-up ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_labels(labels: np.ndarray) -> np.ndarray:
        if not np.issubdtype(labels.dtype, np.integer):
            if not (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)):
                raise WorkbenchError(f"labels must be integers (0 = unlabelled), got {labels.dtype} with fractions")
        if labels.min() < 0:
            raise WorkbenchError("labels must be non-negative (0 = unlabelled, 1..K = classes)")
        labels = labels.astype(np.int64, copy=False)
        if not labels.any():
            raise WorkbenchError("labels contain no labelled voxel (0 = unlabelled): annotate something first")
        return labels

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

    def _balance(self, labels: np.ndarray) -> np.ndarray:
        """Classes to balance when picking patch centres."""
        if self.task.kind == "semantic":
            return labels
        if self.task.kind == "boundaries":
            import torch

            from workbench.training.targets import boundary_map

            b = boundary_map(torch.from_numpy(labels)[None])[0].numpy()
            return np.where(labels > 0, 1 + b, 0).astype(np.uint8)
        return (labels > 0).astype(np.uint8)

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
        if not (self.resume and path.exists()):
            return None
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

    def _stopping(self) -> bool:
        return self._stop.is_set() or bool(self.should_stop and self.should_stop())

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        record = {k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
                  for k, v in record.items()}  # NaN (nothing to score) becomes null: metrics.jsonl stays JSON
        self.history.append(record)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.on_metrics is not None:
            self.on_metrics(record)

    def _progress(self, n: int, total, postfix: dict | None = None) -> None:
        p = self.progress
        if p is None:
            return
        if hasattr(p, "update"):
            p.update(n)
            if postfix and hasattr(p, "set_postfix"):
                p.set_postfix(postfix, refresh=False)
        elif callable(p):
            p(self.iteration, total)

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.run_dir / "config.json")
        metrics = self.run_dir / "metrics.jsonl"
        if self._resume_state is None and metrics.exists():
            metrics.unlink()

    def _base_state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": self.config.arch,
            "kind": self.info.kind,
            "arch_options": self.info.options(**self.config.arch_options),
            "config": json.loads(json.dumps(self.config.to_dict())),
            "normalisation": dict(self.normalisation),
            "target": self.task.kind,
            "channel_names": list(self.task.channel_names),
            "offsets": self.task.offsets,
            "iteration": int(self.iteration),
            "train_seconds": float(self.train_seconds),
        }

    # -- training ----------------------------------------------------------------------------------------
    def run(self) -> dict | None:
        """Train until the iterations or minutes are used up or a stop is asked; returns the last metrics."""
        self._prepare_run_dir()
        if self.info.kind == "forest":
            return self._run_forest()
        return self._run_torch()

    def _done_fraction(self, it: int, seconds: float) -> float:
        """How far the run is, 0..1: the larger of iterations done / ``iterations`` and seconds / ``minutes``."""
        cfg = self.config
        done = 0.0
        if cfg.iterations:
            done = max(done, (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup))
        if cfg.minutes:
            done = max(done, seconds / (cfg.minutes * 60))
        return min(1.0, max(0.0, done))

    def _lr_at(self, it: int, seconds: float = 0.0) -> float:
        """Learning rate at iteration ``it`` after ``seconds`` of training: linear warm-up, then cosine decay
        to 5 % over the run (over its time budget when ``minutes`` is what ends it first)."""
        cfg = self.config
        lr = cfg.lr
        if cfg.warmup and it < cfg.warmup:
            return lr * (it + 1) / cfg.warmup
        if cfg.schedule == "cosine":
            t = self._done_fraction(it, seconds)
            return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
        return lr

    def _to_model_layout(self, raw, target, mask):
        """(B, Z, Y, X) patches -> model input and targets (2D models drop the z axis of 1)."""
        x = raw[:, None]
        if self.info.dims == 2:
            x = x[:, :, 0]
            if self.task.activation == "softmax":
                target, mask = target[:, 0], mask[:, 0]
            else:
                target, mask = target[:, :, 0], mask[:, :, 0]
        return x, target, mask

    def _make_batch(self, index: int):
        import torch

        from workbench.training.augment import augment_batch

        rng, g = _batch_generators(self.config.seed, index)
        raw, labels = self.sampler.sample(rng, self.batch_size)
        raw_t, lab_t = torch.from_numpy(raw), torch.from_numpy(labels)
        raw_t, lab_t = augment_batch(raw_t, lab_t, self.config.augment, g)
        target, mask = self.task.make(lab_t)
        return self._to_model_layout(raw_t, target, mask)

    def _val_batches(self):
        import torch

        if self.val_sampler is None:
            return []
        rng = np.random.default_rng([int(self.config.seed), 2**31])
        batches = []
        left = VAL_PATCHES
        while left > 0:
            n = min(left, self.batch_size)
            raw, labels = self.val_sampler.sample(rng, n)
            raw_t, lab_t = torch.from_numpy(raw), torch.from_numpy(labels)
            target, mask = self.task.make(lab_t)
            batches.append(self._to_model_layout(raw_t, target, mask))
            left -= n
        return batches

    def _validate(self, model, batches, device, memory_format) -> dict:
        import torch

        if not batches:
            return {}
        model.eval()
        losses, preds, targets = [], [], []
        with torch.no_grad():
            for x, t, m in batches:
                x = x.to(device).contiguous(memory_format=memory_format)
                t, m = t.to(device), m.to(device)
                logits = model(x)
                losses.append(float(self.task.loss(logits, t, m)))
                if self.task.activation == "softmax":
                    keep = t != IGNORE_INDEX
                    preds.append(logits.argmax(1)[keep].cpu().numpy())
                    targets.append(t[keep].cpu().numpy())
                else:
                    keep = m > 0
                    preds.append((logits > 0)[keep].long().cpu().numpy())
                    targets.append(t[keep].long().cpu().numpy())
        model.train()
        n_classes = self.task.out_channels if self.task.activation == "softmax" else 2
        acc, f1 = _scores(np.concatenate(preds), np.concatenate(targets), n_classes)
        return {"val_loss": float(np.mean(losses)), "val_accuracy": acc, "val_f1": f1}

    def _run_torch(self) -> dict | None:
        import torch

        cfg = self.config
        device = self.device
        torch.manual_seed(cfg.seed)
        model = self.info.build(1, self.task.out_channels, **cfg.arch_options)
        memory_format = torch.channels_last if self.info.dims == 2 else torch.channels_last_3d
        model = model.to(device=device, memory_format=memory_format)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        use_amp = device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if use_amp else None
        start = 0
        state = self._resume_state
        if state is not None:
            model.load_state_dict(state["model"])
            if state.get("bn_training"):  # the statistics training had reached, before their recalibration
                model.load_state_dict(state["bn_training"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"]["torch"])
            start = int(state["iteration"])
        self.iteration = start
        before = float(state.get("train_seconds", 0.0)) if state is not None else 0.0
        self.train_seconds = before
        self.model = model
        # -- semi-supervised (mean teacher): None when off, for dense labels or non-class targets --
        from workbench.training.semisupervised import make_semi_supervised

        semi = make_semi_supervised(cfg.semi_supervised, model, self._train_labels, self.task.activation,
                                    cfg.semi_options, seed=cfg.seed)
        if semi is not None and state is not None and "semi" in state:
            model.load_state_dict(state["student"])  # "model" holds the teacher
            semi.load_state_dict(state["semi"])
            with torch.no_grad():  # the teacher's statistics are the student's after every step (not recalibrated)
                for teacher_buf, student_buf in zip(semi.model.buffers(), model.buffers()):
                    teacher_buf.copy_(student_buf)
        self.semi = semi

        bn_training: dict = {}

        def checkpoint():
            ck = self._base_state()
            if bn_training:
                ck["bn_training"] = bn_training
                ck["bn_recalibration"] = self.bn_recalibration
            ck.update({
                "model": (semi.model if semi is not None else model).state_dict(),  # the teacher when semi
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "rng": {"torch": torch.get_rng_state()},
            })
            if semi is not None:
                ck.update({"student": model.state_dict(), "semi": semi.state_dict()})
            save_checkpoint(ck, self.run_dir / CHECKPOINT_NAME)
            self.last_checkpoint = self.run_dir / CHECKPOINT_NAME

        total = cfg.iterations
        # a resumed run trains for what is left of its time budget; the clock of train_seconds starts here too
        t0 = time.monotonic()
        deadline = t0 + max(0.0, cfg.minutes * 60 - before) if cfg.minutes else math.inf
        val_batches = self._val_batches()
        prefetch = _Prefetcher(self._make_batch, start, cfg.prefetch)
        model.train()
        last_log = last_ckpt = time.monotonic()
        run_loss, run_n = 0.0, 0
        try:
            while (total is None or self.iteration < total) and time.monotonic() < deadline and not self._stopping():
                x, target, mask = prefetch.get()
                x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                target, mask = target.to(device, non_blocking=True), mask.to(device, non_blocking=True)
                self.train_seconds = before + time.monotonic() - t0
                lr = self._lr_at(self.iteration, self.train_seconds)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, enabled=use_amp):
                    logits = model(semi.student_input(x, self.iteration) if semi is not None else x)
                loss = self.task.loss(logits, target, mask)
                if semi is not None:
                    done = self._done_fraction(self.iteration, self.train_seconds)
                    loss = loss + semi.loss(x, logits, target != IGNORE_INDEX, done)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if semi is not None:
                    semi.after_step(model)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise WorkbenchError(f"training diverged (loss {loss_value}) at iteration {self.iteration}; lower the learning rate")
                self.iteration += 1
                self.train_seconds = before + time.monotonic() - t0
                run_loss += loss_value
                run_n += 1
                now = time.monotonic()
                postfix = {"loss": f"{loss_value:.4f}"}
                if deadline < math.inf:
                    postfix["left"] = f"{max(0.0, deadline - now):.0f}s"
                self._progress(1, total, postfix)
                is_last = (total is not None and self.iteration >= total) or now >= deadline
                do_val = bool(val_batches) and (self.iteration % cfg.val_every == 0 or is_last)
                if self.iteration % cfg.log_every == 0 or is_last or do_val or self.iteration == start + 1:
                    record = {
                        "iteration": self.iteration,
                        "elapsed_s": before + now - t0,
                        "loss": run_loss / run_n,
                        "lr": lr,
                        "patches_per_s": run_n * self.batch_size / max(now - last_log, 1e-9),
                    }
                    if do_val:
                        record.update(self._validate(model, val_batches, device, memory_format))
                    self._log(record)
                    run_loss, run_n, last_log = 0.0, 0, time.monotonic()
                if now - last_ckpt >= cfg.checkpoint_seconds:
                    checkpoint()
                    last_ckpt = time.monotonic()
        finally:
            prefetch.close()
        self.train_seconds = before + time.monotonic() - t0  # a run ended by its deadline used all of its budget
        if run_n:
            now = time.monotonic()
            self._log({"iteration": self.iteration, "elapsed_s": before + now - t0, "loss": run_loss / run_n,
                       "lr": self._lr_at(self.iteration - 1, self.train_seconds),
                       "patches_per_s": run_n * self.batch_size / max(now - last_log, 1e-9)})
        if semi is not None:
            self.model = semi.model  # the teacher is the model kept (it is what the checkpoint holds)
        if cfg.bn_recalibration:
            from workbench.training.batchnorm import batchnorm_buffers, recalibrate_batchnorm

            if semi is None:  # the student trains on from these when resumed; the teacher's are copied each step
                bn_training.update(batchnorm_buffers(model))
            tile = [self.patch_shape[0], *(2 * p for p in self.patch_shape[1:])]
            self.bn_recalibration = recalibrate_batchnorm(self.model, self._raw_norm, tile, self.info.dims, device,
                                                          memory_format, seed=cfg.seed)
        checkpoint()
        return self.history[-1] if self.history else None

    def _run_forest(self) -> dict | None:
        import torch

        cfg = self.config
        t0 = time.monotonic()
        options = self.info.options(**cfg.arch_options)
        model = self.info.build(1, self.task.out_channels, **cfg.arch_options)
        target = self.task.make(torch.from_numpy(self._train_labels)[None])[0][0].numpy()
        rng = np.random.default_rng(cfg.seed)
        feats, ys = [], []
        zs = [int(z) for z in np.flatnonzero((target != IGNORE_INDEX).any(axis=(1, 2)))]
        for z in zs:
            if self._stopping():
                break
            sel = target[z] != IGNORE_INDEX
            f = model.features(self._raw_norm[z])
            feats.append(f[:, sel].T)
            ys.append(target[z][sel])
        if not feats:
            raise WorkbenchError("training stopped before any features were computed")
        x, y = np.concatenate(feats), np.concatenate(ys)
        keep = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if idx.size > options["max_samples_per_class"]:
                idx = rng.choice(idx, options["max_samples_per_class"], replace=False)
            keep.append(idx)
        keep = np.sort(np.concatenate(keep))
        model.fit(x[keep], y[keep], seed=cfg.seed)
        self.model = model
        self.iteration = 1
        elapsed = time.monotonic() - t0
        record = {"iteration": 1, "elapsed_s": elapsed, "samples": int(keep.size),
                  "train_accuracy": float((model.predict_features(x[keep]).argmax(1) == y[keep]).mean())}
        if self._val_labels is not None:
            vt = self.task.make(torch.from_numpy(self._val_labels)[None])[0][0].numpy()
            preds, targets = [], []
            for z in np.flatnonzero((vt != IGNORE_INDEX).any(axis=(1, 2))):
                sel = vt[z] != IGNORE_INDEX
                f = model.features(self._raw_norm[z])
                preds.append(model.predict_features(f[:, sel].T).argmax(1))
                targets.append(vt[z][sel])
            acc, f1 = _scores(np.concatenate(preds), np.concatenate(targets), self.task.out_channels)
            record.update({"val_accuracy": acc, "val_f1": f1})
        self._log(record)
        self._progress(1, 1, {"samples": int(keep.size)})
        ck = self._base_state()
        ck.update({"forest": model.state_dict(), "rng": {"torch": torch.get_rng_state()}})
        save_checkpoint(ck, self.run_dir / CHECKPOINT_NAME)
        self.last_checkpoint = self.run_dir / CHECKPOINT_NAME
        return record
