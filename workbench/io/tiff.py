"""Multipage and single-page TIFF files, read lazily with tifffile.

Uncompressed contiguous files are read with positional reads of just the asked rows; others go through tifffile's zarr store, which
decodes only the pages (and strips or tiles) a region touches.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError
from workbench.io.arrays import LazyArray, refuse_huge
from workbench.io.axes import to_zyx
from workbench.io.volume import Volume

_UNIT_NM = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "µm": 1e3, "micron": 1e3, "micrometer": 1e3, "\\u00B5m": 1e3,
            "mm": 1e6, "millimeter": 1e6, "cm": 1e7, "centimeter": 1e7, "a": 0.1, "angstrom": 0.1, "å": 0.1}
_RESUNIT_NM = {2: 2.54e7, 3: 1e7}  # inch, centimetre (TIFF ResolutionUnit) in nm


class _TiffLogCatcher(logging.Handler):
    """Collects tifffile's warnings: it logs (not raises) broken page chains and bad offsets."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class TiffRaw(LazyArray):
    """An uncompressed, contiguous TIFF series read with positional reads (``os.preadv``), one plane row range at a time.

    A memory map would do the same work, but every page it touches stays counted in the process's
    resident memory until unmapped, so importing a large stack would look like it holds the whole file;
    positional reads into the output buffer keep memory bounded by what is asked, at the same speed.
    """

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: Any):
        self.path, self.offset, self.source = path, int(offset), path
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.chunks = (1,) * (len(self.shape) - 2) + self.shape[-2:]

    def _read(self, key):
        fd = self._local(lambda: os.open(self.path, os.O_RDONLY))
        lead_shape, (ny, nx) = self.shape[:-2], self.shape[-2:]
        lead = [[k] if isinstance(k, int) else range(*k.indices(n)) for k, n in zip(key[:-2], lead_shape)]
        yk, xk = key[-2:]
        rows = [yk] if isinstance(yk, int) else range(*yk.indices(ny))
        cols = [xk] if isinstance(xk, int) else range(*xk.indices(nx))
        lo, hi = min(rows), max(rows) + 1
        contiguous_rows = isinstance(yk, int) or yk.step == 1
        full_width = not isinstance(xk, int) and len(cols) == nx and xk.step == 1
        item = self.dtype.itemsize
        out = np.empty((*[len(r) for r in lead], len(rows), len(cols)), self.dtype)
        buf = None if (contiguous_rows and full_width) else np.empty((hi - lo, nx), self.dtype)
        for pos, idx in zip(np.ndindex(*out.shape[:-2]), itertools.product(*lead)):
            plane = int(np.ravel_multi_index(idx, lead_shape)) if lead_shape else 0
            target = out[pos] if buf is None else buf
            want = target.nbytes
            got = os.preadv(fd, [memoryview(target).cast("B")], self.offset + (plane * ny + lo) * nx * item)
            if got != want:
                raise WorkbenchError("TIFF file is truncated (image data runs past the end of the file)", self.path)
            if buf is not None:
                sel = buf[[r - lo for r in rows]] if not contiguous_rows else buf
                out[pos] = sel[:, xk] if isinstance(xk, slice) else sel[:, [xk]]
        return out[tuple(0 if isinstance(k, int) else slice(None) for k in key)]

    def __del__(self):
        fd = self.__dict__.get("_handle")
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class TiffZarr(LazyArray):
    """A TIFF series through tifffile's zarr store: reads only the pages/strips a region touches."""

    def __init__(self, path: str, series: int, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]):
        self.path, self.series, self.source = path, series, path
        self.shape, self.dtype, self.chunks = tuple(shape), np.dtype(dtype), tuple(chunks)

    def _open(self):
        import tifffile
        import zarr

        tif = tifffile.TiffFile(self.path)
        store = tif.series[self.series].aszarr()
        return tif, zarr.open_array(store, mode="r")

    def _read(self, key):
        return np.asarray(self._local(self._open)[1][key])


