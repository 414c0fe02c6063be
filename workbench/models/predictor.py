"""The Predictor contract between training and inference (docs/internals.md), as a runtime-checkable Protocol.

Trained runs (``workbench.training.load_run``) implement every attribute. A minimal, duck-typed predictor
(``predict``, ``out_channels``/``channel_names`` and perhaps ``halo``, ``spatial_dims``) is accepted too:
:func:`as_predictor` wraps it in a :class:`PredictorAdapter` that fills in :data:`OPTIONAL_DEFAULTS`, so the
code behind it reads plain attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from workbench.errors import WorkbenchError


@runtime_checkable
class Predictor(Protocol):
    """Raw block in, probabilities out, plus what blockwise inference needs to know about the model.

    Attributes:
        spatial_dims: 2 (applied slice by slice) or 3 (on z, y, x blocks).
        out_channels: probabilities per voxel (classes, boundaries or affinities).
        channel_names: one name per output channel.
        halo: context (z, y, x) needed on each side for exact-ish outputs.
        divisor: total down-sampling (z, y, x); block reads and tiles start on its grid.
        in_channels: raw channels the model takes.
        target: what the channels are (``"semantic"``, ``"boundaries"``, ``"affinities"``, ...) or None.
        activation: ``"softmax"``, ``"sigmoid"`` or None: how test-time-augmentation views are combined.
        tile_shape: the largest region given to ``predict`` at once, or None (inference chooses).
        run_dir: the training run it was loaded from (Dask workers reload it), or None (it is pickled).
        device: where it runs (a ``torch.device`` or a string; None or ``"cpu"``: the CPU).
        model: the underlying model (``torch.compile`` replaces a ``torch.nn.Module`` here), or None.
        precision: the arithmetic ``predict`` runs in (``"fp32"`` or ``"bf16"``, ``workbench.precision``).
    """

    spatial_dims: int
    out_channels: int
    channel_names: list[str]
    halo: tuple[int, int, int]
    divisor: tuple[int, int, int]
    in_channels: int
    target: str | None
    activation: str | None
    tile_shape: tuple[int, ...] | None
    run_dir: Path | None
    device: Any
    model: Any
    precision: str

    def predict(self, block: np.ndarray) -> np.ndarray:
        """Raw block (z, y, x) in the raw dtype -> float32 (out_channels, z, y, x), normalisation included."""
        ...


#: Every attribute of the Protocol (``predict`` aside).
PREDICTOR_ATTRIBUTES: tuple[str, ...] = (
    "spatial_dims", "out_channels", "channel_names", "halo", "divisor", "in_channels", "target", "activation",
    "tile_shape", "run_dir", "device", "model", "precision",
)

#: What a duck-typed predictor's missing attributes mean (``channel_names``/``out_channels`` derive from each other).
OPTIONAL_DEFAULTS: dict[str, Any] = {
    "spatial_dims": 3,
    "halo": (0, 0, 0),
    "divisor": (1, 1, 1),
    "in_channels": 1,
    "target": None,
    "activation": None,
    "tile_shape": None,
    "run_dir": None,
    "device": None,
    "model": None,
    "precision": "fp32",
}


def _forwarded(name: str) -> property:
    """A property reading ``inner.<name>`` (its default when missing) and writing it through."""
    default = OPTIONAL_DEFAULTS[name]

    def get(self):
        return getattr(self.inner, name, default)

    def set_(self, value):
        setattr(self.inner, name, value)

    return property(get, set_, doc=f"``{name}`` of the wrapped predictor (default {default!r}).")


class PredictorAdapter:
    """A duck-typed predictor seen through the full :class:`Predictor` Protocol (missing attributes: defaults).

    Args:
        inner: any object with ``predict(block)`` and ``out_channels`` or ``channel_names``.
    """

    spatial_dims = _forwarded("spatial_dims")
    halo = _forwarded("halo")
    divisor = _forwarded("divisor")
    in_channels = _forwarded("in_channels")
    target = _forwarded("target")
    activation = _forwarded("activation")
    tile_shape = _forwarded("tile_shape")
    run_dir = _forwarded("run_dir")
    device = _forwarded("device")
    model = _forwarded("model")
    precision = _forwarded("precision")

    def __init__(self, inner: Any):
        self.inner = inner

    @property
    def out_channels(self) -> int:
        n = getattr(self.inner, "out_channels", None)
        return int(n) if n is not None else len(self.inner.channel_names)

    @property
    def channel_names(self) -> list[str]:
        names = getattr(self.inner, "channel_names", None)
        return list(names) if names else [f"channel {i}" for i in range(self.out_channels)]

    def predict(self, block: np.ndarray) -> np.ndarray:
        """``inner.predict(block)``."""
        return self.inner.predict(block)

    def __repr__(self) -> str:
        return f"PredictorAdapter({self.inner!r})"


def as_predictor(obj: Any) -> Predictor:
    """``obj`` itself when it implements :class:`Predictor`, else a :class:`PredictorAdapter` around it.

    Raises:
        WorkbenchError: ``obj`` has no ``predict`` method, or neither ``out_channels`` nor ``channel_names``.
    """
    if isinstance(obj, Predictor):
        return obj
    kind = type(obj).__name__
    if not callable(getattr(obj, "predict", None)):
        raise WorkbenchError(f"not a predictor: {kind} has no predict(block) method")
    if getattr(obj, "out_channels", None) is None and not getattr(obj, "channel_names", None):
        raise WorkbenchError(f"not a predictor: {kind} has neither out_channels nor channel_names")
    return PredictorAdapter(obj)
