"""Training on sparse labels: targets, masked losses, patch sampling, augmentation, the Trainer, and
``load_run`` which turns a finished run into a Predictor."""

from workbench.training.config import AugmentConfig, TrainConfig
from workbench.training.hooks import Hook, Step
from workbench.training.runs import load_run
from workbench.training.trainer import Trainer

__all__ = ["AugmentConfig", "Hook", "Step", "TrainConfig", "Trainer", "load_run"]
