"""Opening any supported source as a :class:`Volume`: format detection and label checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.arrays import OPEN_ERRORS, Crop, Finite, LabelCast, check_label_values, first_line
from workbench.io.volume import Volume

TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8"}
SUPPORTED = "TIFF, folder of TIFF/PNG slices, PNG/JPEG, HDF5 (file.h5:/key), zarr/OME-Zarr, N5, MRC"
#: Labels up to this size are checked (and float labels cast) up front; larger ones are checked as read.
EAGER_LABEL_CHECK_BYTES = 512 * 1024**2
_H5_SRC = re.compile(r"^(?P<file>.+?\.(?:h5|hdf5|hdf|he5)):(?P<key>.*)$", re.IGNORECASE)
_STORE_SUFFIXES = (".zarr", ".n5", ".ome.zarr")
_REGION = re.compile(r"^(?P<src>.+)\[(?P<region>[-0-9:,\s]*)\]$")


def _sniff(path: Path) -> str | None:
    """Format of a file from its first bytes (for unknown suffixes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"\x89HDF"):
        return "hdf5"
    if head.startswith(b"\x89PNG") or head[:3] == b"\xff\xd8\xff":
        return "image"
    return None


def _split_store(path: Path) -> tuple[Path, str] | None:
    """(store root, inner path) when ``path`` lies in a ``.zarr``/``.n5`` store or a folder with zarr/N5 metadata."""
    parts = path.parts
    for i, part in enumerate(parts):
        if part.lower().endswith((".zarr", ".n5")):
            return Path(*parts[: i + 1]), "/".join(parts[i + 1 :])
    if path.is_dir() and any((path / m).exists() for m in ("zarr.json", ".zgroup", ".zarray", "attributes.json")):
        return path, ""
    return None


def _open_any(src: str | Path, channel: int | None) -> Volume:
    s = str(src)
    m = _H5_SRC.match(s)
    if m and Path(m["file"]).is_file():
        from workbench.io.hdf5 import open_hdf5

        return open_hdf5(Path(m["file"]), m["key"] or None, channel)
    path = Path(s).expanduser()
    store = _split_store(path)
    if store is not None and store[0].exists():
        root, inner = store
        is_n5 = root.suffix.lower() == ".n5" or (
            (root / "attributes.json").exists() and not any((root / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))
        )
        if is_n5:
            from workbench.io.n5 import open_n5

            return open_n5(root, inner, channel)
        from workbench.io.zarr_reader import open_zarr

        return open_zarr(root, inner, channel)
    if not path.exists():
        raise WorkbenchError("no such file or folder", s)
    if path.is_dir():
        from workbench.io.slices import open_slice_folder

        return open_slice_folder(path, channel)
    suffix = path.suffix.lower()
    from workbench.io.hdf5 import H5_SUFFIXES
    from workbench.io.mrc import MRC_SUFFIXES
    from workbench.io.slices import IMAGE_SUFFIXES

    kind = (
        "tiff" if suffix in TIFF_SUFFIXES else "hdf5" if suffix in H5_SUFFIXES else "mrc" if suffix in MRC_SUFFIXES
        else "image" if suffix in IMAGE_SUFFIXES else _sniff(path)
    )
    if path.stat().st_size == 0:
        raise WorkbenchError("file is empty", s)
    if kind == "tiff":
        from workbench.io.tiff import open_tiff

        return open_tiff(path, channel)
    if kind == "hdf5":
        from workbench.io.hdf5 import open_hdf5

        return open_hdf5(path, None, channel)
    if kind == "mrc":
        from workbench.io.mrc import open_mrc

        return open_mrc(path, channel)
    if kind == "image":
        from workbench.io.slices import open_image_file

        return open_image_file(path, channel)
    raise WorkbenchError(f"unsupported format {suffix or '(no suffix)'!r} (supported: {SUPPORTED})", s)


