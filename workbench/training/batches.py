"""Training batches: patch sampling, augmentation and targets, made ahead in a background thread.

Batch ``i`` is drawn from generators seeded with ``(seed, i)``, so the sequence of batches does not depend
on timing, and a resumed run continues exactly.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from workbench.training.augment import augment_batch
from workbench.training.config import AugmentConfig
from workbench.training.sampler import PatchSampler
from workbench.training.task import Task

#: validation patches are drawn once (seeded) and reused at every validation
VAL_PATCHES = 8


def batch_generators(seed: int, index: int):
    """(numpy Generator, torch Generator) for batch ``index`` of a run seeded with ``seed``."""
    import torch

    rng = np.random.default_rng([int(seed), int(index)])
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return rng, g


class BatchMaker:
    """Makes the training batches of one run: ``make(i)`` -> (input, target, mask) torch tensors.

    Args:
        sampler: where patches come from (``sampler.sample(rng, n)`` -> raw, labels).
        task: turns label patches into targets and masks.
        dims: 2 (the z axis of 1 is dropped) or 3.
        batch_size, augment, seed: patches per batch, augmentation, the run's seed.
    """

    def __init__(self, sampler: PatchSampler, task: Task, dims: int, batch_size: int, augment: AugmentConfig,
                 seed: int):
        self.sampler = sampler
        self.task = task
        self.dims = dims
        self.batch_size = int(batch_size)
        self.augment = augment
        self.seed = int(seed)

    def layout(self, raw, target, mask):
        """(B, Z, Y, X) patches -> model input and targets (2D models drop the z axis of 1)."""
        x = raw[:, None]
        if self.dims == 2:
            x = x[:, :, 0]
            if self.task.activation == "softmax":
                target, mask = target[:, 0], mask[:, 0]
            else:
                target, mask = target[:, :, 0], mask[:, :, 0]
        return x, target, mask

    def make(self, index: int):
        """Batch ``index``: sampled, augmented, with its targets."""
        import torch

        rng, g = batch_generators(self.seed, index)
        raw, labels = self.sampler.sample(rng, self.batch_size)
        raw_t, lab_t = augment_batch(torch.from_numpy(raw), torch.from_numpy(labels), self.augment, g)
        target, mask = self.task.make(lab_t)
        return self.layout(raw_t, target, mask)

    def fixed(self, sampler: PatchSampler | None, n: int = VAL_PATCHES) -> list:
        """``n`` patches of ``sampler`` (no augmentation), drawn once with a fixed seed: validation batches."""
        import torch

        if sampler is None:
            return []
        rng = np.random.default_rng([self.seed, 2**31])
        batches, left = [], n
        while left > 0:
            k = min(left, self.batch_size)
            raw, labels = sampler.sample(rng, k)
            target, mask = self.task.make(torch.from_numpy(labels))
            batches.append(self.layout(torch.from_numpy(raw), target, mask))
            left -= k
        return batches


class Prefetcher:
    """Makes ``make(i)`` for i = start, start+1, ... in a background thread, ``depth`` ahead (0: inline).

    Args:
        transfer: applied to each batch in the background thread too (``workbench.device.pin_batch`` for a
            CUDA device: page-locked batches copy to the GPU while it computes).

    Attributes:
        wait_seconds: time ``get`` spent waiting for a batch (the data pipeline not keeping up), or making it
            when inline.
    """

    def __init__(self, make: Callable[[int], tuple], start: int, depth: int,
                 transfer: Callable[[tuple], tuple] | None = None):
        self._make = make if transfer is None else (lambda i: transfer(make(i)))
        self._next = start
        self._depth = depth
        self._stop = threading.Event()
        self.wait_seconds = 0.0
        if depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._work, name="workbench-batches", daemon=True)
            self._thread.start()

    def _work(self) -> None:
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
        """The next batch (re-raises an error of the batch thread)."""
        t0 = time.perf_counter()
        if self._depth <= 0:
            batch = self._make(self._next)
            self._next += 1
            self.wait_seconds += time.perf_counter() - t0
            return batch
        kind, value = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        if self._depth > 0:
            self._thread.join(timeout=5)
