"""The session watchdog (widgets.lifecycle): a slow first page load, and cleanups when the kernel exits."""

from __future__ import annotations

import threading
import time

from widgets.lifecycle import SessionWatchdog


def test_a_page_that_never_connected_gets_the_first_timeout():
    dog = SessionWatchdog(timeout=0.2, interval=0.05, enabled=True, exit_process=False, first_timeout=0.8)
    ended = threading.Event()
    dog.on_end(ended.set)
    t0 = time.monotonic()
    dog.start()
    assert ended.wait(5)
    assert time.monotonic() - t0 >= 0.75, "a kernel must not end before its page had a chance to connect"
    assert not dog.page_seen and "no page" in dog.reason


def test_at_exit_runs_the_cleanups_once_within_the_budget():
    calls = []
    dog = SessionWatchdog(enabled=False, exit_process=False)
    dog.on_end(lambda: calls.append("stop training"))
    assert dog.at_exit(budget=1.0) and calls == ["stop training"] and dog.reason == "kernel shutdown"
    assert dog.at_exit(budget=1.0) and calls == ["stop training"]  # once
    slow = SessionWatchdog(enabled=False, exit_process=False)
    slow.on_end(lambda: time.sleep(5))
    t0 = time.monotonic()
    assert not slow.at_exit(budget=0.2)
    assert time.monotonic() - t0 < 1.0, "the exit must not wait longer than its budget"
