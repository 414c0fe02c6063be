"""Objects of an instance segmentation: per-object size, volume, centroid, bounding box, class, probability.

Everything is computed block by block (one block of labels, and of the prediction when given, in memory at
a time) and accumulated per object, so tables of volumes larger than memory cost one pass over the data.

- :func:`object_stats`: the raw per-object sums (voxel count, coordinate sums, bounding boxes, probability
  sums per channel), the shared pass behind tables, meshes and Neuroglancer segment properties.
- :func:`object_table`: the table a user reads (:class:`ObjectTable`: ``rows()``, ``to_csv()``,
  ``to_dataframe()``), with the columns :data:`COLUMNS`.

Classes of objects: with a prediction, each object's class is the channel with the highest mean
probability over the object's voxels and ``mean_probability`` is that mean; without one, the class is the
one the segmentation was made from (its ``workbench`` metadata: the prediction channel of connected
components) or ``"object"``, and ``mean_probability`` is empty.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box

#: The columns of an object table, in order.
COLUMNS = ("id", "class", "voxels", "volume_um3", "centroid_z", "centroid_y", "centroid_x",
           "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1", "mean_probability")
#: Default block for the pass over the labels (z, y, x voxels).
DEFAULT_BLOCK = (64, 512, 512)
#: Class name of objects whose class nothing tells.
DEFAULT_CLASS = "object"


@dataclass(frozen=True)
class ObjectStats:
    """Per-object sums over a segmentation (background ``0`` excluded), sorted by id.

    Attributes:
        ids: ``(n,)`` uint64 object ids.
        voxels: ``(n,)`` voxel counts.
        coord_sums: ``(n, 3)`` sums of the z, y, x voxel indices (centroid = sums / voxels).
        lo, hi: ``(n, 3)`` bounding boxes, ``lo`` inclusive and ``hi`` exclusive voxel indices.
        prob_sums: ``(n, c)`` sums of each prediction channel over the object, or None.
        shape: ``(z, y, x)`` of the segmentation.
    """

    ids: np.ndarray
    voxels: np.ndarray
    coord_sums: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    prob_sums: np.ndarray | None
    shape: tuple[int, int, int]

    def __len__(self) -> int:
        return int(self.ids.size)

    def index(self, object_id: int) -> int:
        """Row of ``object_id``.

        Raises:
            KeyError: no such object.
        """
        i = int(np.searchsorted(self.ids, np.uint64(object_id)))
        if i >= self.ids.size or int(self.ids[i]) != int(object_id):
            raise KeyError(object_id)
        return i

    def box(self, object_id: int) -> Box:
        """The bounding box of ``object_id`` (raises ``KeyError`` for an unknown id)."""
        i = self.index(object_id)
        return Box.from_bounds(self.lo[i], self.hi[i])


def array_of(data: Any):
    """The array behind a Volume (or the array itself)."""
    from workbench.io.volume import Volume

    return data.data if isinstance(data, Volume) else data


#: Blocks whose largest id is below this are counted with ids as indices (no sorting); others are relabelled.
DIRECT_ID_LIMIT = 1 << 22


def _block_stats(lab: np.ndarray, origin: Sequence[int], prob: np.ndarray | None):
    """``(ids, counts, coord_sums, lo, hi, prob_sums)`` of one block (ids without 0)."""
    from scipy import ndimage

    top = int(lab.max()) if lab.size else 0
    if top < DIRECT_ID_LIMIT:
        index = lab.astype(np.intp, copy=False).reshape(lab.shape)
        ids = np.arange(top + 1, dtype=np.uint64)
    else:  # huge ids: relabel to 0..k-1 (a sort)
        uniq, inv = np.unique(lab, return_inverse=True)
        index, ids = inv.reshape(lab.shape).astype(np.intp, copy=False), uniq.astype(np.uint64)
    flat = index.ravel()
    counts = np.bincount(flat, minlength=ids.size).astype(np.int64)
    present = np.nonzero(counts)[0]
    present = present[ids[present] != 0]
    sums = np.zeros((present.size, 3), np.float64)
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = lab.shape[axis]
        coords = np.broadcast_to(np.arange(lab.shape[axis], dtype=np.float64).reshape(shape), lab.shape)
        sums[:, axis] = np.bincount(flat, weights=coords.ravel(), minlength=ids.size)[present]
        sums[:, axis] += counts[present] * origin[axis]
    direct = top < DIRECT_ID_LIMIT
    # find_objects skips label 0: direct ids are their own labels, relabelled ones are shifted by one
    slices = ndimage.find_objects(index if direct else index + 1, max_label=ids.size)
    boxes = [slices[i - 1] if direct else slices[i] for i in present]
    lo = np.asarray([[s.start + o for s, o in zip(b, origin)] for b in boxes], np.int64).reshape(-1, 3)
    hi = np.asarray([[s.stop + o for s, o in zip(b, origin)] for b in boxes], np.int64).reshape(-1, 3)
    psums = None
    if prob is not None:
        psums = np.stack([np.bincount(flat, weights=prob[c].ravel(), minlength=ids.size)[present]
                          for c in range(prob.shape[0])], axis=1).reshape(present.size, prob.shape[0])
    return ids[present], counts[present], sums, lo, hi, psums


def object_stats(
    seg: Any,
    prediction: Any = None,
    block_shape: Sequence[int] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> ObjectStats:
    """Per-object sums over ``seg``, one block at a time.

    Args:
        seg: ``(z, y, x)`` label array-like or Volume (``0`` = background).
        prediction: ``(c, z, y, x)`` probabilities (float, or uint8 scaled 0..255), same z, y, x shape.
        block_shape: voxels per block (default :data:`DEFAULT_BLOCK`, clipped to the volume).
        progress: ``callable(done, total)`` after every block.
    Raises:
        WorkbenchError: not a 3D label volume, or the prediction's shape does not match.
    """
    arr = array_of(seg)
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) != 3 or np.dtype(arr.dtype).kind not in "biu":
        raise WorkbenchError(f"expected a (z, y, x) integer label volume, got shape {shape} {arr.dtype}")
    pred = array_of(prediction) if prediction is not None else None
    if pred is not None and (len(pred.shape) != 4 or tuple(int(s) for s in pred.shape[1:]) != shape):
        raise WorkbenchError(f"the prediction's shape {tuple(pred.shape)} does not match the segmentation's {shape}")
    block = tuple(min(int(b), s) for b, s in zip(block_shape or DEFAULT_BLOCK, shape))
    blocks = list(Box.from_shape(shape).blocks(block))
    parts = []
    for n, (_, box) in enumerate(blocks):
        lab = np.asarray(arr[box.slices])
        if lab.dtype.kind == "i" and lab.size and lab.min() < 0:
            raise WorkbenchError("labels must be non-negative")
        prob = None
        if pred is not None:
            prob = np.asarray(pred[(slice(None), *box.slices)])
            prob = prob.astype(np.float32) / 255.0 if prob.dtype == np.uint8 else prob.astype(np.float32)
        parts.append(_block_stats(lab, box.start, prob))
        if progress is not None:
            progress(n + 1, len(blocks))
    return _merge(parts, shape, n_channels=None if pred is None else int(pred.shape[0]))


def _merge(parts: list, shape: tuple[int, int, int], n_channels: int | None) -> ObjectStats:
    """Combine per-block statistics into one row per object."""
    if parts:
        ids = np.concatenate([p[0] for p in parts])
    else:
        ids = np.zeros(0, np.uint64)
    uniq, inv = np.unique(ids, return_inverse=True)
    n = uniq.size
    voxels = np.zeros(n, np.int64)
    sums = np.zeros((n, 3), np.float64)
    lo = np.full((n, 3), np.iinfo(np.int64).max, np.int64)
    hi = np.zeros((n, 3), np.int64)
    psums = np.zeros((n, n_channels), np.float64) if n_channels is not None else None
    if n:
        np.add.at(voxels, inv, np.concatenate([p[1] for p in parts]))
        np.add.at(sums, inv, np.concatenate([p[2] for p in parts]))
        np.minimum.at(lo, inv, np.concatenate([p[3] for p in parts]))
        np.maximum.at(hi, inv, np.concatenate([p[4] for p in parts]))
        if psums is not None:
            np.add.at(psums, inv, np.concatenate([p[5] for p in parts]))
    return ObjectStats(uniq.astype(np.uint64), voxels, sums, lo, hi, psums, shape)


@dataclass(frozen=True)
class ObjectTable:
    """One row per object, columns :data:`COLUMNS` (plain data, no UI).

    Attributes:
        columns: ``{name: 1D array}`` for every name in :data:`COLUMNS`.
        voxel_size: ``(z, y, x)`` nm of the segmentation.
    """

    columns: dict
    voxel_size: tuple[float, float, float]

    def __len__(self) -> int:
        return len(self.columns["id"])

    def rows(self) -> list[dict]:
        """The table as a list of ``{column: value}`` dicts (Python scalars; NaN for a missing probability)."""
        cols = [(name, self.columns[name].tolist()) for name in COLUMNS]
        return [{name: values[i] for name, values in cols} for i in range(len(self))]

    def row(self, object_id: int) -> dict:
        """The row of ``object_id``.

        Raises:
            WorkbenchError: no such object.
        """
        hits = np.nonzero(self.columns["id"] == int(object_id))[0]
        if hits.size == 0:
            raise WorkbenchError(f"no object with id {object_id}")
        i = int(hits[0])
        return {name: _scalar(self.columns[name][i]) for name in COLUMNS}

    def to_dataframe(self):
        """A ``pandas.DataFrame`` with the columns :data:`COLUMNS` (pandas imported here)."""
        import pandas as pd

        return pd.DataFrame({name: self.columns[name] for name in COLUMNS})

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (header = :data:`COLUMNS`; an unknown probability is an empty cell)."""
        from workbench.atomic import atomic_open

        path = Path(path)
        with atomic_open(path, "w", newline="") as f:  # never half a table under ``path``
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for row in self.rows():
                writer.writerow([_csv_value(row[c]) for c in COLUMNS])
        return path


