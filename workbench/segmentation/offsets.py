"""The affinity offsets of a stored prediction: read from its metadata, checked against its channels.

Affinity convention (``workbench.training`` targets, bioimage-cpp and python-elf alike): channel ``c`` with
offset ``o = (dz, dy, dx)`` holds, at voxel ``v``, the probability that ``v`` and ``v + o`` belong to one
object. Offsets of length one along one axis are the nearest-neighbour (attractive) edges; the others are
long-range edges, used as repulsive (mutex) edges by the mutex watershed.

A prediction made by ``workbench predict`` records the offsets its model was trained with in its
``workbench`` attribute (``offsets``); older predictions are read from their channel names
(``affinity (dz, dy, dx)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.training.targets import offsets_of_channels

__all__ = ["is_nearest", "prediction_offsets", "split_offsets"]


def is_nearest(offset: Sequence[int]) -> bool:
    """True for a nearest-neighbour offset (one step along one axis)."""
    return sorted(abs(int(v)) for v in offset) == [0, 0, 1]


def split_offsets(offsets: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """(channels of the nearest-neighbour offsets, channels of the long-range ones), each in channel order."""
    near = [c for c, o in enumerate(offsets) if is_nearest(o)]
    far = [c for c, o in enumerate(offsets) if not is_nearest(o)]
    return near, far


def prediction_offsets(info: dict, n_channels: int, where: str | Path | None = None,
                       method: str = "mutex-watershed") -> list[list[int]]:
    """The affinity offsets of a prediction (its ``workbench`` attribute ``info``), one per channel.

    Args:
        info: the prediction's ``workbench`` attribute (``offsets``, ``channel_names``, ``target``).
        n_channels: the prediction's channel count.
        where: the path errors name.
        method: the method asking (named in errors).

    Raises:
        WorkbenchError: not an affinity prediction (e.g. boundaries), no offsets recorded, offsets that do
            not match the channels, or offsets that are not (dz, dy, dx) triples.
    """
    target = str(info.get("target") or "")
    names = list(info.get("channel_names") or [])
    offsets = info.get("offsets") or offsets_of_channels(names)
    if not offsets:
        if target and target != "affinities":
            hint = " (use --method multicut or gasp)" if target == "boundaries" else ""
            raise WorkbenchError(f"{method} needs an affinity prediction, this one predicts {target}{hint}", where)
        raise WorkbenchError(f"{method} needs affinity offsets, none are recorded in the prediction's metadata",
                             where)
    try:
        offsets = [[int(v) for v in o] for o in offsets]
    except (TypeError, ValueError):
        raise WorkbenchError(f"the affinity offsets {offsets!r} are not (dz, dy, dx) triples", where) from None
    if any(len(o) != 3 for o in offsets):
        raise WorkbenchError(f"the affinity offsets {offsets!r} are not (dz, dy, dx) triples", where)
    if len(offsets) != n_channels:
        raise WorkbenchError(f"{len(offsets)} affinity offsets recorded for a prediction of {n_channels} channels",
                             where)
    return offsets
