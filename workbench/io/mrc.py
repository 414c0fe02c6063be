"""MRC files (cryo-EM / tomography), memory-mapped with mrcfile; voxel size from the header (Å -> nm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.arrays import LazyArray
from workbench.io.axes import to_zyx
from workbench.io.volume import Volume

MRC_SUFFIXES = {".mrc", ".mrcs", ".rec", ".st", ".map", ".ali"}


class MrcArray(LazyArray):
    """The data block of an MRC file through ``mrcfile.mmap`` (reopened per process)."""

    def __init__(self, path: str, shape, dtype):
        self.path, self.source = path, path
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def _open(self):
        return _mmap(self.path)

    def _read(self, key):
        data = self._local(self._open).data
        if data is None:
            raise WorkbenchError("MRC file has no readable data block", self.path)
        return np.array(data[key], dtype=self.dtype)


def _mmap(path: str):
    """``mrcfile.mmap`` in permissive mode, its warnings about a damaged header silenced (the caller refuses
    a file without a data block in one line instead)."""
    import warnings

    import mrcfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mrcfile.mmap(path, mode="r", permissive=True)


def open_mrc(path: Path, channel: int | None = None) -> Volume:
    """Open an MRC volume (or image) lazily.

    Raises:
        WorkbenchError: invalid header or a data block shorter than the header says.
    """
    src = str(path)
    try:
        with _mmap(src) as mrc:
            if mrc.data is None:
                raise WorkbenchError("not a valid MRC file (bad header or truncated data)", src)
            shape, dtype = tuple(mrc.data.shape), mrc.data.dtype.newbyteorder("=")
            vox = mrc.voxel_size
            vs_a = (float(vox.z), float(vox.y), float(vox.x))
    except WorkbenchError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise WorkbenchError(f"not a readable MRC file: {err}", src) from err
    known = all(v > 0 for v in vs_a)
    vs = tuple(v / 10.0 for v in vs_a) if known else (1.0, 1.0, 1.0)
    axes = {2: "YX", 3: "ZYX", 4: "CZYX"}.get(len(shape))
    if axes is None:
        raise WorkbenchError(f"unsupported MRC data shape {shape}", src)
    view = to_zyx(MrcArray(src, shape, dtype), axes, channel, src)
    return Volume(view, vs, name=path.stem, source=src, attrs={"format": "mrc", "voxel_size_known": known})