def _scalar(v):
    return v.item() if isinstance(v, np.generic) else v


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def store_root(path: str | Path) -> Path:
    """The label-image group of a segmentation path: ``SEG.zarr`` for ``SEG.zarr`` or its array
    ``SEG.zarr/0``."""
    path = Path(path)
    if (path / ".zarray").is_file():
        return path.parent
    try:
        if json.loads((path / "zarr.json").read_text()).get("node_type") == "array":
            return path.parent
    except (OSError, ValueError):
        pass
    return path


def segmentation_info(seg: Any) -> dict:
    """The ``workbench`` metadata of the label group a Volume was read from (``{}`` when none)."""
    source = str(getattr(seg, "source", "") or "")
    if not source or "[" in source or not Path(source).is_dir():
        return {}
    try:
        import zarr

        return dict(zarr.open_group(str(store_root(source)), mode="r").attrs.get("workbench") or {})
    except Exception:  # not a zarr group: no metadata
        return {}


def segmentation_class(seg: Any, channel_names: Sequence[str] | None = None) -> str:
    """The class the objects of ``seg`` were made from, from its ``workbench`` metadata.

    Connected components of a prediction channel: that channel's name (from ``channel_names`` or the
    prediction the metadata names); anything else: :data:`DEFAULT_CLASS`.
    """
    info = segmentation_info(seg)
    if info.get("method") != "cc" or info.get("channel") is None:
        return DEFAULT_CLASS
    names = list(channel_names or [])
    if not names and info.get("prediction"):
        try:
            from workbench.inference import read_info

            names = list(read_info(info["prediction"]).get("channel_names") or [])
        except WorkbenchError:
            names = []
    c = int(info["channel"])
    return str(names[c]) if 0 <= c < len(names) else DEFAULT_CLASS


