"""Which blocks a prediction consists of, what each reads (core + halo on the model's grid), which are left.

A block's *core* is what it writes: one or more whole output chunks (:func:`chunk_shape`). It *reads* the
core grown by the predictor's halo, clipped at the volume border (never padded, so a border block sees what
a whole-volume prediction sees) and its start moved down onto the predictor's down-sampling grid
(``divisor``). With ``fixed`` (compiled models) every block instead gives the predictor one input shape:
``block_shape + 2 * halo``, mirror-padded where the read is clipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from workbench.geometry import Box
from workbench.inference.tiling import effective_divisor, effective_halo
from workbench.models.predictor import Predictor, as_predictor

#: Largest edge of an output chunk (what viewers fetch); blocks are whole multiples of it.
CHUNK_MAX = 1024


def default_block_shape(predictor: Predictor, shape: Sequence[int]) -> tuple[int, int, int]:
    """Block core: (8, 2048, 2048) for 2D predictors, (64, 256, 256) for 3D ones (clipped to ``shape``).

    2D blocks are large in yx because every block pays its halo: at 2048^2 with a 48-voxel halo the
    extra work is 9.6 % (1024^2 blocks: 19.6 %); the activations of one 2144^2 slice need ~2.5 GB.
    """
    base = (8, 2048, 2048) if int(as_predictor(predictor).spatial_dims) == 2 else (64, 256, 256)
    return tuple(min(b, int(s)) for b, s in zip(base, shape))  # type: ignore[return-value]


def chunk_shape(block: Sequence[int]) -> tuple[int, ...]:
    """Output chunks for a block shape: the block itself, with yx edges above ``CHUNK_MAX`` cut in
    ``CHUNK_MAX`` pieces when they divide evenly (so a block always writes whole chunks of its own)."""
    out = [int(block[0])]
    for b in block[1:]:
        b = int(b)
        out.append(CHUNK_MAX if b > CHUNK_MAX and b % CHUNK_MAX == 0 else b)
    return tuple(out)


@dataclass(frozen=True)
class PlannedBlock:
    """One block of a plan (small and picklable: what a worker task gets).

    Attributes:
        index: grid index (z, y, x) of the block (names its done-marker).
        core: the voxels it writes.
        read: the voxels it reads from the raw volume.
        input: the region the predictor sees: ``read``, or ``read`` mirror-padded to one fixed shape.
    """

    index: tuple[int, ...]
    core: Box
    read: Box
    input: Box

    @property
    def padding(self) -> list[tuple[int, int]]:
        """(before, after) voxels of padding per axis that turn the ``read`` data into ``input``."""
        return [(r0 - i0, i1 - r1) for r0, i0, i1, r1 in zip(self.read.start, self.input.start, self.input.stop,
                                                           self.read.stop)]


def plan_regions(core: Box, shape: Sequence[int], halo: Sequence[int], divisor: Sequence[int],
                 fixed_shape: Sequence[int] | None = None) -> tuple[Box, Box]:
    """(read, input) regions of one block core (see the module docstring)."""
    read = core.grow(tuple(halo)).intersect(Box.from_shape(shape))
    if fixed_shape is None:  # start on the down-sampling grid of the whole volume (the same pooling windows)
        start = tuple(a // d * d for a, d in zip(read.start, divisor))
        read = Box(start, tuple(b - a for a, b in zip(start, read.stop)))
        return read, read
    nominal = Box(tuple(o - h for o, h in zip(core.offset, halo)),
                  tuple(int(b) + 2 * h for b, h in zip(fixed_shape, halo)))
    return read, nominal


@dataclass(frozen=True)
class BlockPlan:
    """The block grid of one prediction.

    Attributes:
        shape: the raw volume (z, y, x). block_shape: block core (z, y, x), clipped to ``shape``.
        halo, divisor: the predictor's (:func:`effective_halo`, :func:`effective_divisor`).
        fixed: give the predictor one input shape (mirror-padded border blocks).
    """

    shape: tuple[int, int, int]
    block_shape: tuple[int, int, int]
    halo: tuple[int, int, int]
    divisor: tuple[int, int, int]
    fixed: bool = False

    @property
    def n_blocks(self) -> int:
        n = 1
        for s, b in zip(self.shape, self.block_shape):
            n *= -(-s // b)
        return n

    @property
    def block_voxels(self) -> int:
        """Voxels of a full block core."""
        z, y, x = self.block_shape
        return z * y * x

    def block(self, index: Sequence[int], core: Box) -> PlannedBlock:
        """The :class:`PlannedBlock` of one core."""
        read, inp = plan_regions(core, self.shape, self.halo, self.divisor, self.block_shape if self.fixed else None)
        return PlannedBlock(tuple(int(i) for i in index), core, read, inp)

    def blocks(self) -> list[PlannedBlock]:
        """Every block, in grid order."""
        return [self.block(i, core) for i, core in Box.from_shape(self.shape).blocks(self.block_shape)]

    def todo(self, done: Iterable[Sequence[int]] = ()) -> list[PlannedBlock]:
        """The blocks whose grid index is not in ``done`` (the finished blocks of a resumed run)."""
        finished = {tuple(int(i) for i in d) for d in done}
        return [b for b in self.blocks() if b.index not in finished]


def plan_blocks(predictor: Predictor, shape: Sequence[int], block_shape: Sequence[int] | None = None,
                fixed: bool = False) -> BlockPlan:
    """The :class:`BlockPlan` of ``predictor`` over a volume of ``shape``.

    Args:
        block_shape: block core (z, y, x); default :func:`default_block_shape`; clipped to ``shape``.
        fixed: one input shape for every block (what compiled models want).
    """
    predictor = as_predictor(predictor)
    shape = tuple(int(s) for s in shape)
    block = tuple(int(b) for b in (block_shape or default_block_shape(predictor, shape)))
    block = tuple(min(b, s) for b, s in zip(block, shape))
    return BlockPlan(shape, block, effective_halo(predictor), effective_divisor(predictor), bool(fixed))  # type: ignore[arg-type]
