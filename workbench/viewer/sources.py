"""Serve workbench volumes to Neuroglancer lazily: only the chunks the browser asks for are read.

``local_volume(...)`` wraps any ``(z, y, x)`` array-like (numpy, zarr, dask, h5py, a :class:`Volume`) in a
``neuroglancer.LocalVolume``. When the data is scale 0 of an OME-Zarr multiscale image, the pyramid's
levels answer the browser's downsampled requests directly (:class:`PyramidVolume`), instead of reading
and averaging full-resolution data on every zoomed-out view.

Meshes: a segmentation volume given ``meshes`` (a :class:`workbench.meshes.ObjectMeshes`) answers the
browser's mesh requests (``/neuroglancer/mesh/<key>/<id>``, the python source's single-fragment legacy
format) from it: cached meshes beside the segmentation, else meshed on demand from the object's bounding
box. Neuroglancer's own on-demand mesher is not used: it needs the whole volume as one in-memory array.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.viewer.state import coordinate_space

log = logging.getLogger(__name__)


class ArrayReader:
    """Numpy-returning view of an array-like (``reader[key]`` is always an ``np.ndarray``).

    Args:
        data: array-like with ``shape``, ``dtype`` and slicing.
        channel: when given, ``data`` is ``(c, z, y, x)`` and this reads channel ``channel`` only.
    """

    def __init__(self, data: Any, channel: int | None = None):
        self._data = getattr(data, "data", data) if _is_volume(data) else data
        self._channel = channel
        shape = tuple(int(s) for s in self._data.shape)
        self.shape = shape[1:] if channel is not None else shape
        self.dtype = np.dtype(self._data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        if self._channel is not None:
            key = (self._channel, *key) if isinstance(key, tuple) else (self._channel, key)
        return np.asarray(self._data[key])


class CallbackReader:
    """Array-like whose regions come from ``read(region)`` (e.g. ``LabelStore.read``).

    Args:
        read: called with a tuple of three slices, returns the ``(z, y, x)`` block.
        shape, dtype: of the full volume.
    """

    def __init__(self, read, shape: Sequence[int], dtype):
        self._read = read
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(key) + (slice(None),) * (3 - len(key))
        region = tuple(slice(*k.indices(s)[:2]) for k, s in zip(key, self.shape))
        return np.asarray(self._read(region))


def _is_volume(obj) -> bool:
    from workbench.io.volume import Volume

    return isinstance(obj, Volume)


def _local_volume_class():
    import neuroglancer
    from neuroglancer import downsample
    from neuroglancer.chunks import encode_jpeg, encode_npz

    class PyramidVolume(neuroglancer.LocalVolume):
        """A LocalVolume that answers downsampled requests from precomputed pyramid levels.

        ``levels`` is a list of ``(factor_zyx, array)``, finest first, with ``factor_zyx`` the integer
        downsampling of each level relative to scale 0. A request for factor ``f`` reads the coarsest
        level whose factor divides ``f`` and downsamples only the rest.
        """

        def __init__(self, data, dimensions, levels, **kwargs):
            super().__init__(data, dimensions, **kwargs)
            self.levels = [(np.asarray(f, dtype=np.int64), lvl) for f, lvl in levels]

        def get_encoded_subvolume(self, data_format, start, end, scale_key):
            rank = self.rank
            start = np.asarray(start, dtype=np.int64)
            end = np.asarray(end, dtype=np.int64)
            if len(start) != rank or len(end) != rank:
                raise ValueError("Invalid request")
            factor = np.array(scale_key.split(","), dtype=np.int64)
            if (
                len(factor) != rank
                or np.any(factor < 1)
                or np.any(factor > self.max_downsampling)
                or np.prod(factor) > self.max_downsampling
            ):
                raise ValueError("Invalid downsampling factor.")
            shape = np.asarray(self.shape, dtype=np.int64)
            down_shape = np.ceil(shape / factor).astype(np.int64)
            if np.any(end < start) or np.any(start < 0) or np.any(end > down_shape):
                raise ValueError("Out of bounds data request.")
            level_factor, level = self.levels[0]
            for f, arr in self.levels:
                if np.all(factor % f == 0) and np.prod(f) > np.prod(level_factor):
                    level_factor, level = f, arr
            rest = factor // level_factor
            level_shape = np.asarray(level.shape, dtype=np.int64)
            index = tuple(slice(int(start[i] * rest[i]), int(min(level_shape[i], end[i] * rest[i]))) for i in range(rank))
            sub = np.asarray(level[index])
            if sub.dtype == np.float64:
                sub = sub.astype(np.float32)
            if np.any(rest != 1):
                if self.volume_type == "image":
                    sub = downsample.downsample_with_averaging(sub, rest)
                else:
                    sub = downsample.downsample_with_striding(sub, rest)
            # a coarser level may be one voxel short of ceil(shape / factor) at the border: pad by edge
            want = tuple(int(e - s) for s, e in zip(start, end))
            if sub.shape != want:
                pad = [(0, max(0, w - s)) for w, s in zip(want, sub.shape)]
                sub = np.pad(sub, pad, mode="edge")[tuple(slice(0, w) for w in want)]
            if data_format == "jpeg":
                return encode_jpeg(sub), "image/jpeg"
            if data_format == "npz":
                return encode_npz(sub), "application/octet-stream"
            if data_format == "raw":  # neuroglancer's encode_raw uses tostring(), gone in numpy 2
                return np.ascontiguousarray(sub).tobytes(), "application/octet-stream"
            raise ValueError("Invalid data format requested.")

    return PyramidVolume


def _meshed_class(base):
    """``base`` (a LocalVolume class) serving meshes from an ``ObjectMeshes`` (attribute ``object_meshes``)."""
    from neuroglancer.local_volume import InvalidObjectIdForMesh, MeshesNotSupportedForVolume

    from workbench.errors import WorkbenchError

    class MeshedVolume(base):
        object_meshes = None

        def get_object_mesh(self, object_id):
            if self.object_meshes is None:
                raise MeshesNotSupportedForVolume()
            try:
                mesh = self.object_meshes.get(int(object_id))
            except WorkbenchError:
                raise InvalidObjectIdForMesh() from None
            if len(mesh.faces) == 0:
                raise InvalidObjectIdForMesh()
            # model axes are z, y, x with scales in the coordinate space's base unit (m): vertex / scale = voxel
            scale = float(self.dimensions.scales[0]) / float(self.object_meshes.voxel_size[0])
            return mesh.encode("zyx", scale=scale)

        def invalidate(self):
            if self.object_meshes is not None:
                self.object_meshes.reset()
            super().invalidate()

    return MeshedVolume


def ome_zarr_levels(data: Any) -> list[tuple[tuple[int, int, int], Any]]:
    """The multiscale pyramid around a zarr array that is scale 0 of an OME-Zarr image.

    Args:
        data: a zarr array (or a :class:`Volume` over one).
    Returns:
        ``[(factor_zyx, array), ...]`` finest first (scale 0 included), or ``[]`` when the array is
        not part of an NGFF multiscale image. Never raises for a plain array.
    """
    arr = getattr(data, "data", data) if _is_volume(data) else data
    try:
        import zarr

        shape = tuple(int(s) for s in arr.shape)
        for _ in range(6):  # unwrap lazy views (axis views, finite checks) down to the zarr array
            if isinstance(arr, zarr.Array):
                break
            inner = next((getattr(arr, a) for a in ("base", "_data", "data") if hasattr(arr, a)), None)
            if inner is None or not hasattr(inner, "shape"):
                return []
            arr = inner
        if not isinstance(arr, zarr.Array) or tuple(int(s) for s in arr.shape) != shape or arr.ndim != 3:
            return []
        path = arr.path.strip("/")
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        group = zarr.open_group(store=arr.store, path=parent, mode="r")
        attrs = dict(group.attrs)
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if not multiscales:
            return []
        datasets = [d["path"] for d in multiscales[0]["datasets"]]
        own = path.rsplit("/", 1)[-1]
        if own not in datasets or datasets.index(own) != 0:
            return []
        base = np.asarray(arr.shape[-3:], dtype=np.float64)
        levels = []
        for p in datasets:
            lvl = group[p]
            if lvl.ndim != arr.ndim:
                return []
            f = base / np.asarray(lvl.shape[-3:], dtype=np.float64)
            factor = tuple(max(1, int(round(v))) for v in f)
            levels.append((factor, lvl))
        return levels
    except Exception as err:  # unreadable metadata: serve scale 0 only
        log.debug("no OME-Zarr pyramid found: %s", err)
        return []


def local_volume(
    data: Any,
    voxel_size: Sequence[float] | None = None,
    volume_type: str | None = None,
    channel: int | None = None,
    levels: list | None = None,
    max_downsampling: int = 64,
    meshes=None,
):
    """A ``neuroglancer.LocalVolume`` serving ``data`` lazily.

    Args:
        data: ``(z, y, x)`` array-like or :class:`Volume` (or ``(c, z, y, x)`` with ``channel``).
        voxel_size: ``(z, y, x)`` nm; default: the Volume's, else 1 nm.
        volume_type: ``"image"`` or ``"segmentation"``; default from the dtype.
        channel: read one channel of a 4D array.
        levels: pyramid levels (see :func:`ome_zarr_levels`); found automatically for OME-Zarr scale 0.
        max_downsampling: largest total downsampling the browser may request.
        meshes: a :class:`workbench.meshes.ObjectMeshes` answering mesh requests (segmentations).
    """
    import neuroglancer

    if voxel_size is None:
        voxel_size = data.voxel_size if _is_volume(data) else (1.0, 1.0, 1.0)
    if levels is None and channel is None:
        levels = ome_zarr_levels(data)
    dims = coordinate_space(voxel_size)
    reader = ArrayReader(data, channel=channel)
    if reader.ndim != 3:
        raise ValueError(f"expected a (z, y, x) array, got shape {reader.shape}")
    if reader.dtype == np.bool_:
        reader = CallbackReader(lambda r, _d=reader: _d[r].astype(np.uint8), reader.shape, np.uint8)
    kwargs = dict(volume_type=volume_type, max_downsampling=max_downsampling)
    if reader.dtype.kind == "i" and volume_type == "segmentation":
        # Neuroglancer segmentations are unsigned; labels are non-negative by contract
        reader = CallbackReader(lambda r, _d=reader: _d[r].astype(np.uint32), reader.shape, np.uint32)
    if levels and len(levels) > 1:
        readers = [(f, ArrayReader(a)) for f, a in levels]
        cls = _local_volume_class()
        vol = (_meshed_class(cls) if meshes is not None else cls)(reader, dims, readers, **kwargs)
    else:
        cls = neuroglancer.LocalVolume
        vol = (_meshed_class(cls) if meshes is not None else cls)(reader, dims, **kwargs)
    if meshes is not None:
        vol.object_meshes = meshes
    return vol