def parse_region(text: str, shape: tuple[int, ...], source: str) -> tuple[slice, ...]:
    """Parse ``"z0:z1, y0:y1, x0:x1"`` (numpy-style, fewer axes allowed, negative indices count from the end).

    Raises:
        WorkbenchError: a malformed region, a step, or an empty box.
    """
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if len(parts) > len(shape):
        raise WorkbenchError(f"region [{text}] has more than {len(shape)} axes", source)
    box = []
    for i, n in enumerate(shape):
        part = parts[i] if i < len(parts) else ":"
        bounds = part.split(":")
        try:
            if len(bounds) == 1:
                start = int(bounds[0])
                sl = slice(start, start + 1 if start != -1 else None)
            elif len(bounds) == 2:
                sl = slice(int(bounds[0]) if bounds[0] else None, int(bounds[1]) if bounds[1] else None)
            else:
                raise ValueError
        except ValueError:
            raise WorkbenchError(f"cannot read region [{text}]: use start:stop per axis, e.g. [0:20, :, :]", source) from None
        start, stop, _ = sl.indices(n)
        if stop <= start:
            raise WorkbenchError(f"region [{text}] is empty for shape {tuple(shape)}", source)
        box.append(slice(start, stop))
    return tuple(box)


def _crop(vol: Volume, text: str) -> Volume:
    box = parse_region(text, vol.shape, vol.source)
    src = f"{vol.source}[{', '.join(f'{b.start}:{b.stop}' for b in box)}]"
    attrs = {**vol.attrs, "region": [[b.start, b.stop] for b in box]}
    return Volume(Crop(vol.data, box, src), vol.voxel_size, vol.name, src, attrs)


def _open_with_region(src: str | Path | Volume, channel: int | None) -> Volume:
    """Open ``src``, honouring a trailing ``[region]``."""
    if isinstance(src, Volume):
        return src
    m = _REGION.match(str(src))
    if m and not Path(str(src)).exists():
        vol = _open_guarded(m["src"], channel)
        return _crop(vol, m["region"]) if vol.size else vol
    return _open_guarded(src, channel)


def _open_guarded(src: str | Path, channel: int | None) -> Volume:
    """:func:`_open_any`, with whatever a library raises on a damaged header as a one-line WorkbenchError."""
    try:
        return _open_any(src, channel)
    except WorkbenchError:
        raise
    except OPEN_ERRORS as err:
        raise WorkbenchError(f"cannot read this file (damaged header or metadata?): {first_line(err)}", src) from None


def open_volume(src: str | Path | Volume, voxel_size: Any = None, channel: int | None = None) -> Volume:
    """Open any supported source lazily as a z, y, x :class:`Volume`.

    Args:
        src: a file or folder; ``file.h5:/dataset``; ``store.zarr[/path]`` (OME-Zarr: scale 0 of the first
            multiscale unless a scale or ``labels/<name>`` path is given); ``store.n5[/dataset]``; or a Volume.
            Any of them may end in a region ``[z0:z1, y0:y1, x0:x1]`` (e.g. ``stack.tif[0:20]``).
        voxel_size: (z, y, x) nm, overriding what the file says.
        channel: which channel to take from multi-channel data.

    Returns:
        A lazy Volume (nothing is read beyond headers). Float data is checked for NaN/inf on every
        read, so a full import checks every voxel block by block, and opening stays instant.

    Raises:
        WorkbenchError: missing path, unsupported or damaged file, ambiguous dataset, channels
            without ``channel``, empty volume.
    """
    vol = _open_with_region(src, channel)
    if vol.size == 0:
        raise WorkbenchError(f"volume is empty (shape {vol.shape})", vol.source or None)
    if vol.dtype.kind == "f" and not isinstance(vol.data, Finite):
        vol = Volume(Finite(vol.data, vol.source), vol.voxel_size, vol.name, vol.source, vol.attrs)
    elif vol.dtype.kind not in "biuf":
        raise WorkbenchError(f"unsupported data type {vol.dtype}", vol.source or None)
    if voxel_size is not None:
        vol = with_voxel_size(vol, voxel_size)
    return vol


