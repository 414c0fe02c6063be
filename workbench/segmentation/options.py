"""What :func:`~workbench.segmentation.segment_prediction` is asked to do: the method and its settings,
checked once, with one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workbench.choices import Choice
from workbench.errors import WorkbenchError


class SegmentMethod(Choice, what="segmentation method"):
    """How instances are made from a prediction.

    One line each for learners in :data:`METHOD_HELP` (:meth:`describe`).
    """

    CC = "cc"
    WATERSHED = "watershed"
    AFFINITY = "affinity"
    MUTEX_WATERSHED = "mutex-watershed"
    MULTICUT = "multicut"
    GASP = "gasp"

    def describe(self) -> str:
        """One line for learners: what the method does and when to use it."""
        return METHOD_HELP[self]


#: One line per method for learners (the app's Results step and ``workbench segment --help`` show them).
METHOD_HELP: dict[SegmentMethod, str] = {
    SegmentMethod.CC: "connected components of one class above the threshold: fast, for objects that never "
                      "touch (e.g. mitochondria)",
    SegmentMethod.WATERSHED: "flood the boundary channel from interior seeds (boundary below the threshold): "
                             "for touching cells with a boundary class",
    SegmentMethod.AFFINITY: "greedy merging of fragments while their mean affinity is above the threshold: the "
                            "workbench's own, one leaky boundary can merge two objects",
    SegmentMethod.MUTEX_WATERSHED: "affinities with long-range offsets: merge by the strongest attraction unless a "
                                   "repulsive long-range edge forbids it; no threshold (Wolf et al. 2018)",
    SegmentMethod.MULTICUT: "fragments joined by the partition of their region graph with the lowest total cost "
                            "(cut where the mean boundary is above the threshold); boundaries or affinities",
    SegmentMethod.GASP: "fragments merged in order of their average signed attraction (mean boundary below the "
                        "threshold attracts, above repels; Bailoni et al. 2022); boundaries or affinities",
}

def default_method(target: str | None) -> SegmentMethod:
    """The method ``workbench segment`` uses when none is given, from the prediction's target.

    Affinities and boundaries: GASP (on the ISBI 2012 benchmark it kept every section within a factor of two
    of the true object count, where greedy merging and a plain watershed put sections into a few objects);
    class probabilities (semantic): connected components of the chosen class.
    """
    return SegmentMethod.GASP if str(target or "") in ("affinities", "boundaries") else SegmentMethod.CC


#: The method names, in order (``SegmentMethod.values()``).
METHODS = tuple(SegmentMethod.values())
#: The methods that solve with bioimage-cpp (mutex watershed, multicut, GASP), blockwise with stitching.
GRAPH_METHODS = (SegmentMethod.MUTEX_WATERSHED, SegmentMethod.MULTICUT, SegmentMethod.GASP)


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
            ``affinity``: merge while the mean affinity ``> threshold``; ``multicut``/``gasp``: fragments join
            where the mean boundary between them is below it (the boundary bias); ``mutex-watershed``: unused.
        min_size: objects with fewer voxels are removed (graph methods: merged into the touching object of the
            highest mean affinity first, as python-elf's size filter; removed only when they touch none).
        block_shape: block (z, y, x); None: the prediction's chunks.
        halo: context (z, y, x) read around each block (``watershed``, ``affinity`` and the graph methods).
        per_section: objects never connect across z (``cc``, ``watershed``, ``multicut``, ``gasp``; a 2D
            affinity model has no z offsets, so its sections never connect anyway).
        merge_threshold: ``watershed``: then merge touching objects while the mean boundary along their
            contact is below it (in [0, 1]).
        overwrite: replace an existing output.
        scheduler: where the per-block solves of the graph methods run: None (threads of this process),
            ``"processes"`` (a local Dask cluster), a Dask scheduler address or a ``distributed.Client``;
            the result is the same on each.

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
    scheduler: object = None

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
        if self.per_section and method in (SegmentMethod.AFFINITY, SegmentMethod.MUTEX_WATERSHED):
            raise WorkbenchError(
                f"per-section segmentation is not for {str(method)!r}: affinities carry their own z edges")
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
