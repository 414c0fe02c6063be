"""HDF5 datasets (``file.h5:/dataset``), read lazily with h5py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.arrays import LazyArray, refuse_huge
from workbench.io.axes import guess_axes, to_zyx
from workbench.io.volume import Volume

H5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5"}


class H5Array(LazyArray):
    """One HDF5 dataset, opened read-only on first access in each process."""

    def __init__(self, path: str, key: str, shape, dtype, chunks):
        self.path, self.key, self.source = path, key, f"{path}:{key}"
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.chunks = tuple(chunks) if chunks else None

    def _open(self):
        import h5py

        return h5py.File(self.path, "r")[self.key]

    def _read(self, key):
        return np.asarray(self._local(self._open)[key])


def _datasets(f) -> list[tuple[str, tuple[int, ...]]]:
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append(("/" + name, tuple(obj.shape)))

    f.visititems(visit)
    return found


def voxel_size_from_attrs(attrs) -> tuple[float, float, float] | None:
    """From ``resolution`` (nm, z y x) or ``element_size_um`` (µm, z y x) when present."""
    for name, scale in (("resolution", 1.0), ("element_size_um", 1e3)):
        if name in attrs:
            try:
                v = [float(x) * scale for x in np.ravel(attrs[name])]
            except (TypeError, ValueError):
                continue
            if len(v) == 2:
                v = [1.0, *v]
            if len(v) == 3 and all(x > 0 for x in v):
                return tuple(v)
    return None


def open_hdf5(path: Path, key: str | None, channel: int | None = None) -> Volume:
    """Open ``key`` in an HDF5 file; without a key, the only 3D dataset (or, with none, the only 2D+ one);
    otherwise the error lists the datasets.

    Raises:
        WorkbenchError: unreadable/truncated file, missing or ambiguous key.
    """
    import h5py

    src = str(path)
    try:
        f = h5py.File(src, "r")
    except OSError as err:
        raise WorkbenchError(f"not a readable HDF5 file (truncated or corrupt?): {err}", src) from err
    try:
        try:
            found = _datasets(f)
        except (OSError, RuntimeError, KeyError) as err:
            raise WorkbenchError(f"corrupt HDF5 file: {err}", src) from err
        listing = ", ".join(f"{k} {s}" for k, s in found) or "none"
        if key is None:
            three = [k for k, s in found if len(s) == 3] or [k for k, s in found if len(s) >= 2]
            if len(three) != 1:
                what = "no 3D dataset" if not three else "several 3D datasets"
                raise WorkbenchError(f"{what}; choose one as {path.name}:/KEY (datasets: {listing})", src)
            key = three[0]
        key = "/" + key.strip("/")
        try:
            ds = f[key]
        except (KeyError, OSError) as err:
            raise WorkbenchError(f"no dataset {key!r} (datasets: {listing})", src) from err
        if not isinstance(ds, h5py.Dataset):
            raise WorkbenchError(f"{key!r} is a group, not a dataset (datasets: {listing})", src)
        if ds.dtype.kind not in "biuf":
            raise WorkbenchError(f"dataset {key!r} has unsupported type {ds.dtype}", src)
        vs = voxel_size_from_attrs(ds.attrs) or voxel_size_from_attrs(f.attrs)
        refuse_huge(ds.chunks or (1,), ds.dtype.itemsize, "chunk", f"{src}:{key}")
        arr = H5Array(src, key, ds.shape, ds.dtype, ds.chunks)
        axes = "".join(str(a) for a in ds.attrs.get("axes", "")) if "axes" in ds.attrs else ""
    finally:
        f.close()
    axes = axes.upper() if len(axes) == len(arr.shape) and set(axes.upper()) <= set("TCZYXS") else guess_axes(arr.shape, f"{src}:{key}")
    view = to_zyx(arr, axes, channel, f"{src}:{key}")
    return Volume(view, vs or (1.0, 1.0, 1.0), name=key.strip("/").replace("/", "_") or path.stem,
                  source=f"{src}:{key}", attrs={"format": "hdf5", "voxel_size_known": vs is not None})