def table_from_stats(
    stats: ObjectStats,
    voxel_size: Sequence[float],
    channel_names: Sequence[str] | None = None,
    default_class: str = DEFAULT_CLASS,
) -> ObjectTable:
    """The :class:`ObjectTable` of per-object sums (see the module docstring for classes)."""
    n = len(stats)
    vs = np.asarray([float(v) for v in voxel_size], np.float64)
    vox = stats.voxels.astype(np.int64)
    centroid = stats.coord_sums / np.maximum(vox, 1)[:, None]
    if stats.prob_sums is not None and stats.prob_sums.shape[1] > 0:
        means = stats.prob_sums / np.maximum(vox, 1)[:, None]
        best = np.argmax(means, axis=1) if n else np.zeros(0, np.int64)
        names = list(channel_names or [])
        names += [f"channel {i}" for i in range(len(names), means.shape[1])]
        classes = np.asarray([names[b] for b in best], dtype=object)
        mean_prob = means[np.arange(n), best] if n else np.zeros(0)
    else:
        classes = np.asarray([default_class] * n, dtype=object)
        mean_prob = np.full(n, np.nan)
    cols = {
        "id": stats.ids.astype(np.uint64),
        "class": classes,
        "voxels": vox,
        "volume_um3": vox * float(np.prod(vs)) / 1e9,
        "centroid_z": centroid[:, 0], "centroid_y": centroid[:, 1], "centroid_x": centroid[:, 2],
        "bbox_z0": stats.lo[:, 0], "bbox_y0": stats.lo[:, 1], "bbox_x0": stats.lo[:, 2],
        "bbox_z1": stats.hi[:, 0], "bbox_y1": stats.hi[:, 1], "bbox_x1": stats.hi[:, 2],
        "mean_probability": mean_prob.astype(np.float64),
    }
    return ObjectTable(cols, tuple(float(v) for v in vs))


