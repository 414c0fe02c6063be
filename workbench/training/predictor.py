"""The predictors of trained runs (raw block in, probabilities out): a network and a random forest.

Both implement :class:`~workbench.models.predictor.Predictor`; ``workbench.training.load_run`` builds the
right one for a run through its kind's strategy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.precision import autocast, resolve_precision
from workbench.training.checkpoint import CHECKPOINT_NAME
from workbench.training.config import TrainConfig
from workbench.training.data import normalise

#: 2D models run on batches of slices of about this many pixels
SLICE_BATCH_PIXELS = 2_000_000


class _PredictorBase:
    """The attributes of the Predictor Protocol (``workbench.models.predictor``) plus ``config`` and ``info``."""

    #: raw channels the models take
    in_channels = 1
    #: no own tile size: blockwise inference chooses
    tile_shape: tuple[int, ...] | None = None

    def __init__(self, run_dir: Path, config: TrainConfig, state: dict, info):
        self.run_dir: Path | None = Path(run_dir)
        self.config = config
        self.arch = info.name
        self.info = info
        self.spatial_dims = info.dims
        self.channel_names = list(state["channel_names"])
        self.out_channels = len(self.channel_names)
        self.target = state.get("target", "semantic")
        self.activation = "sigmoid" if self.target == "affinities" else "softmax"
        self.normalisation = dict(state["normalisation"])
        self.iteration = int(state.get("iteration", 0))
        defaults = state.get("prediction_defaults")
        #: whether the run's validation found test-time augmentation worth its cost (None: not measured)
        self.recommended_tta: bool | None = bool(defaults["tta"]) if isinstance(defaults, dict) and "tta" in defaults else None
        self.halo = info.halo(**state.get("arch_options", config.arch_options))
        #: total down-sampling (z, y, x): blockwise prediction aligns reads and tiles to it
        self.divisor = info.divisor(**state.get("arch_options", config.arch_options))
        if self.spatial_dims == 2:
            self.halo = (0, *self.halo[1:])
            self.divisor = (1, *self.divisor[1:])

    def _check(self, block) -> np.ndarray:
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[None]
        if block.ndim != 3:
            raise WorkbenchError(f"predict expects a (z, y, x) block, got shape {block.shape}")
        return block

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.arch}, {self.target}: {', '.join(self.channel_names)}; "
                f"iteration {self.iteration}; halo {self.halo})")


class TorchPredictor(_PredictorBase):
    """A trained network: ``predict(block)`` -> float32 (C, z, y, x) probabilities."""

    def __init__(self, run_dir, config, state, info, device, precision: str = "fp32"):
        import torch

        super().__init__(run_dir, config, state, info)
        self.device = device
        #: the forward passes' precision on ``device`` (resolved: "fp32", "bf16" or "fp16"); outputs are float32
        self.precision = resolve_precision(precision, device)
        model = info.build(1, self.out_channels, **state.get("arch_options", config.arch_options))
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as err:
            raise WorkbenchError(
                f"checkpoint does not fit architecture {info.name!r} ({str(err).splitlines()[0][:100]})",
                Path(run_dir) / CHECKPOINT_NAME) from None
        self.memory_format = torch.channels_last if info.dims == 2 else torch.channels_last_3d
        self.model = model.to(device=device, memory_format=self.memory_format).eval()
        from workbench.training.calibration import Calibration

        #: the run's class-prior calibration (``workbench.training.calibration``), None when it has none
        self.calibration = Calibration.from_dict(state.get("calibration"))
        active = (self.activation == "softmax" and self.calibration is not None and self.calibration.active()
                  and len(self.calibration.bias) == self.out_channels)
        self._bias = torch.tensor(self.calibration.bias, device=device).view(1, -1, *[1] * info.dims) if active else None

    def _activate(self, logits):
        if self.activation == "sigmoid":
            return logits.sigmoid()
        return (logits if self._bias is None else logits + self._bias).softmax(1)

    def predict(self, block) -> np.ndarray:
        """Raw block (z, y, x) in the raw dtype -> float32 (out_channels, z, y, x)."""
        import torch

        block = self._check(block)
        x = torch.from_numpy(normalise(block, self.normalisation))
        out = np.empty((self.out_channels, *block.shape), np.float32)
        with torch.inference_mode(), autocast(self.device, self.precision):
            if self.spatial_dims == 2:
                step = max(1, SLICE_BATCH_PIXELS // max(1, block.shape[1] * block.shape[2]))
                for z0 in range(0, block.shape[0], step):
                    xb = x[z0 : z0 + step, None].to(self.device).contiguous(memory_format=self.memory_format)
                    p = self._activate(self.model(xb).float())  # (n, C, y, x)
                    out[:, z0 : z0 + step] = p.movedim(1, 0).cpu().numpy()
            else:
                xb = x[None, None].to(self.device).contiguous(memory_format=self.memory_format)
                out[:] = self._activate(self.model(xb).float())[0].cpu().numpy()
        return out


class ForestPredictor(_PredictorBase):
    """A trained random forest, applied slice by slice (on the CPU)."""

    def __init__(self, run_dir, config, state, info):
        super().__init__(run_dir, config, state, info)
        self.device = "cpu"
        #: filter features and trees always compute in float32 (a precision asked for is ignored)
        self.precision = "fp32"
        self.model = info.build(1, self.out_channels, **state.get("arch_options", config.arch_options))
        self.model.load_state_dict(state["forest"])

    def predict(self, block) -> np.ndarray:
        """Raw block (z, y, x) in the raw dtype -> float32 (out_channels, z, y, x)."""
        block = self._check(block)
        x = normalise(block, self.normalisation)
        return np.stack([self.model.predict_slice(s) for s in x], axis=1)
