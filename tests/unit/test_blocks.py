"""The bounded block runner shared by OME-Zarr writing and prediction (``workbench.blocks``)."""

from __future__ import annotations

import threading
import time

import pytest

from workbench.blocks import run_threaded


def test_runs_everything_with_bounded_pending():
    lock = threading.Lock()
    running, peak = 0, 0

    def task(i):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with lock:
            running -= 1
        return i * i

    submitted = []

    def tasks():
        for i in range(20):
            submitted.append(i)
            yield i

    seen = []
    assert run_threaded(task, tasks(), workers=2, in_flight=3, on_done=seen.append)
    assert sorted(seen) == [i * i for i in range(20)] and peak <= 2 and submitted == list(range(20))


def test_stop_is_polled_before_each_submission_and_in_flight_tasks_finish():
    seen = []
    assert not run_threaded(lambda i: i, range(100), workers=2, in_flight=3, on_done=seen.append,
                            should_stop=lambda: len(seen) >= 5)
    assert 5 <= len(seen) <= 5 + 3 and sorted(seen) == list(range(len(seen)))
    # stopped from the start: nothing runs; nothing left to submit: never polled
    ran = []
    assert not run_threaded(ran.append, range(3), workers=1, should_stop=lambda: True)
    assert ran == []
    polls = []
    assert run_threaded(lambda i: i, [], workers=1, should_stop=lambda: polls.append(1) or True)
    assert polls == []


def test_a_failing_task_raises_and_cancels_the_rest():
    started = []

    def task(i):
        started.append(i)
        if i == 1:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return i

    with pytest.raises(RuntimeError, match="boom"):
        run_threaded(task, range(50), workers=1, in_flight=2)
    assert len(started) < 10
