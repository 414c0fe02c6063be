"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

import os
from pathlib import Path

from workbench.errors import WorkbenchError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then rename (never a half-written checkpoint)."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


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
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, or an object that is not plain data
        raise WorkbenchError(f"cannot read checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})", path) from None
