"""Reading the raw and label arrays an entry points at, from the mirror or the download cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.datasets.registry import LabelSource, Source
from workbench.errors import WorkbenchError
from workbench.io.volume import Volume


def resolve_path(relpath: str, roots: Sequence[Path]) -> Path:
    """Find ``relpath`` under the first root that holds it; else a unique file or folder of that name
    anywhere below the roots (archives often add a top folder such as ``UroCell-master/``).

    Raises:
        WorkbenchError: nothing (or more than one candidate) matches.
    """
    for root in roots:
        candidate = Path(root) / relpath
        if candidate.exists():
            return candidate
    parts = Path(relpath).parts
    found: dict[Path, Path] = {}
    for root in roots:
        if Path(root).is_dir():
            for p in Path(root).rglob(parts[-1]):
                if p.parts[-len(parts) :] == parts:
                    found.setdefault(p.resolve(), p)
    matches = list(found.values())
    if len(matches) == 1:
        return matches[0]
    where = ", ".join(str(r) for r in roots)
    if matches:
        raise WorkbenchError(f"{relpath} is ambiguous: {len(matches)} matches under {where}")
    raise WorkbenchError(f"{relpath} not found under {where}")


def _open_one(path: Path, source: Source, voxel_size) -> Volume:
    """One file (or slice folder) as a Volume in z, y, x order."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _open_nifti(path, source, voxel_size)
    from workbench.io import open_volume

    src = f"{path}:/{source.key}" if source.key else str(path)
    vol = open_volume(src, voxel_size=voxel_size)
    if source.layout == "xyz":
        return Volume(vol.to_dask().transpose(2, 1, 0), voxel_size, vol.name, vol.source, vol.attrs)
    return vol


def _open_nifti(path: Path, source: Source, voxel_size) -> Volume:
    """A NIfTI volume (x, y, z on disk) as z, y, x, keeping its stored dtype."""
    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for broken files
        raise WorkbenchError(f"cannot read NIfTI file: {err}", path) from err
    if data.ndim != 3:
        raise WorkbenchError(f"expected a 3D NIfTI volume, got shape {data.shape}", path)
    if source.layout == "xyz":
        data = np.ascontiguousarray(data.transpose(2, 1, 0))
    return Volume(data, voxel_size, path.name, str(path))


def open_source(source: Source, roots: Sequence[Path], voxel_size, name: str = "") -> Volume:
    """The array ``source`` describes, as a lazy Volume (several paths are stacked along z).

    Raises:
        WorkbenchError: a file is missing or cannot be read, or stacked parts differ in (y, x) shape.
    """
    import dask.array as da

    parts = [_open_one(resolve_path(p, roots), source, voxel_size) for p in source.paths]
    if len(parts) == 1 and source.z_range is None:
        vol = parts[0]
        return Volume(vol.data, tuple(voxel_size), name or vol.name, vol.source, vol.attrs)
    yx = {p.shape[1:] for p in parts}
    if len(yx) != 1:
        raise WorkbenchError(f"{source.describe()}: parts differ in (y, x) shape: {sorted(yx)}")
    arr = da.concatenate([p.to_dask() for p in parts], axis=0) if len(parts) > 1 else parts[0].to_dask()
    if source.z_range is not None:
        z0, z1 = source.z_range
        if z1 > arr.shape[0]:
            raise WorkbenchError(f"{source.describe()}: has {arr.shape[0]} slices, expected at least {z1}")
        arr = arr[z0:z1]
    return Volume(arr, tuple(voxel_size), name, source.describe())


def open_label_source(label: LabelSource, roots: Sequence[Path], voxel_size) -> Volume:
    """A label volume with the entry's transform applied lazily, block by block."""
    import numpy as np

    vol = open_source(label.source, roots, voxel_size, name=label.name)
    if label.transform is None:
        return vol
    arr = vol.to_dask().map_blocks(label.transform, dtype=np.uint8)
    return Volume(arr, vol.voxel_size, label.name, vol.source)
