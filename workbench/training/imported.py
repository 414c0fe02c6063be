"""Predict with a model file: ``load_model(src)`` turns a run folder, a Zoo zip, a TorchScript file or a checkpoint
into a :class:`~workbench.models.predictor.Predictor`.

A network the registry can rebuild (every workbench export, any checkpoint) becomes the same ``TorchPredictor``
as its run, so its outputs equal the run's; a TorchScript-only network (a Zoo model with TorchScript weights,
a TorchScript file from elsewhere) runs as :class:`TorchScriptPredictor`, with the package's preprocessing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.models import get_architecture
from workbench.models.imports import ModelSource, open_model
from workbench.models.predictor import Predictor
from workbench.precision import Precision, autocast, resolve_precision
from workbench.training.config import TrainConfig
from workbench.training.data import as_array, compute_normalisation, normalise
from workbench.training.predictor import SLICE_BATCH_PIXELS, TorchPredictor
from workbench.training.runs import load_run

#: a TorchScript network without a description is assumed to down-sample this much (y, x) and to need this halo
DEFAULT_DIVISOR, DEFAULT_HALO = 16, 32


def _not_a_predictor(path: Path):
    return WorkbenchError("a warm-up run reconstructs the image and predicts no classes: fine-tune it first "
                          "(workbench train --init RUN)", path)


def _preprocess(block: np.ndarray, steps: list[dict]) -> np.ndarray:
    """A Zoo package's per-block preprocessing (``scale_range``, ``zero_mean_unit_variance``, ``clip``,
    ``scale_linear``) on a float32 block."""
    x = block.astype(np.float32)
    for step in steps:
        op, kw = step["id"], step["kwargs"]
        if op == "scale_range":
            lo, hi = np.percentile(x, [kw.get("min_percentile", 0.0), kw.get("max_percentile", 100.0)])
            x = (x - lo) / (hi - lo + float(kw.get("eps", 1e-6)))
        elif op == "zero_mean_unit_variance":
            mean, std = (kw["mean"], kw["std"]) if kw.get("mode") == "fixed" else (x.mean(), x.std())
            x = (x - np.float32(np.mean(mean))) / (np.float32(np.mean(std)) + float(kw.get("eps", 1e-6)))
        elif op == "clip":
            x = np.clip(x, kw.get("min", -np.inf), kw.get("max", np.inf))
        elif op == "scale_linear":
            x = x * np.float32(np.mean(kw.get("gain", 1.0))) + np.float32(np.mean(kw.get("offset", 0.0)))
    return x.astype(np.float32, copy=False)


class TorchScriptPredictor:
    """A TorchScript network whose outputs are probabilities (a Zoo package's or ``workbench export``'s).

    Inputs are scaled with the file's normalisation (or the raw volume's percentiles, or the package's
    per-block preprocessing) and padded (by reflection) to the network's down-sampling grid.
    """

    in_channels = 1
    tile_shape: tuple[int, ...] | None = None
    run_dir: Path | None = None

    def __init__(self, source: ModelSource, device, precision: str, raw=None):
        import torch

        self.source = source
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.model = torch.jit.load(io.BytesIO(source.torchscript), map_location=device).eval()
        self.preprocessing = list(source.extra.get("preprocessing") or [])
        self.normalisation = source.normalisation
        if self.normalisation is None and not self.preprocessing:
            if raw is None:
                raise WorkbenchError("the model does not say how its inputs are scaled: give the raw volume to "
                                     "scale them with its percentiles", source.path)
            self.normalisation = compute_normalisation(as_array(raw, "raw"))
        dims = source.dims or self._probe_dims()
        self.spatial_dims = dims
        d = DEFAULT_DIVISOR
        self.divisor = tuple(source.divisor) if source.divisor else ((1, d, d) if dims == 2 else (4, d, d))
        self.halo = tuple(source.halo) if source.halo else ((0, DEFAULT_HALO, DEFAULT_HALO) if dims == 2 else (8, DEFAULT_HALO, DEFAULT_HALO))
        if dims == 2:
            self.divisor, self.halo = (1, *self.divisor[1:]), (0, *self.halo[1:])
        if not source.out_channels:
            source.out_channels = int(self._forward(np.zeros((1, *self.divisor[1:]) if dims == 2 else self.divisor,
                                                            np.float32)).shape[0])
        self.out_channels = int(source.out_channels)
        self.channel_names = list(source.channel_names) or [f"channel {i}" for i in range(self.out_channels)]
        self.target = source.target
        self.activation = source.extra.get("activation") or ("sigmoid" if self.target == "affinities" else "softmax")
        self.arch = source.arch or "torchscript"

    def __getstate__(self) -> dict:  # Dask workers: the program's bytes travel, the loaded module does not
        state = dict(self.__dict__)
        state["model"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        import torch

        self.__dict__.update(state)
        self.model = torch.jit.load(io.BytesIO(self.source.torchscript), map_location=self.device).eval()

    def _probe_dims(self) -> int:
        import torch

        for dims, shape in ((2, (1, 1, 64, 64)), (3, (1, 1, 16, 64, 64))):
            try:
                with torch.inference_mode():
                    self.model(torch.zeros(shape, device=self.device))
                return dims
            except Exception:  # the other dimensionality
                continue
        raise WorkbenchError("the TorchScript network takes neither (1, 1, y, x) nor (1, 1, z, y, x) inputs", self.source.path)

    def _scaled(self, block: np.ndarray) -> np.ndarray:
        if self.normalisation is not None:
            block = normalise(block, self.normalisation)
        return _preprocess(block, self.preprocessing) if self.preprocessing else block.astype(np.float32, copy=False)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Network on one scaled (z, y, x) block -> (C, z, y, x), padded to the divisor and cropped back."""
        import torch

        pad = [(0, 0)] + [(0, (-s) % d) for s, d in zip(x.shape[1:], self.divisor[1:])]
        if self.spatial_dims == 3:
            pad[0] = (0, (-x.shape[0]) % self.divisor[0])
        mode = "reflect" if all(s > p for s, (_, p) in zip(x.shape, pad)) else "edge"
        xp = np.pad(x, pad, mode=mode) if any(p for _, p in pad) else x
        t = torch.from_numpy(np.ascontiguousarray(xp)).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            if self.spatial_dims == 2:
                step = max(1, SLICE_BATCH_PIXELS // max(1, xp.shape[1] * xp.shape[2]))
                outs = [self.model(t[z0 : z0 + step, None]).float() for z0 in range(0, xp.shape[0], step)]
                y = torch.cat(outs).movedim(1, 0)
            else:
                y = self.model(t[None, None]).float()[0]
        return y[:, : x.shape[0], : x.shape[1], : x.shape[2]].cpu().numpy()

    def predict(self, block) -> np.ndarray:
        """Raw block (z, y, x) -> float32 (out_channels, z, y, x) probabilities."""
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[None]
        if block.ndim != 3:
            raise WorkbenchError(f"predict expects a (z, y, x) block, got shape {block.shape}")
        return self._forward(self._scaled(block))

    def __repr__(self) -> str:
        return f"TorchScriptPredictor({self.source.path.name}: {', '.join(self.channel_names)}; halo {self.halo})"


def check_fits(source: ModelSource, raw=None) -> None:
    """One-line errors for a model the raw volume cannot feed: input channels, a 3D model on a single slice.

    Raises:
        WorkbenchError: saying what would fit.
    """
    if source.in_channels != 1:
        raise WorkbenchError(f"the model takes {source.in_channels} input channels; EM raw volumes have 1: use a model "
                             "with one input channel", source.path)
    shape = getattr(raw, "shape", None)
    if shape is not None and len(shape) == 3 and shape[0] == 1 and source.dims == 3:
        raise WorkbenchError(f"the model is 3D ({source.describe()}) and the volume is a single slice: use a 2D "
                             "model (e.g. one trained with --arch unet2d)", source.path)


def source_predictor(source: ModelSource, device="auto", precision: str = "fp32", raw=None) -> Predictor:
    """The Predictor of a resolved model file (see :func:`load_model`)."""
    from workbench.device import pick_device

    if source.pretext:
        raise _not_a_predictor(source.path)
    check_fits(source, raw)
    dev = pick_device(device)
    if source.rebuildable:
        info = get_architecture(source.arch)
        normalisation = source.normalisation
        if normalisation is None:
            if raw is None:
                raise WorkbenchError("the model does not say how its inputs are scaled: give the raw volume",
                                     source.path)
            normalisation = compute_normalisation(as_array(raw, "raw"))
        names = list(source.channel_names) or [f"channel {i}" for i in range(source.out_channels or 0)]
        config = TrainConfig(arch=source.arch, arch_options=dict(source.arch_options),
                             target=source.target or "semantic", offsets=source.offsets)
        state = {"channel_names": names, "target": source.target or "semantic", "normalisation": normalisation,
                 "iteration": source.iteration, "arch_options": dict(source.arch_options), "model": source.state_dict}
        predictor = TorchPredictor(source.path, config, state, info, dev, precision)
        predictor.run_dir = None  # not a run folder: Dask workers get the predictor pickled
        return predictor
    if source.torchscript is not None:
        return TorchScriptPredictor(source, dev, precision, raw)
    raise WorkbenchError("the model file holds no weights the workbench can run", source.path)


def load_model(src, device="auto", precision: str = "fp32", raw=None) -> Predictor:
    """A Predictor from any model file.

    Args:
        src: a training run folder (``load_run``), a BioImage Model Zoo zip, a TorchScript file or a checkpoint
            (``workbench.models.imports.open_model``).
        device, precision: as for ``load_run``.
        raw: the volume to predict, used only to scale the inputs of a model that does not say how (its
            0.5-99.5 percentiles, as training does).

    Raises:
        WorkbenchError: unreadable, unsafe or unrunnable file; a warm-up run (it predicts no classes).
    """
    Precision.parse(precision)
    path = Path(src).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise WorkbenchError("not a training run folder (no config.json)", path)
        if TrainConfig.load(path / "config.json").pretext:
            raise _not_a_predictor(path)
        predictor = load_run(path, device=device, precision=precision)
        if raw is not None and predictor.spatial_dims == 3 and len(raw.shape) == 3 and raw.shape[0] == 1:
            raise WorkbenchError("the run's model is 3D and the volume is a single slice: use a 2D model", path)
        return predictor
    return source_predictor(open_model(path), device, precision, raw)


__all__ = ["TorchScriptPredictor", "check_fits", "load_model", "source_predictor"]
