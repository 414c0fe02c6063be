"""The prediction store: an OME-Zarr image (c, z, y, x) written block by block, resumable.

Layout while running: ``OUT.zarr.partial/`` holds the NGFF group, the array ``0`` (one chunk per block)
and ``_blocks_done/<z>_<y>_<x>`` marker files, each created after its block's chunk was written. When every
block is done the attribute ``workbench.complete`` is set, the markers are removed and the folder is
renamed to ``OUT.zarr``. Readers (:func:`open_prediction`) refuse anything not marked complete.

Probabilities are stored as ``uint8`` (``round(255 p)``) by default: a quarter of float32 and half of
float16, an error of at most 1/510 (far below what thresholds, watershed or metrics resolve), and
directly displayable in Neuroglancer. ``float16`` is available when more precision is wanted.

With an uncertainty measure (``PredictOptions.uncertainty``) the group also holds ``uncertainty/``: a
single-scale NGFF image (z, y, x) in the same storage dtype and chunks, values in [0, 1] (uint8: round(255 u)),
its ``workbench`` attribute ``{"kind": "uncertainty", "measure": "entropy" | "disagreement"}``; each block writes
it before its done-marker. The prediction's own ``workbench.uncertainty`` names the measure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.inference.options import StorageDtype
from workbench.io.volume import Volume

PARTIAL_SUFFIX = ".partial"
MARKER_DIR = "_blocks_done"
#: The uncertainty image inside a prediction group.
UNCERTAINTY = "uncertainty"
STORAGE_DTYPES = tuple(StorageDtype.values())


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def marker_path(store: str | Path, index: Sequence[int]) -> Path:
    return Path(store) / MARKER_DIR / "_".join(str(int(i)) for i in index)


#: Channel colours shown by NGFF viewers (omero metadata), cycled.
CHANNEL_COLORS = ("FFFFFF", "FF00FF", "00FFFF", "FFFF00", "00FF00", "FF8000", "0080FF", "FF0000")


def ngff_attrs(name: str, voxel_size: Sequence[float], channel_names: Sequence[str], dtype: str = "uint8") -> dict:
    """NGFF 0.4 ``multiscales`` + ``omero`` attributes of a single-scale (c, z, y, x) image."""
    top = 255 if dtype == "uint8" else 1
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"
    ]
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": axes,
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0, *(float(v) for v in voxel_size)]}
                        ],
                    }
                ],
            }
        ],
        "omero": {
            "channels": [
                {"label": str(n), "color": CHANNEL_COLORS[i % len(CHANNEL_COLORS)], "active": True,
                 "window": {"start": 0, "end": top, "min": 0, "max": top}}
                for i, n in enumerate(channel_names)
            ]
        },
    }


@dataclass(frozen=True)
class StoreLayout:
    """What a prediction store holds: array ``shape`` (c, z, y, x), ``chunks``, ``dtype``, metadata."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    voxel_size: tuple[float, ...]
    channel_names: list[str]
    info: dict
    #: the uncertainty measure written beside the probabilities (``uncertainty/``), or None
    uncertainty: str | None = None


