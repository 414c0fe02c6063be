"""``load_run``: a trained run (``config.json`` + ``checkpoint.pt``) as a Predictor, the one way to load a run."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.models import get_architecture
from workbench.models.predictor import Predictor
from workbench.precision import Precision
from workbench.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from workbench.training.config import TrainConfig
from workbench.training.strategies import strategy_for


def load_run(run_dir, device: str = "auto", precision: str = "fp32") -> Predictor:
    """Rebuild the model of a training run from ``config.json`` and ``checkpoint.pt``.

    Args:
        run_dir: the run folder.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``; a random forest always runs on the CPU.
        precision: the forward passes' ``fp32`` (default), ``bf16``, ``auto`` (bf16 where native and measured faster) or ``fp16``
            (CUDA), resolved for the device (``predictor.precision``); a random forest always computes in fp32.

    Returns:
        a :class:`~workbench.models.predictor.Predictor` (its kind's: a network or a random forest).

    Raises:
        WorkbenchError: not a run directory, no checkpoint yet, a checkpoint of another architecture, or a
            precision this device cannot run.
    """
    Precision.parse(precision)  # an unknown name fails before anything is read
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WorkbenchError("no such run directory", run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    info = get_architecture(config.arch)
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    if state.get("arch") != config.arch:
        raise WorkbenchError(
            f"checkpoint is from architecture {state.get('arch')!r} but config.json says {config.arch!r}",
            run_dir / CHECKPOINT_NAME)
    return strategy_for(info).predictor(run_dir, config, state, info, device, precision)
