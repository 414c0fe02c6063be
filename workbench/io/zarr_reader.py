"""Zarr v2/v3 arrays and groups, and OME-Zarr (NGFF 0.4 and 0.5) images and labels, at any scale.

``x.zarr`` opens scale 0 of the first multiscale image; ``x.zarr/1`` or ``x.zarr/labels/cells``
open a scale or a label image by path; a plain group with a single 3D array opens that array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.io.arrays import Guarded, refuse_huge
from workbench.io.axes import guess_axes, to_zyx
from workbench.io.volume import Volume

UNIT_NM = {
    "angstrom": 0.1, "nanometer": 1.0, "micrometer": 1e3, "micron": 1e3, "millimeter": 1e6, "centimeter": 1e7,
    "meter": 1e9, "picometer": 1e-3, "nm": 1.0, "um": 1e3, "µm": 1e3, "mm": 1e6,
}


def multiscales_of(attrs: dict) -> list | None:
    """The NGFF ``multiscales`` list of a group's attributes (0.4: top level, 0.5: under ``ome``)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome["multiscales"]
    return attrs.get("multiscales") or None


def _scale(transforms: list | None) -> list[float] | None:
    """The ``scale`` of a list of NGFF transforms; None when absent or malformed (not numbers, not finite)."""
    import math

    for t in transforms if isinstance(transforms, list) else []:
        if isinstance(t, dict) and t.get("type") == "scale":
            try:
                scale = [float(s) for s in t["scale"]]
            except (KeyError, TypeError, ValueError, OverflowError):
                return None
            return scale if all(math.isfinite(v) and v > 0 for v in scale) else None
    return None


def ngff_axes_letters(axes: list) -> str:
    """NGFF axes (dicts or, before 0.4, names) as letters (``z`` -> ``Z``, channel -> ``C``)."""
    letters = []
    for a in axes:
        name = a.get("name", "") if isinstance(a, dict) else str(a)
        kind = a.get("type", "") if isinstance(a, dict) else ""
        letters.append("C" if kind == "channel" or name.lower() == "c" else name.upper()[:1] or "?")
    return "".join(letters)


def ngff_voxel_size(ms: dict, dataset: dict, ndim: int) -> tuple[float, float, float] | None:
    """(z, y, x) nm from a multiscale's axes and the dataset's (and global) scale transforms."""
    axes = ms.get("axes") or ["t", "c", "z", "y", "x"][-ndim:]
    scale = _scale(dataset.get("coordinateTransformations"))
    if scale is None:
        return None
    glob = _scale(ms.get("coordinateTransformations"))
    if glob and len(glob) == len(scale):
        scale = [a * b for a, b in zip(scale, glob)]
    out = {}
    for a, s in zip(axes, scale):
        name = (a.get("name", "") if isinstance(a, dict) else str(a)).lower()
        unit = (a.get("unit") if isinstance(a, dict) else None) or "nanometer"
        if name in ("z", "y", "x"):
            out[name] = s * UNIT_NM.get(str(unit).lower(), 1.0)
    if "y" not in out or "x" not in out:
        return None
    return (out.get("z", 1.0), out["y"], out["x"])


def _first_dataset(ms, src: str) -> tuple[dict, dict]:
    """The first multiscale and its first dataset, checked (a list of objects, a path string).

    Raises:
        WorkbenchError: malformed NGFF ``multiscales`` metadata.
    """
    entry = ms[0] if isinstance(ms, list) and ms else None
    datasets = entry.get("datasets") if isinstance(entry, dict) else None
    first = datasets[0] if isinstance(datasets, list) and datasets else None
    if not isinstance(first, dict) or not isinstance(first.get("path"), (str, int)) or str(first["path"]) == "":
        raise WorkbenchError("malformed OME-Zarr metadata: multiscales[0].datasets[0].path is missing", src)
    return entry, first


def _members(group) -> tuple[list[str], list[str]]:
    import zarr

    arrays, groups = [], []
    for name, obj in group.members(max_depth=None):
        (arrays if isinstance(obj, zarr.Array) else groups).append(name)
    return sorted(arrays), sorted(groups)