def with_voxel_size(vol: Volume, voxel_size: Any) -> Volume:
    """``vol`` with a voxel size given by the user (marked as known, so labels keep it)."""
    return Volume(vol.data, tuple(voxel_size), vol.name, vol.source, {**vol.attrs, "voxel_size_known": True})


def iter_slabs(shape: tuple[int, ...], itemsize: int, budget: int = 64 * 1024**2) -> Iterator[tuple[slice, ...]]:
    """Regions of about ``budget`` bytes covering a z, y, x volume (whole z slabs when a slice fits)."""
    z, y, x = shape
    plane = y * x * itemsize
    if plane <= budget:
        dz = max(1, budget // plane)
        for z0 in range(0, z, dz):
            yield (slice(z0, min(z, z0 + dz)), slice(0, y), slice(0, x))
        return
    dy = max(1, budget // (x * itemsize))
    for z0 in range(z):
        for y0 in range(0, y, dy):
            yield (slice(z0, z0 + 1), slice(y0, min(y, y0 + dy)), slice(0, x))


def _smallest_uint(vmax: float) -> np.dtype:
    for t in (np.uint8, np.uint16, np.uint32, np.uint64):
        if vmax <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.uint64)


def open_labels(src: str | Path | Volume, like: Volume | Any = None, channel: int | None = None) -> Volume:
    """Open a label volume: non-negative integers (0 = unlabelled / background), unsigned on read.

    Signed integers and float values that are whole numbers are accepted: small volumes (up to
    :data:`EAGER_LABEL_CHECK_BYTES`) are checked now, block by block; larger signed volumes are checked
    on every read; larger float volumes are refused (casting them is not cheap: convert them first).

    Args:
        src: as :func:`open_volume`.
        like: a Volume (or anything with ``shape``) the labels must match; its voxel size is used
            when the label file has none.

    Raises:
        WorkbenchError: negative, fractional or non-numeric labels; shape differs from ``like``.
    """
    vol = _open_with_region(src, channel)
    source = vol.source or None
    if vol.size == 0:
        raise WorkbenchError(f"label volume is empty (shape {vol.shape})", source)
    if like is not None:
        like_shape = tuple(int(s) for s in like.shape)
        if like_shape != vol.shape:
            raise WorkbenchError(f"labels have shape {vol.shape} but the image has shape {like_shape}; they must match", source)
        known = vol.attrs.get("voxel_size_known")
        if isinstance(like, Volume) and known is not None and not (known if isinstance(known, bool) else any(known)):
            vol = vol.with_voxel_size(like.voxel_size)
    kind = vol.dtype.kind
    if kind == "u":
        return vol
    if kind not in "bif":
        raise WorkbenchError(f"labels must be integers, got {vol.dtype}", source)
    if kind == "b":
        return Volume(LabelCast(vol.data, np.uint8, vol.source), vol.voxel_size, vol.name, vol.source, vol.attrs)
    if vol.nbytes <= EAGER_LABEL_CHECK_BYTES:
        vmax = 0
        for region in iter_slabs(vol.shape, vol.dtype.itemsize):
            block = vol[region]
            check_label_values(block, vol.source)
            vmax = max(vmax, float(block.max()))
        target = _smallest_uint(vmax) if kind == "f" else np.dtype(f"u{vol.dtype.itemsize}")
    elif kind == "i":
        target = np.dtype(f"u{vol.dtype.itemsize}")  # checked lazily on every read
    else:
        raise WorkbenchError(
            f"float labels of {vol.nbytes / 1e9:.1f} GB are too large to check and cast cheaply; "
            "save them as an integer type",
            source,
        )
    return Volume(LabelCast(vol.data, target, vol.source), vol.voxel_size, vol.name, vol.source, vol.attrs)
