"""One writer per output: an advisory lock file beside what is being written.

Two sessions of one project (two browser tabs, the app and the CLI, two cluster jobs) may ask for the same
output at once. Without a lock the second one's ``--overwrite`` deletes what the first is writing and both
fail. :func:`exclusive` takes a ``flock`` on ``.<name>.lock`` beside the output for as long as it is being
written; a second writer gets a one-line :class:`WorkbenchError` saying who holds it. The kernel drops a
``flock`` when its process dies (also on ``kill -9``), so a crash never leaves a stale lock behind; the lock
file itself is removed by its holder on release.

Removing a lock file races with a writer that opened it just before: after taking the lock the new holder
checks that the name still points to the file it locked, and retries on a fresh file if it does not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import WorkbenchError

ATTEMPTS = 5


def lock_path(path: str | Path) -> Path:
    """The lock file of ``path``: ``.<name>.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _holder(fd: int) -> str:
    """What the lock file says about its holder ("pid N on HOST"), or "another process"."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def _try_lock(lock: Path, path: Path, what: str) -> int | None:
    """Open and lock ``lock``; its fd, None when the file was replaced under us (retry).

    Raises:
        WorkbenchError: another process holds the lock, or the folder cannot be written.
    """
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise WorkbenchError(f"cannot create the lock file ({err.strerror})", path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _holder(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise WorkbenchError(f"{what} is being written by {holder}; wait for it to finish or choose another "
                                 "output", path) from None
        raise WorkbenchError(f"cannot lock ({err.strerror})", path) from None
    try:
        same = os.fstat(fd).st_ino == os.stat(lock).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # the previous holder removed the file between our open and our lock
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def exclusive(path: str | Path, what: str = "this output") -> Iterator[Path]:
    """Hold the write lock of ``path`` for the ``with`` block; yields the lock file's path.

    Args:
        path: the output to be written (it need not exist yet).
        what: how the error names the output ("this prediction", ...).

    Raises:
        WorkbenchError: another live process is writing ``path`` (the message names its pid and host).
    """
    path = Path(path)
    lock = lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkbenchError(f"cannot create its folder ({err.strerror})", path) from None
    for _ in range(ATTEMPTS):
        fd = _try_lock(lock, path, what)
        if fd is not None:
            break
    else:
        raise WorkbenchError("cannot take the write lock (its lock file keeps being replaced)", path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it: a waiting writer sees the replaced file and retries
        os.close(fd)
