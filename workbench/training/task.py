"""``Task``: a training target paired with its output channels, activation and masked loss.

The pairing lives here, above :mod:`workbench.training.targets` (how targets are made from label
patches) and :mod:`workbench.training.losses` (masked losses), so neither of those imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.training.losses import masked_bce_dice, masked_ce_dice
from workbench.training.targets import affinity_target, boundary_target, semantic_target


@dataclass
class Task:
    """A target kind with its output channels and activation.

    Attributes:
        kind: ``semantic``, ``boundaries`` or ``affinities``.
        channel_names: one name per output channel.
        offsets: affinity offsets (z, y, x), only for ``affinities``.
    """

    kind: str
    channel_names: list[str]
    offsets: list[list[int]] | None = None

    @property
    def out_channels(self) -> int:
        return len(self.channel_names)

    @property
    def activation(self) -> str:
        """``softmax`` over classes, or ``sigmoid`` per affinity channel."""
        return "sigmoid" if self.kind == "affinities" else "softmax"

    def make(self, labels):
        """(target, mask) for a label batch (B, Z, Y, X)."""
        if self.kind == "semantic":
            return semantic_target(labels)
        if self.kind == "boundaries":
            return boundary_target(labels)
        return affinity_target(labels, self.offsets)

    def loss(self, logits, target, mask):
        """The masked loss of this target (unlabelled voxels contribute nothing)."""
        if self.activation == "softmax":
            return masked_ce_dice(logits, target)
        return masked_bce_dice(logits, target, mask)

    @staticmethod
    def for_config(kind: str, class_names: list[str], dims: int, offsets: list[list[int]]) -> Task:
        if kind == "semantic":
            return Task("semantic", list(class_names))
        if kind == "boundaries":
            return Task("boundaries", ["interior", "boundary"])
        if dims == 2:
            offsets = [o for o in offsets if o[0] == 0]
        names = [f"affinity {tuple(o)}" for o in offsets]
        return Task("affinities", names, [list(o) for o in offsets])
