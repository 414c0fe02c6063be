"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

from pathlib import Path

from workbench.atomic import atomic_save
from workbench.errors import WorkbenchError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, fsync, rename, fsync the folder
    (:func:`workbench.atomic.atomic_save`): a kill at any moment leaves the previous checkpoint or the new one.

    Raises:
        WorkbenchError: the file cannot be written (full disk, permissions); the previous one is kept.
    """
    import torch

    path = Path(path)
    atomic_save(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint (tensors and plain Python values only).

    Raises:
        WorkbenchError: missing or unreadable file.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise WorkbenchError("no checkpoint.pt: this run has not saved a model yet", path.parent)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, or an object that is not plain data
        lines = str(err).strip().splitlines()  # an empty message (a file cut to 0 bytes: EOFError) has no line
        detail = f"{type(err).__name__}: {lines[0][:120]}" if lines else type(err).__name__
        raise WorkbenchError(f"cannot read checkpoint ({detail}; damaged or truncated?)", path) from None
    if not isinstance(state, dict):
        raise WorkbenchError(f"not a workbench checkpoint (holds a {type(state).__name__})", path)
    return state