def _ome_voxel_size(tif) -> tuple[float | None, float | None, float | None]:
    """(z, y, x) nm from OME-XML ``PhysicalSize*`` (default unit µm), None where absent."""
    import xml.etree.ElementTree as ET

    try:
        pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
    except (ET.ParseError, TypeError, ValueError):
        return None, None, None
    out: list[float | None] = []
    for ax in "ZYX":
        value = None if pixels is None else pixels.get(f"PhysicalSize{ax}")
        unit = "µm" if pixels is None else pixels.get(f"PhysicalSize{ax}Unit", "µm")
        scale = _UNIT_NM.get(str(unit).strip().lower())
        try:
            v = float(value) * scale if value is not None and scale is not None else None
        except ValueError:
            v = None
        out.append(v if v and v > 0 else None)
    return tuple(out)


def _voxel_size(tif, page, axes: str) -> tuple[float | None, float | None, float | None]:
    """(z, y, x) nm from OME-XML, ImageJ spacing/unit and the TIFF resolution tags, None where unknown."""
    if tif.is_ome:
        ome = _ome_voxel_size(tif)
        if any(v is not None for v in ome):
            return ome
    vz = vy = vx = None
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower()
    scale = _UNIT_NM.get(unit)
    tags = page.tags
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 1
    if scale is None and resunit in _RESUNIT_NM:
        scale = _RESUNIT_NM[resunit]
    if scale is not None:
        for name in ("YResolution", "XResolution"):
            if name in tags:
                num, den = tags[name].value
                if num > 0 and den > 0 and not (num == den == 1 and unit == "" and resunit == 1):
                    size = scale * den / num
                    if name == "XResolution":
                        vx = size
                    else:
                        vy = size
        if "spacing" in ij and float(ij["spacing"]) > 0 and unit in _UNIT_NM:
            vz = float(ij["spacing"]) * _UNIT_NM[unit]
    return vz, vy, vx


def open_tiff(path: Path, channel: int | None = None) -> Volume:
    """Open a TIFF file (multipage stack, ImageJ hyperstack or a single 2D image) lazily.

    Raises:
        WorkbenchError: not a readable TIFF, truncated, or channel data without ``channel``.
    """
    import tifffile

    src = str(path)
    catcher = _TiffLogCatcher()
    log = logging.getLogger("tifffile")
    log.addHandler(catcher)
    try:
        try:
            with tifffile.TiffFile(src) as tif:
                if not tif.series:
                    raise WorkbenchError("corrupt TIFF file: no readable images", src)
                series = tif.series[0]
                shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
                pages = list(tif.pages)  # reads every IFD: detects broken page chains
                page0 = tif.pages.first
                file_size = os.path.getsize(src)
                for p in pages:
                    offs = getattr(p, "dataoffsets", ()) or ()
                    counts = getattr(p, "databytecounts", ()) or ()
                    if any(o + c > file_size for o, c in zip(offs, counts)):
                        raise WorkbenchError("TIFF file is truncated (image data runs past the end of the file)", src)
                    _check_claims(p, counts, src)
                vz, vy, vx = _voxel_size(tif, page0, axes)
                native = dtype.byteorder in ("=", "|") or dtype.byteorder == np.dtype("=").byteorder
                if series.dataoffset is not None and page0.compression == 1 and native:
                    end = series.dataoffset + int(np.prod(shape)) * dtype.itemsize
                    if end > file_size:
                        raise WorkbenchError("TIFF file is truncated", src)
                    data: LazyArray = TiffRaw(src, series.dataoffset, shape, dtype)
                else:  # decoded a page (or tile) at a time: refuse one larger than memory before any is read
                    tile = getattr(page0, "chunks", None) or page0.shape
                    refuse_huge(tile, dtype.itemsize, "TIFF page" if tile == page0.shape else "TIFF tile", src)
                    data = TiffZarr(src, 0, shape, dtype.newbyteorder("="), _page_chunks(shape, page0))
        except tifffile.TiffFileError as err:
            raise WorkbenchError(f"not a readable TIFF file: {err}", src) from err
        except (OSError, ValueError, EOFError, KeyError, IndexError, AssertionError, ArithmeticError) as err:
            raise WorkbenchError(f"corrupt TIFF file: {type(err).__name__}: {err}", src) from None
    finally:
        log.removeHandler(catcher)
    bad = [m for m in catcher.messages if "invalid" in m.lower() or "corrupt" in m.lower() or "truncat" in m.lower()]
    if bad:
        raise WorkbenchError(f"corrupt or truncated TIFF file: {bad[0]}", src)
    arr = to_zyx(data, axes, channel, src)
    attrs = {"format": "tiff", "axes": axes}
    return Volume(arr, (vz or 1.0, vy or 1.0, vx or 1.0), name=path.stem, source=src,
                  attrs={**attrs, "voxel_size_known": [v is not None for v in (vz, vy, vx)]})


