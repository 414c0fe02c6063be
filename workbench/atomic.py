"""Durable small-file writes: a file is either its old contents or its new contents, never half of either.

Every small file the workbench writes (``project.json``, ``config.json``, checkpoints, undo patches, metadata)
goes through :func:`atomic_write`: the bytes go to a temporary name in the same folder, are flushed and
fsynced, renamed over the final name with ``os.replace`` (atomic on POSIX within one file system), and the
folder is fsynced so the rename itself survives a power cut. A process killed at any moment leaves either
the previous file or the new one, plus at worst a ``.<name>.*.tmp`` file that :func:`remove_stale_temporaries`
deletes. A full disk (``ENOSPC``) or another write error becomes a one-line :class:`WorkbenchError` and leaves
the previous file as it was.

Append-only journals use :func:`append_line` (one ``write`` of a whole line, then fsync) and
:func:`drop_partial_tail` when they are opened (a line cut short by a kill was never acknowledged).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

from workbench.errors import WorkbenchError

TMP_SUFFIX = ".tmp"
NAME_KEPT = 200  # of a long file name in its temporary's name (which must stay within 255 bytes)


def temporary_name(path: str | Path) -> Path:
    """A temporary name beside ``path`` unique to this process and thread (``.<name>.<pid>.<tid>.tmp``)."""
    path = Path(path)
    return path.with_name(f".{path.name[:NAME_KEPT]}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder so a rename or a new entry in it is durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(err: OSError, path: Path) -> WorkbenchError:
    if err.errno == errno.ENOSPC:
        return WorkbenchError("no space left on the device; the previous file is unchanged", path)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WorkbenchError(f"cannot write here ({os.strerror(err.errno)})", path)
    return WorkbenchError(f"cannot write ({err.strerror or type(err).__name__})", path)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on a clean exit it is fsynced and renamed to ``path``
    (:func:`atomic_path`): on any exception it is removed and ``path`` keeps its previous contents.

    Args:
        path: the final name.
        mode: ``"wb"`` or ``"w"``.
        encoding: for text mode (default UTF-8). newline: as :func:`open` (``""`` for the csv module).

    Raises:
        WorkbenchError: an ``OSError`` (full disk, permissions).
    """
    text = {} if "b" in mode else {"encoding": encoding or "utf-8", "newline": newline}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes by file name (``tifffile.imwrite``,
    ``torch.jit.save``, ``zipfile``); on a clean exit it is fsynced and renamed to ``path``, on an error removed.

    Raises:
        WorkbenchError: an ``OSError`` while writing or renaming (full disk, permissions); ``path`` unchanged.
    """
    path = Path(path)
    tmp = temporary_name(path)
    _remove_dead_temporaries(path)
    try:
        yield tmp
        fd = os.open(str(tmp), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise _write_error(err, path) from None
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(path.parent)


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically and durably."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (with a final newline) atomically and durably."""
    atomic_write(path, json.dumps(obj, indent=indent) + "\n")


def atomic_save(path: str | Path, save: Callable[[IO[bytes]], None]) -> None:
    """Atomically write what ``save(file)`` writes to a binary file (``torch.save``, ``np.savez``, ...)."""
    with atomic_open(path, "wb") as f:
        save(f)


def append_line(path: str | Path, line: str, durable: bool = True) -> None:
    """Append one text line (a newline is added) in a single ``write`` call, then fsync when ``durable``.

    A process killed during the call leaves at most a partial last line without its newline, which
    :func:`drop_partial_tail` removes when the file is next opened.
    """
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise _write_error(err, path) from None


def drop_partial_tail(path: str | Path) -> int:
    """Truncate a line-oriented file after its last newline (an append cut short); returns bytes dropped."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        pos = size
        block = 4096
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        else:
            keep = 0
        if keep == size:
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def _remove_dead_temporaries(path: Path) -> None:
    """Delete the temporaries of ``path`` left by processes that no longer run (killed mid-write)."""
    name = path.name[:NAME_KEPT]
    for p in path.parent.glob(f".{glob_escape(name)}.*{TMP_SUFFIX}"):
        try:
            pid = int(p.name[len(name) + 2:].split(".")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            _discard(p)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> int:
    """Delete temporary files :func:`atomic_open` left in ``folder`` (of ``name`` only, when given)."""
    folder = Path(folder)
    pattern = f".{name}.*{TMP_SUFFIX}" if name else f".*{TMP_SUFFIX}"
    n = 0
    for p in folder.glob(pattern):
        if p.is_file():
            _discard(p)
            n += 1
    return n