def create_store(path: Path, layout: StoreLayout):
    """Create an empty prediction group at ``path`` (NGFF metadata, array ``0``, marker folder)."""
    import zarr

    dtype = str(layout.dtype)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array(
        "0",
        shape=tuple(int(s) for s in layout.shape),
        chunks=tuple(int(c) for c in layout.chunks),
        dtype=dtype,
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    names = list(layout.channel_names)
    attrs = ngff_attrs(Path(str(path).removesuffix(PARTIAL_SUFFIX)).stem, layout.voxel_size, names, dtype)
    attrs["workbench"] = dict(layout.info, kind="prediction", complete=False, channel_names=names,
                              storage_dtype=dtype)
    root.attrs.update(attrs)
    if layout.uncertainty:
        _create_uncertainty(root, layout)
    (path / MARKER_DIR).mkdir(exist_ok=True)
    return root


def uncertainty_attrs(name: str, voxel_size: Sequence[float], measure: str, dtype: str) -> dict:
    """NGFF 0.4 ``multiscales`` of a single-scale (z, y, x) uncertainty image, and its ``workbench`` record."""
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    scale = [{"type": "scale", "scale": [float(v) for v in voxel_size]}]
    return {
        "multiscales": [{"version": "0.4", "name": name, "axes": axes,
                         "datasets": [{"path": "0", "coordinateTransformations": scale}]}],
        "workbench": {"kind": "uncertainty", "measure": str(measure), "storage_dtype": str(dtype)},
    }


def _create_uncertainty(root, layout: StoreLayout) -> None:
    group = root.create_group(UNCERTAINTY)
    group.create_array("0", shape=tuple(int(s) for s in layout.shape[1:]),
                       chunks=tuple(int(c) for c in layout.chunks[1:]), dtype=str(layout.dtype), fill_value=0,
                       chunk_key_encoding={"name": "v2", "separator": "/"})
    group.attrs.update(uncertainty_attrs(UNCERTAINTY, layout.voxel_size, str(layout.uncertainty), str(layout.dtype)))


def read_info(path: str | Path) -> dict:
    """The ``workbench`` attribute of a prediction group (raises if it is not one)."""
    import zarr

    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as err:
        raise WorkbenchError(f"not a zarr group ({type(err).__name__})", path) from None
    info = dict(root.attrs.get("workbench") or {})
    if info.get("kind") != "prediction":
        raise WorkbenchError("not a workbench prediction (no workbench.kind = prediction attribute)", path)
    return info


def finish_store(store: Path, out: Path) -> None:
    """Mark complete, drop the markers and rename ``store`` to ``out`` (replacing an old ``out``)."""
    import zarr

    root = zarr.open_group(str(store), mode="r+")
    info = dict(root.attrs["workbench"])
    info["complete"] = True
    root.attrs["workbench"] = info
    shutil.rmtree(store / MARKER_DIR, ignore_errors=True)
    if store != out:
        if out.exists():
            shutil.rmtree(out)
        os.replace(store, out)


def write_block(store: str | Path, index: Sequence[int], core_slices: tuple[slice, ...], probs: np.ndarray,
                dtype: str, uncertainty: np.ndarray | None = None) -> None:
    """Write one block's core (float probabilities, c z y x; and its z y x uncertainty), then its done-marker."""
    import zarr

    arr = zarr.open_array(str(Path(store) / "0"), mode="r+")
    arr[(slice(None), *core_slices)] = to_storage(probs, dtype)
    if uncertainty is not None:
        unc = zarr.open_array(str(Path(store) / UNCERTAINTY / "0"), mode="r+")
        unc[core_slices] = to_storage(uncertainty, dtype)
    marker = marker_path(store, index)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_bytes(b"")
    os.replace(tmp, marker)


def to_storage(probs: np.ndarray, dtype: str) -> np.ndarray:
    """Float probabilities to the storage dtype (uint8: round(255 p); float16: as is)."""
    if dtype == "uint8":
        return np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)
    return probs.astype(np.float16)


