"""Loading trained runs for inference (``workbench.training.load_run``, imported lazily)."""

from __future__ import annotations


def load_run(run_dir, device: str = "auto"):
    """``workbench.training.load_run`` (see docs/internals.md)."""
    try:
        from workbench.training import load_run as _load
    except ImportError:
        from workbench.training.predictor import load_run as _load
    return _load(run_dir, device=device)
