"""The one exception type users see: a one-line message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class WorkbenchError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI prints it as ``workbench: error: <message>`` and exits non-zero; the app shows it in a
    status line. Never raise it for programming errors (those keep their traceback).
    """

    def __init__(self, message: str, path: str | Path | None = None):
        message = " ".join(str(message).split())  # always one line
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = None if path is None else str(path)
