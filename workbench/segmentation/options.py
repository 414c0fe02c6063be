"""What :func:`~workbench.segmentation.segment_prediction` is asked to do: the method and its settings,
checked once, with one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workbench.choices import Choice
from workbench.errors import WorkbenchError


class SegmentMethod(Choice, what="segmentation method"):
    """How instances are made from a prediction.

    ``cc``: connected components of ``channel > threshold``; ``watershed``: flood the boundary channel from
    interior seeds (``< threshold``); ``affinity``: agglomerate nearest-neighbour affinities.
    """

    CC = "cc"
    WATERSHED = "watershed"
    AFFINITY = "affinity"


#: The method names, in order (``SegmentMethod.values()``).
METHODS = tuple(SegmentMethod.values())


def _triple(value: Sequence[int], what: str, minimum: int) -> tuple[int, int, int]:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise WorkbenchError(f"the {what} must be three integers (z, y, x), got {value!r}") from None
    if len(out) != 3 or any(v < minimum for v in out):
        raise WorkbenchError(f"the {what} must be three integers >= {minimum} (z, y, x), got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class SegmentOptions:
    """Settings of :func:`~workbench.segmentation.segment_prediction`, validated when created.

    Attributes:
        method: a :class:`SegmentMethod` (or its name).
        channel: the prediction channel (``affinity`` without named affinity channels: ``channel .. +2``).
        threshold: in [0, 1]; ``cc``: foreground ``> threshold``; ``watershed``: seeds ``< threshold``;
            ``affinity``: merge while the mean affinity ``> threshold``.
        min_size: objects with fewer voxels are removed.
        block_shape: block (z, y, x); None: the prediction's chunks.
        halo: context (z, y, x) flooded around each block (``watershed``, ``affinity``).
        per_section: objects never connect across z (``cc``, ``watershed``).
        merge_threshold: ``watershed``: then merge touching objects while the mean boundary along their
            contact is below it (in [0, 1]).
        overwrite: replace an existing output.

    Raises:
        WorkbenchError: an invalid value or combination (one line).
    """

    method: SegmentMethod = SegmentMethod.CC
    channel: int = 0
    threshold: float = 0.5
    min_size: int = 0
    block_shape: tuple[int, int, int] | None = None
    halo: tuple[int, int, int] = (8, 32, 32)
    per_section: bool = False
    merge_threshold: float | None = None
    overwrite: bool = False

    def __post_init__(self):
        method = SegmentMethod.parse(self.method)
        set_ = object.__setattr__
        set_(self, "method", method)
        set_(self, "channel", int(self.channel))
        set_(self, "threshold", float(self.threshold))
        set_(self, "min_size", int(self.min_size))
        set_(self, "per_section", bool(self.per_section))
        set_(self, "overwrite", bool(self.overwrite))
        if self.block_shape is not None:
            set_(self, "block_shape", _triple(self.block_shape, "block shape", 1))
        set_(self, "halo", _triple(self.halo, "halo", 0))
        if self.channel < 0:
            raise WorkbenchError(f"the channel must be >= 0, got {self.channel}")
        if not 0.0 <= self.threshold <= 1.0:
            raise WorkbenchError(f"the threshold must be in [0, 1], got {self.threshold}")
        if self.min_size < 0:
            raise WorkbenchError(f"the minimum size must be >= 0, got {self.min_size}")
        if self.per_section and method == SegmentMethod.AFFINITY:
            raise WorkbenchError(
                "per-section segmentation is for cc and watershed; affinities carry their own z edges")
        if self.merge_threshold is not None:
            if method != SegmentMethod.WATERSHED:
                raise WorkbenchError(f"a merge threshold is for the watershed method, not {str(method)!r}")
            set_(self, "merge_threshold", float(self.merge_threshold))
            if not 0.0 <= self.merge_threshold <= 1.0:
                raise WorkbenchError(f"the merge threshold must be in [0, 1], got {self.merge_threshold}")

    def info(self) -> dict:
        """The settings recorded in the output's ``workbench`` attribute (plain JSON values)."""
        return {"method": str(self.method), "channel": self.channel, "threshold": self.threshold,
                "min_size": self.min_size, "per_section": self.per_section,
                "merge_threshold": self.merge_threshold}
