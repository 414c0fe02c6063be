"""N5 datasets (``store.n5/dataset``), read lazily with tensorstore's ``n5`` driver.

N5 lists dimensions fastest-first (x, y, z); tensorstore keeps that order, so the array is
transposed to z, y, x here (as z5py and zarr's N5 store do).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.arrays import LazyArray, refuse_huge
from workbench.io.axes import guess_axes, to_zyx
from workbench.io.volume import Volume

_UNITS = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "µm": 1e3, "micrometer": 1e3, "mm": 1e6, "a": 0.1, "angstrom": 0.1}


class N5Array(LazyArray):
    """An N5 dataset through tensorstore, presented in C order (reversed N5 dimension order)."""

    def __init__(self, path: str, shape, dtype, chunks):
        self.path, self.source = path, path
        self.shape, self.dtype, self.chunks = tuple(shape), np.dtype(dtype), tuple(chunks)

    def _open(self):
        import tensorstore as ts

        spec = {"driver": "n5", "kvstore": {"driver": "file", "path": self.path}, "open": True}
        return ts.open(spec, read=True, context=ts.Context({"cache_pool": {"total_bytes_limit": 0}})).result().T

    def _read(self, key):
        return np.asarray(self._local(self._open)[key].read().result())


def _attributes(path: Path) -> dict:
    f = path / "attributes.json"
    if not f.is_file():
        return {}
    try:
        attrs = json.loads(f.read_text())
    except RecursionError:
        raise WorkbenchError("unreadable attributes.json: nested too deeply", f) from None
    except (OSError, ValueError) as err:
        raise WorkbenchError(f"unreadable attributes.json: {err}", f) from None
    if not isinstance(attrs, dict):
        raise WorkbenchError("unreadable attributes.json: not a JSON object", f)
    return attrs


def _datasets(root: Path) -> list[str]:
    return sorted(
        str(p.parent.relative_to(root)) for p in root.rglob("attributes.json") if "dimensions" in _attributes(p.parent)
    )


def _voxel_size(attrs: dict) -> tuple[float, float, float] | None:
    """From ``pixelResolution`` ({dimensions, unit}) or ``resolution`` (nm), both listed x, y, z."""
    pr = attrs.get("pixelResolution")
    if isinstance(pr, dict) and pr.get("dimensions"):
        scale = _UNITS.get(str(pr.get("unit", "nm")).lower(), 1.0)
        v = [float(d) * scale for d in pr["dimensions"]][::-1]
    elif attrs.get("resolution"):
        v = [float(d) for d in attrs["resolution"]][::-1]
    else:
        return None
    if len(v) == 2:
        v = [1.0, *v]
    return tuple(v) if len(v) == 3 and all(x > 0 for x in v) else None


#: A volume may be cut into at most this many blocks, or one block per this many voxels if that is more: no real
#: layout uses more, and reading even a small volume through millions of tiny blocks takes minutes.
MAX_BLOCKS, MIN_VOXELS_PER_BLOCK = 65536, 4096


def refuse_tiny_blocks(chunks, shape, source: str) -> None:
    """Raise when the blocks are far too small for the volume (a damaged header).

    Raises:
        WorkbenchError: an empty block size, or more blocks than :data:`MAX_BLOCKS` and than one per
            :data:`MIN_VOXELS_PER_BLOCK` voxels.
    """
    if min(chunks, default=0) < 1:
        raise WorkbenchError(f"N5 block size {list(chunks)} is not a list of positive sizes (damaged header?)", source)
    n_blocks = math.prod(-(-s // c) for s, c in zip(shape, chunks))
    if n_blocks > max(MAX_BLOCKS, math.prod(shape) // MIN_VOXELS_PER_BLOCK):
        raise WorkbenchError(f"N5 blocks of {' x '.join(map(str, chunks))} cut a volume of "
                             f"{' x '.join(map(str, shape))} into {n_blocks} pieces (damaged header?)", source)


def open_n5(root: Path, inner: str = "", channel: int | None = None) -> Volume:
    """Open an N5 dataset; a group path opens its only 3D dataset (else the error lists them).

    Raises:
        WorkbenchError: missing dataset, ambiguous group, unreadable metadata.
    """
    path = root / inner.strip("/") if inner.strip("/") else root
    src = str(path)
    if not path.is_dir():
        raise WorkbenchError("no N5 dataset or group here", src)
    attrs = _attributes(path)
    if "dimensions" not in attrs:
        found = _datasets(path)
        three = [d for d in found if len(_attributes(path / d)["dimensions"]) == 3]
        if len(three) != 1:
            raise WorkbenchError(f"N5 group holds no single 3D dataset; choose one by path (datasets: {', '.join(found) or 'none'})", src)
        path = path / three[0]
        src = str(path)
        attrs = _attributes(path)
    shape = tuple(int(d) for d in attrs["dimensions"])[::-1]
    chunks = tuple(int(b) for b in attrs.get("blockSize", shape[::-1]))[::-1]
    try:
        dtype = np.dtype(attrs["dataType"])
    except (KeyError, TypeError) as err:
        raise WorkbenchError(f"N5 dataset has no valid dataType: {attrs.get('dataType')}", src) from err
    refuse_huge(chunks, dtype.itemsize, "block", src)
    refuse_tiny_blocks(chunks, shape, src)
    arr = N5Array(src, shape, dtype, chunks)
    vs = _voxel_size(attrs)
    view = to_zyx(arr, guess_axes(shape, src), channel, src)
    return Volume(view, vs or (1.0, 1.0, 1.0), name=path.name, source=src,
                  attrs={"format": "n5", "voxel_size_known": vs is not None})
