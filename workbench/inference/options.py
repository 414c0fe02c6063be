"""The knobs of blockwise prediction in one value, checked once (:class:`PredictOptions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.choices import Choice
from workbench.errors import WorkbenchError


class StorageDtype(Choice, what="storage dtype"):
    """How probabilities are stored: ``uint8`` = round(255 p) (default) or ``float16``."""

    UINT8 = "uint8"
    FLOAT16 = "float16"


#: ``scheduler`` values that mean local threads in this process.
LOCAL_SCHEDULERS = (None, "threads")


def _shape(value: Sequence[int] | None, what: str) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or any(v <= 0 for v in shape):
        raise WorkbenchError(f"{what} must be three positive numbers (z, y, x), got {value}")
    return shape  # type: ignore[return-value]


def _positive_int(value: Any, what: str, allow: tuple = ()) -> Any:
    if value in allow:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        shown = " or ".join(["a positive number", *(repr(a) for a in allow if a is not None)])
        raise WorkbenchError(f"{what} must be {shown}, got {value!r}")
    return value


def _uncertainty_kind(value: Any, tta: bool):
    """``value`` as an :class:`~workbench.inference.uncertainty.UncertaintyKind` (or None), checked against ``tta``."""
    if value is None:
        return None
    from workbench.inference.uncertainty import UncertaintyKind  # lazy: it imports the tiling code

    kind = UncertaintyKind.parse(value)
    if kind == UncertaintyKind.DISAGREEMENT and not tta:
        raise WorkbenchError("uncertainty 'disagreement' compares the 8 test-time-augmented views: add --tta "
                             "(or use 'entropy', which needs no extra forward pass)")
    return kind


@dataclass(frozen=True)
class PredictOptions:
    """How :func:`~workbench.inference.predict_volume` runs (validated on construction).

    Attributes:
        block_shape: block core (z, y, x), a whole number of output chunks; None: ``default_block_shape``.
        tile_shape: largest region given to the predictor at once (None: the whole read region, at most
            ~4 M voxels; for 2D predictors its z is the slice batch).
        tta: combine the 8 yx rotations/flips (mean logits; not for affinities).
        dtype: storage of the probabilities (:class:`StorageDtype`).
        scheduler: None/``"threads"`` (local threads), ``"processes"`` (a local Dask cluster),
            ``"tcp://host:port"`` (a dask.distributed scheduler; workers must share the disk) or a Client.
        scheduler_timeout: seconds to wait for a scheduler address to answer.
        workers: blocks in flight on local threads, or ``"auto"`` (two on a GPU, one with ``compile``; on a CPU
            the first block alone, measured, then one per core as far as memory allows, sharing its memory).
        torch_threads: torch intra-op threads per task (None: the cores shared among the local workers).
        compile: ``torch.compile`` a torch predictor's model and mirror-pad border blocks to one input shape.
        overwrite: replace an existing output (finished or interrupted).
        resume: continue an interrupted prediction (finished blocks are skipped).
        uncertainty: also write a per-voxel uncertainty map (``OUT.zarr/uncertainty``, same storage dtype):
            ``"entropy"`` (from each block's probabilities, no extra forward pass) or ``"disagreement"`` (of
            the 8 views, so only with ``tta``: the views are computed anyway); None (default): none.

    Raises:
        WorkbenchError: a value out of range (one line naming it).
    """

    block_shape: tuple[int, int, int] | None = None
    tile_shape: tuple[int, int, int] | None = None
    tta: bool = False
    dtype: StorageDtype = StorageDtype.UINT8
    scheduler: Any = None
    scheduler_timeout: float = 5.0
    workers: int | str = "auto"
    torch_threads: int | None = None
    compile: bool = False
    overwrite: bool = False
    resume: bool = False
    uncertainty: str | None = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("block_shape", _shape(self.block_shape, "block shape"))
        put("tile_shape", _shape(self.tile_shape, "tile shape"))
        put("dtype", StorageDtype.parse(self.dtype))
        put("workers", _positive_int(self.workers, "workers", allow=("auto",)))
        put("torch_threads", _positive_int(self.torch_threads, "torch threads", allow=(None,)))
        for name in ("tta", "compile", "overwrite", "resume"):
            put(name, bool(getattr(self, name)))
        try:
            timeout = float(self.scheduler_timeout)
        except (TypeError, ValueError):
            timeout = -1.0
        if not timeout > 0:
            raise WorkbenchError(f"scheduler timeout must be a positive number of seconds, got {self.scheduler_timeout!r}")
        put("scheduler_timeout", timeout)
        put("uncertainty", _uncertainty_kind(self.uncertainty, self.tta))
        if isinstance(self.scheduler, str) and not self.scheduler.strip():
            raise WorkbenchError("scheduler must be 'threads', 'processes' or a tcp://host:port address, got ''")

    @property
    def local(self) -> bool:
        """Blocks run on threads of this process (no Dask scheduler)."""
        return self.scheduler in LOCAL_SCHEDULERS