def _open_node(root: Path, inner: str):
    import zarr

    try:
        return zarr.open(store=str(root), path=inner or None, mode="r")
    except (FileNotFoundError, KeyError) as err:
        raise WorkbenchError(f"no zarr array or group at {inner or '/'!r}", root) from err
    except Exception as err:  # zarr raises several types for invalid metadata
        raise WorkbenchError(f"not a readable zarr store: {type(err).__name__}: {err}", root) from err


def open_zarr(root: Path, inner: str = "", channel: int | None = None) -> Volume:
    """Open a zarr array, a group holding one 3D array, or an OME-Zarr image (scale 0 unless a scale path).

    Raises:
        WorkbenchError: nothing there, an ambiguous group (the message lists its arrays), bad metadata.
    """
    import zarr

    inner = inner.strip("/")
    node = _open_node(root, inner)
    src = str(root / inner) if inner else str(root)
    ms_entry: dict | None = None
    dataset: dict | None = None
    if isinstance(node, zarr.Group):
        ms = multiscales_of(dict(node.attrs))
        if ms:
            ms_entry, dataset = _first_dataset(ms, src)
            inner = f"{inner}/{dataset['path']}".strip("/")
            node = _open_node(root, inner)
        else:
            arrays, groups = _members(node)
            three = [a for a in arrays if len(node[a].shape) == 3]
            pick = three if three else arrays
            if len(pick) != 1:
                listing = ", ".join(arrays + [g + "/" for g in groups]) or "nothing"
                raise WorkbenchError(f"zarr group holds no single 3D array; choose one by path (holds: {listing})", src)
            inner = f"{inner}/{pick[0]}".strip("/")
            node = _open_node(root, inner)
    elif "/" in inner or inner:
        parent_path, _, leaf = inner.rpartition("/")
        try:
            parent = zarr.open_group(store=str(root), path=parent_path or None, mode="r")
            ms = multiscales_of(dict(parent.attrs)) or []
        except Exception:
            ms = []
        for entry in ms:
            for d in entry.get("datasets", []):
                if str(d.get("path")) == leaf:
                    ms_entry, dataset = entry, d
                    break
            if ms_entry:
                break
    if not isinstance(node, zarr.Array):
        raise WorkbenchError(f"{inner!r} is not an array", root)
    if node.dtype.kind not in "biuf":
        raise WorkbenchError(f"unsupported data type {node.dtype}", src)
    shape = tuple(node.shape)
    if ms_entry is not None and ms_entry.get("axes"):
        axes = ngff_axes_letters(ms_entry["axes"])
    else:
        attr_axes = node.attrs.get("_ARRAY_DIMENSIONS") or getattr(node.metadata, "dimension_names", None)
        axes = "".join(str(a or "?").upper()[:1] for a in attr_axes) if attr_axes else ""
        if len(axes) != len(shape) or not set(axes) <= set("TCZYX"):
            axes = guess_axes(shape, src)
    vs = ngff_voxel_size(ms_entry, dataset, len(shape)) if ms_entry and dataset else None
    if vs is None:
        from workbench.io.hdf5 import voxel_size_from_attrs

        vs = voxel_size_from_attrs(node.attrs)
    chunks = getattr(node, "shards", None) or node.chunks
    refuse_huge(chunks, node.dtype.itemsize, "chunk", src)
    view = to_zyx(Guarded(node, src), axes, channel, src)
    name = (ms_entry or {}).get("name") or Path(inner).name or root.stem
    attrs: dict[str, Any] = {"format": "zarr", "zarr_format": node.metadata.zarr_format,
                             "voxel_size_known": vs is not None}
    if ms_entry is not None:
        attrs["ngff_version"] = ms_entry.get("version") or dict(node.attrs).get("ome", {}).get("version")
    return Volume(view, vs or (1.0, 1.0, 1.0), name=str(name), source=src, attrs=attrs)