#: The most a strip or tile can expand when decoded, by TIFF compression code: deflate (8, 32946) ~1032:1,
#: LZW (5) ~ 1000:1 at best, PackBits (32773) 64:1. Other codecs are bounded by the machine's memory only.
_MAX_RATIO = {5: 1100, 8: 1100, 32946: 1100, 32773: 70, 1: 1}


def _check_claims(page, counts, src: str) -> None:
    """Refuse, before decoding, a page whose strips or tiles claim more pixels than their bytes can hold."""
    if not hasattr(page, "chunks") or not counts:
        return
    try:
        chunk_bytes = int(np.prod(page.chunks)) * max(1, int(page.bitspersample) // 8) * int(page.samplesperpixel)
    except (TypeError, ValueError, AttributeError):
        return
    refuse_huge((chunk_bytes,), 1, "TIFF strip or tile", src)
    ratio = _MAX_RATIO.get(int(page.compression))
    if ratio is not None and chunk_bytes > ratio * min(counts) + 65536:
        raise WorkbenchError(f"damaged TIFF header: a strip or tile of {chunk_bytes} bytes is stored in "
                             f"{min(counts)} bytes, more than its compression can expand", src)


def _page_chunks(shape, page) -> tuple[int, ...]:
    """Storage chunks of a series: one page per chunk along the non-plane axes."""
    plane = len(page.shape)
    return (1,) * (len(shape) - plane) + tuple(int(s) for s in shape[len(shape) - plane :])


def write_tiff(image: Volume | Any, path: str | Path, voxel_size=None) -> Path:
    """Write a (z, y, x) volume or array as an ImageJ TIFF stack with its voxel size (read back by :func:`open_tiff`).

    uint8, uint16 and float32 make ImageJ stacks; other types a plain multipage TIFF (x, y resolution only). The file is written under a temporary name and renamed when complete (an existing file is replaced).
    ``voxel_size``: (z, y, x) nm; default the Volume's (or 1 nm). Returns the path.
    """
    import tifffile

    path = Path(path).expanduser()
    if voxel_size is None:
        voxel_size = image.voxel_size if isinstance(image, Volume) else (1.0, 1.0, 1.0)
    data = image.read() if isinstance(image, Volume) else np.asarray(image)
    if data.ndim != 3:
        raise WorkbenchError(f"a TIFF stack needs a (z, y, x) volume, got shape {data.shape}", path)
    vz, vy, vx = (float(v) / 1e3 for v in voxel_size)  # micrometres
    if data.dtype in (np.uint8, np.uint16, np.float32):  # what ImageJ stacks hold
        kwargs = {"imagej": True, "resolution": (1.0 / vx, 1.0 / vy),
                  "metadata": {"axes": "ZYX", "spacing": vz, "unit": "um"}}
    else:  # a plain TIFF: pixels per centimetre
        kwargs = {"resolution": (1e4 / vx, 1e4 / vy), "resolutionunit": "CENTIMETER", "metadata": {"axes": "ZYX"}}
    with atomic_path(path) as tmp:  # written beside it, fsynced and renamed: never half a file under ``path``
        tifffile.imwrite(tmp, data, **kwargs)
    return path
