"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Where datasets live: ``WORKBENCH_DATA_DIR``, else ``~/.cache/em-workbench/data``.

    The catalog looks here first (a local mirror of the per-dataset files) before downloading.
    """
    env = os.environ.get("WORKBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "em-workbench" / "data"


def cache_dir() -> Path:
    """Where downloads and unpacked OME-Zarr copies go: ``WORKBENCH_CACHE_DIR`` or ``~/.cache/em-workbench``."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "em-workbench"
