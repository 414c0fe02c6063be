"""Stop signals for long commands: Ctrl+C, ``kill`` (systemd, ``docker stop``, a cluster scheduler) and a
closed terminal end a run at its next iteration or block boundary, leaving resumable state on disk.

A first signal asks the run to stop (:class:`StopOnSignals` ``.requested`` turns True, polled by the trainer's
``should_stop`` and the block executor's); a second one of the same kind ends the process at once (a user who
presses Ctrl+C twice means it). The exit code after a stop is the shell's ``128 + signal number``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: Signals that mean "stop": Ctrl+C, kill/systemd/docker stop, a closed terminal.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    """A signal handler that turns any stop signal into KeyboardInterrupt (for servers that wait in a loop)."""
    raise KeyboardInterrupt


class StopOnSignals:
    """Context manager: while inside, a stop signal sets :attr:`requested` instead of killing the process.

    Outside the main thread (signal handlers cannot be installed there) it does nothing and never requests a
    stop. The previous handlers come back on exit.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.received: signal.Signals | None = None
        self._event = threading.Event()
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self._event.is_set()

    def __call__(self) -> bool:
        """The same as :attr:`requested` (so the object itself is a ``should_stop`` callable)."""
        return self._event.is_set()

    @property
    def exit_code(self) -> int:
        """``128 + signal number`` after a stop (130 for Ctrl+C, 143 for SIGTERM), else 0."""
        return 128 + int(self.received) if self.received is not None else 0

    @property
    def name(self) -> str:
        """The received signal's name (``"SIGTERM"``), or "" when none came."""
        return self.received.name if self.received is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set():  # the second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        self._event.set()

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
