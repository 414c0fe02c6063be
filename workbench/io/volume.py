"""The ``Volume``: a lazy z, y, x array with its voxel size, name and source."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

#: Reading more than this many bytes at once through :meth:`Volume.read` needs ``allow_large=True``.
READ_LIMIT_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class Volume:
    """A 3D (z, y, x) image or label volume, read lazily.

    Attributes:
        data: any array-like with ``shape``, ``dtype`` and numpy-style slicing (numpy array, memmap,
            zarr array, h5py dataset, dask array, ...). Always 3D: 2D images have one z slice.
        voxel_size: (z, y, x) in nanometres.
        name: a short display name.
        source: where it came from (path, ``file.h5:/key``, catalog name ...).
        attrs: extra metadata read from the file (free-form, JSON-serialisable).
    """

    data: Any
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    name: str = ""
    source: str = ""
    attrs: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if len(self.data.shape) != 3:
            raise WorkbenchError(f"expected a 3D (z, y, x) volume, got shape {tuple(self.data.shape)}", self.source or None)
        vs = tuple(float(v) for v in self.voxel_size)
        if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
            raise WorkbenchError(f"voxel size must be three positive numbers (z, y, x nm), got {self.voxel_size}", self.source or None)
        object.__setattr__(self, "voxel_size", vs)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def is_2d(self) -> bool:
        """True for a single z slice."""
        return self.shape[0] == 1

    def __getitem__(self, key) -> np.ndarray:
        """Read a region (numpy-style slicing) into memory."""
        return np.asarray(self.data[key])

    def read(self, allow_large: bool = False) -> np.ndarray:
        """Read the whole volume into memory.

        Raises:
            WorkbenchError: the volume is larger than :data:`READ_LIMIT_BYTES` and ``allow_large`` is False.
        """
        if self.nbytes > READ_LIMIT_BYTES and not allow_large:
            raise WorkbenchError(
                f"volume is {self.nbytes / 1e9:.1f} GB, too large to read at once; process it blockwise",
                self.source or None,
            )
        return np.asarray(self.data[...])

    def to_dask(self, chunks: Any = None):
        """A dask array over the data (chunks default to the storage chunks, else ~64 MB blocks)."""
        import dask.array as da

        if isinstance(self.data, da.Array):
            return self.data if chunks is None else self.data.rechunk(chunks)
        if chunks is None:
            chunks = getattr(self.data, "chunks", None)
            if not (isinstance(chunks, tuple) and len(chunks) == 3 and all(isinstance(c, int) for c in chunks)):
                chunks = "auto"
        return da.from_array(self.data, chunks=chunks, asarray=True, lock=False, name=False)

    def with_voxel_size(self, voxel_size) -> Volume:
        """A copy with another voxel size."""
        return replace(self, voxel_size=tuple(voxel_size))

    def __repr__(self) -> str:
        vs = " x ".join(f"{v:g}" for v in self.voxel_size)
        return f"Volume({self.name or self.source!r}, shape={self.shape}, dtype={self.dtype}, voxel_size=({vs}) nm)"
