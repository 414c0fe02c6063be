"""One writer per output: a second prediction of the same output is refused while the first runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from test_inference import GaussianPredictor

from workbench import locks
from workbench.errors import WorkbenchError
from workbench.inference import PredictOptions, open_prediction, predict_volume


class GatedPredictor(GaussianPredictor):
    """Waits at its first block until ``release`` is set (a prediction held in flight)."""

    def __init__(self):
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def predict(self, block):
        self.started.set()
        assert self.release.wait(30)
        return super().predict(block)


def test_a_second_writer_is_refused_and_named_then_the_lock_is_gone(tmp_path):
    out = tmp_path / "p.zarr"
    with locks.exclusive(out) as lock:
        assert lock.exists() and f"pid {os.getpid()}" in lock.read_text()
        with pytest.raises(WorkbenchError, match=rf"being written by pid {os.getpid()}") as err:
            with locks.exclusive(out, "this prediction"):
                pass
        assert str(out) in str(err.value) and "\n" not in str(err.value)
    assert not lock.exists()
    with locks.exclusive(out):  # free again
        pass


def test_the_lock_dies_with_its_holder(tmp_path):
    out = tmp_path / "p.zarr"
    code = textwrap.dedent(f"""
        import sys, time
        from workbench import locks
        with locks.exclusive({str(out)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(WorkbenchError, match=f"pid {proc.pid}"):
            with locks.exclusive(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with locks.exclusive(out):  # kill -9 left the file, not the lock
        pass


def test_two_predictions_of_one_output_one_waits_for_nothing_and_neither_is_lost(rng, tmp_path):
    raw = rng.integers(0, 256, size=(14, 40, 44)).astype(np.uint8)
    out = tmp_path / "p.zarr"
    first = GatedPredictor()
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        r=predict_volume(first, raw, out, PredictOptions(block_shape=(7, 20, 22), workers=1))))
    worker.start()
    try:
        assert first.started.wait(30)
        with pytest.raises(WorkbenchError, match="being written by"):
            predict_volume(GaussianPredictor(), raw, out, PredictOptions(block_shape=(7, 20, 22), overwrite=True))
    finally:
        first.release.set()
        worker.join(60)
    assert result["r"].complete
    expected = predict_volume(GaussianPredictor(), raw, tmp_path / "q.zarr", PredictOptions(block_shape=(7, 20, 22)))
    np.testing.assert_array_equal(open_prediction(out)[...], open_prediction(expected.path)[...])
    assert not locks.lock_path(out).exists()


def test_the_lock_file_replaced_under_a_waiter_is_retried(tmp_path, monkeypatch):
    out = tmp_path / "p.zarr"
    real_flock, calls = locks.fcntl.flock, []

    def flock_then_replace(fd, op):
        real_flock(fd, op)
        if op & locks.fcntl.LOCK_EX and not calls:  # the previous holder removes the file after our open
            calls.append(fd)
            os.unlink(locks.lock_path(out))
            locks.lock_path(out).write_text("")

    monkeypatch.setattr(locks.fcntl, "flock", flock_then_replace)
    with locks.exclusive(out) as lock:
        assert len(calls) == 1
        assert f"pid {os.getpid()}" in lock.read_text()
