"""Folders of 2D slices (TIFF or PNG, one file per z, natural sort order) and single 2D image files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.arrays import LazyArray
from workbench.io.axes import to_zyx
from workbench.io.volume import Volume

SLICE_SUFFIXES = {".tif", ".tiff", ".png"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def natural_key(name: str) -> list:
    """Sort key that orders ``s2.png`` before ``s10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _read_image(path: str) -> np.ndarray:
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as im:
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        return np.asarray(im)


def _header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a 2D image from its header only."""
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            s = tif.series[0]
            return tuple(s.shape), np.dtype(s.dtype)
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        if mode == "P":
            mode = "RGB"
        shape2 = (im.height, im.width)
        dtype = {"1": np.bool_, "L": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I": np.int32, "F": np.float32}
        if mode in dtype:
            return shape2, np.dtype(dtype[mode])
        bands = len(im.getbands())
        return (*shape2, bands), np.dtype(np.uint8)


class SliceStack(LazyArray):
    """One 2D file per z; reading a region opens only the files of the asked z range."""

    def __init__(self, files: list[str], shape2: tuple[int, ...], dtype, source: str):
        self.files, self.source = list(files), source
        self.shape = (len(files), *shape2)
        self.dtype = np.dtype(dtype)
        self.chunks = (1, *shape2)

    def _read(self, key):
        zkey, rest = key[0], key[1:]
        zs = [zkey] if isinstance(zkey, int) else range(*zkey.indices(self.shape[0]))
        out = []
        for z in zs:
            try:
                img = _read_image(self.files[z])
            except WorkbenchError:
                raise
            except Exception as err:  # PIL raises many types for damaged files
                raise WorkbenchError(f"cannot read slice: {err}", self.files[z]) from err
            if img.shape != self.shape[1:]:
                raise WorkbenchError(f"slice has shape {img.shape}, the first slice has {self.shape[1:]}", self.files[z])
            out.append(img[rest])
        return out[0] if isinstance(zkey, int) else np.stack(out).astype(self.dtype, copy=False)


def open_slice_folder(path: Path, channel: int | None = None) -> Volume:
    """A folder of same-sized 2D TIFF or PNG slices, naturally sorted, as a lazy volume.

    Raises:
        WorkbenchError: no slice files, mixed shapes or types, or unreadable files.
    """
    src = str(path)
    files = sorted(
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise WorkbenchError("folder holds no TIFF or PNG slices (unsupported format or empty folder)", src)
    kinds = {".tif" if p.suffix.lower() in (".tif", ".tiff") else ".png" for p in files}
    if len(kinds) > 1:
        raise WorkbenchError("folder mixes TIFF and PNG slices; keep one kind", src)
    headers = []
    for p in files:  # headers only: cheap, and catches odd slices before a long import
        try:
            headers.append(_header(str(p)))
        except Exception as err:
            raise WorkbenchError(f"cannot read slice header: {err}", p) from err
    shape2, dtype = headers[0]
    for p, (s, d) in zip(files, headers):
        if s != shape2 or d != dtype:
            raise WorkbenchError(f"slice is {s} {d}, the first slice {files[0].name} is {shape2} {dtype}", p)
    if len(shape2) not in (2, 3):
        raise WorkbenchError(f"slices must be 2D images, got shape {shape2}", files[0])
    stack = SliceStack([str(p) for p in files], shape2, dtype, src)
    axes = "ZYX" if len(shape2) == 2 else "ZYXS"
    return Volume(to_zyx(stack, axes, channel, src), name=path.name, source=src,
                  attrs={"format": "slices", "files": len(files)})


def open_image_file(path: Path, channel: int | None = None) -> Volume:
    """A single 2D PNG/JPEG/BMP image as a volume with one z slice."""
    src = str(path)
    try:
        img = _read_image(src)
    except Exception as err:
        raise WorkbenchError(f"cannot read image: {err}", src) from err
    axes = "YX" if img.ndim == 2 else "YXS"
    return Volume(to_zyx(img, axes, channel, src), name=path.stem, source=src, attrs={"format": "image"})