def from_storage(values: np.ndarray) -> np.ndarray:
    """Stored values back to float32 probabilities."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255.0
    return values.astype(np.float32)


def done_blocks(store: str | Path) -> set[tuple[int, ...]]:
    """Grid indices whose done-marker exists."""
    d = Path(store) / MARKER_DIR
    if not d.is_dir():
        return set()
    out = set()
    for p in d.iterdir():
        if p.name.endswith(".tmp"):
            continue
        try:
            out.add(tuple(int(v) for v in p.name.split("_")))
        except ValueError:
            continue
    return out


class _ChannelArray:
    """A lazy float32 (z, y, x) view of one channel of a stored prediction."""

    def __init__(self, arr, channel: int):
        self._arr = arr
        self._channel = channel
        self.shape = tuple(arr.shape[1:])
        self.dtype = np.dtype(np.float32)
        self.chunks = tuple(arr.chunks[1:])

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        return from_storage(np.asarray(self._arr[(self._channel, *key)]))


def open_prediction(path: str | Path, channel: int | None = None, allow_incomplete: bool = False):
    """Open a finished prediction.

    Args:
        path: the ``OUT.zarr`` written by :func:`~workbench.inference.predict_volume`.
        channel: return a lazy float32 :class:`~workbench.io.volume.Volume` of this channel; ``None``
            returns the raw zarr array (c, z, y, x, storage dtype).
        allow_incomplete: open an interrupted prediction anyway (resuming only).

    Raises:
        WorkbenchError: not a prediction, not complete, or no such channel.
    """
    import zarr

    path = Path(path)
    if not path.exists():
        if partial_path(path).exists():
            raise WorkbenchError("prediction is incomplete (interrupted); resume it with --resume", path)
        raise WorkbenchError("no such prediction", path)
    info = read_info(path)
    if not info.get("complete") and not allow_incomplete:
        raise WorkbenchError("prediction is incomplete (interrupted); resume it with --resume", path)
    arr = zarr.open_array(str(path / "0"), mode="r")
    if channel is None:
        return arr
    if not 0 <= channel < arr.shape[0]:
        raise WorkbenchError(f"channel {channel} out of range: the prediction has {arr.shape[0]} channels", path)
    root = zarr.open_group(str(path), mode="r")
    scale = root.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    names = info.get("channel_names") or []
    name = names[channel] if channel < len(names) else f"channel {channel}"
    return Volume(_ChannelArray(arr, channel), tuple(scale[1:]), name=name, source=f"{path}[{channel}]",
                  attrs={"workbench": info})


def prediction_class_map(path: str | Path):
    """The most likely class id (channel + 1, uint8) of a stored prediction, as a lazy dask array (z, y, x).

    Raises:
        WorkbenchError: no finished prediction at ``path``.
    """
    import dask.array as da

    from workbench.classes import class_map

    arr = open_prediction(path)
    return class_map(da.from_array(arr, chunks=(arr.shape[0], *arr.chunks[1:])))


def has_uncertainty(path: str | Path) -> str | None:
    """The uncertainty measure stored with the prediction at ``path`` (``"entropy"``, ...), or None."""
    try:
        info = read_info(path)
    except WorkbenchError:
        return None
    measure = info.get("uncertainty")
    return str(measure) if measure and (Path(path) / UNCERTAINTY / "0").exists() else None


def open_uncertainty(path: str | Path, stored: bool = False) -> Volume:
    """The uncertainty image of a finished prediction (written with ``PredictOptions.uncertainty``).

    Args:
        path: the ``OUT.zarr``.
        stored: the values as stored (uint8 round(255 u) or float16, what viewers read cheaply); default: a
            lazy float32 view in [0, 1].

    Returns:
        a (z, y, x) :class:`~workbench.io.volume.Volume` named by the measure.

    Raises:
        WorkbenchError: not a finished prediction, or one written without uncertainty.
    """
    import zarr

    arr = open_prediction(path)
    measure = has_uncertainty(path)
    if measure is None:
        raise WorkbenchError("this prediction has no uncertainty; predict with --uncertainty entropy", path)
    unc = zarr.open_array(str(Path(path) / UNCERTAINTY / "0"), mode="r")
    if tuple(unc.shape) != tuple(arr.shape[1:]):
        raise WorkbenchError(f"uncertainty of shape {tuple(unc.shape)} does not match the prediction "
                             f"{tuple(arr.shape[1:])}", path)
    root = zarr.open_group(str(path), mode="r")
    scale = root.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    data = unc if stored else _FloatArray(unc)
    return Volume(data, tuple(scale[1:]), name=f"uncertainty ({measure})", source=str(Path(path) / UNCERTAINTY / "0"),
                  attrs={"workbench": {"kind": "uncertainty", "measure": measure}})


class _FloatArray:
    """A lazy float32 view of a stored (z, y, x) array (uint8 / 255 or float16)."""

    def __init__(self, arr):
        self._arr = arr
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(np.float32)
        self.chunks = tuple(arr.chunks)

    def __getitem__(self, key):
        return from_storage(np.asarray(self._arr[key]))
