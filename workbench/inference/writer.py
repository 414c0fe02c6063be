"""Writing one prediction run: ``OUT.zarr.partial`` with a done-marker per block, renamed when complete.

:class:`PredictionWriter` decides, once, what an existing output means (refuse, replace, resume or nothing
left to do) and finishes the run; :class:`BlockStore` is the small picklable part that tasks (threads or
Dask workers) write their blocks through. The store format itself is :mod:`workbench.inference.output`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.inference import output
from workbench.inference.output import StoreLayout


@dataclass(frozen=True)
class BlockStore:
    """Where blocks are written: a prediction store and its storage dtype (picklable)."""

    path: str
    dtype: str

    def is_done(self, index: Sequence[int]) -> bool:
        """The block's done-marker exists."""
        return output.marker_path(self.path, index).exists()

    def write(self, index: Sequence[int], core: Box, probs: np.ndarray, uncertainty: np.ndarray | None = None) -> None:
        """Write one block's core (float probabilities, c z y x; its z y x uncertainty), then its done-marker."""
        output.write_block(self.path, index, core.slices, probs, self.dtype, uncertainty)

    def done_blocks(self) -> set[tuple[int, ...]]:
        """Grid indices of the blocks already written."""
        return output.done_blocks(self.path)


def _stored_shape(path: Path) -> tuple[int, ...]:
    import zarr  # lazy: a heavy import

    return tuple(zarr.open_array(str(path / "0"), mode="r").shape)


def _check_resumable(part: Path, out: Path, layout: StoreLayout) -> None:
    """An interrupted store may be continued only by the same model, TTA, uncertainty, shape and blocks."""
    old, info = output.read_info(part), layout.info
    if old.get("model") != info["model"] or old.get("tta") != info["tta"]:
        raise WorkbenchError(
            f"cannot resume: the interrupted prediction used model {old.get('model')!r} "
            f"(tta {old.get('tta')}), this one {info['model']!r} (tta {info['tta']})", out)
    if old.get("uncertainty") != info.get("uncertainty"):
        raise WorkbenchError(
            f"cannot resume: the interrupted prediction used uncertainty {old.get('uncertainty') or 'none'}, "
            f"this one {info.get('uncertainty') or 'none'}", out)
    old_precision, precision = old.get("precision", "fp32"), info.get("precision", "fp32")
    if old_precision != precision:
        raise WorkbenchError(f"cannot resume: the interrupted prediction ran in {old_precision}, this one in "
                             f"{precision}; pass --precision {old_precision}", out)
    arr_shape = _stored_shape(part)
    if arr_shape != tuple(layout.shape) or old.get("block_shape") != info["block_shape"]:
        raise WorkbenchError(
            f"cannot resume: the interrupted prediction has shape {arr_shape} and blocks "
            f"{old.get('block_shape')}, this one {tuple(layout.shape)} and {info['block_shape']}", out)


@dataclass
class PredictionWriter:
    """One run's output: ``out`` (final), ``store`` (the ``.partial`` being written), ``complete``.

    ``complete`` is already True when a resumed output was finished before: nothing is left to do.
    """

    out: Path
    store: BlockStore
    complete: bool = False

    @classmethod
    def open(cls, out: str | Path, layout: StoreLayout, overwrite: bool = False,
             resume: bool = False) -> PredictionWriter:
        """Prepare ``out``: create ``out.partial``, keep it (``resume``) or replace it (``overwrite``).

        Raises:
            WorkbenchError: output exists (without overwrite), an interrupted one exists (without resume or
                overwrite) or differs from this run.
        """
        out = Path(out)
        part = output.partial_path(out)
        store = BlockStore(str(part), str(layout.dtype))
        if out.exists() and not overwrite:
            if resume and not part.exists() and output.read_info(out).get("complete"):
                return cls(out, store, complete=True)
            raise WorkbenchError("output exists; pass --overwrite to replace it", out)
        if part.exists():
            if overwrite:
                shutil.rmtree(part)
            elif not resume:
                raise WorkbenchError(
                    "an interrupted prediction exists here; pass --resume to continue or --overwrite to restart",
                    out)
            else:
                _check_resumable(part, out, layout)
        if not part.exists():
            output.create_store(part, layout)
        return cls(out, store)

    @property
    def partial(self) -> Path:
        return Path(self.store.path)

    def done_blocks(self) -> set[tuple[int, ...]]:
        """Grid indices of the blocks written so far."""
        return self.store.done_blocks()

    def finish(self) -> Path:
        """Mark complete, drop the markers and rename the partial store to ``out``; returns ``out``."""
        output.finish_store(self.partial, self.out)
        self.complete = True
        return self.out