def object_table(
    seg: Any,
    prediction: Any = None,
    voxel_size: Sequence[float] | None = None,
    channel_names: Sequence[str] | None = None,
    block_shape: Sequence[int] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> ObjectTable:
    """The object table of an instance segmentation.

    Args:
        seg: a label Volume, an array, or a path any :func:`workbench.io.open_volume` reads.
        prediction: a prediction store path (``PRED.zarr`` of ``workbench predict``) or a ``(c, z, y, x)``
            array; gives classes and ``mean_probability``.
        voxel_size: ``(z, y, x)`` nm (default: the Volume's, else 1 nm).
        channel_names: the prediction's channel names (default: read from the prediction store).
        block_shape, progress: see :func:`object_stats`.
    Raises:
        WorkbenchError: unreadable segmentation or prediction, shapes differ, not integer labels.
    """
    from workbench.io import open_volume
    from workbench.io.volume import Volume

    if isinstance(seg, (str, Path)):
        seg = open_volume(str(seg))
    if voxel_size is None:
        voxel_size = seg.voxel_size if isinstance(seg, Volume) else (1.0, 1.0, 1.0)
    pred = prediction
    if isinstance(prediction, (str, Path)):
        from workbench.inference import open_prediction, read_info

        pred = open_prediction(prediction)
        if channel_names is None:
            channel_names = list(read_info(prediction).get("channel_names") or [])
    where = getattr(seg, "source", None) or None
    try:
        stats = object_stats(seg, pred, block_shape, progress)
    except WorkbenchError as err:
        raise WorkbenchError(str(err), where if where and not str(err).startswith(str(where)) else None) from None
    return table_from_stats(stats, voxel_size, channel_names, default_class=segmentation_class(seg, channel_names))
