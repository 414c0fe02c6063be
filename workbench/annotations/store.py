"""The sparse label store: scribbles, filled slices and boxes, persisted as they happen, with undo.

Labels live in an NGFF label image (``data.zarr/labels/annotations``, small chunks so a stroke rewrites
few of them); every operation is appended to ``annotations.jsonl`` (the history) before the call returns.

Undo keeps the *previous contents* of what an operation touched rather than replaying the journal: replay
would cost time proportional to the whole history (and needs every imported file to still exist), while a
saved patch makes undo proportional to the edit. Local edits (strokes, fills, boxes) save the bounding box
they changed as a compressed ``.npz`` patch; whole-volume edits (clear, import, relabel) move the level-0
array aside as a snapshot, which is a rename, not a copy. Patches live in ``annotations.undo/`` next to the
journal; the oldest are dropped beyond ``undo_depth`` operations.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.annotations.raster import check_points, clip_box, stroke_mask
from workbench.atomic import append_line, atomic_save, drop_partial_tail, fsync_dir
from workbench.errors import WorkbenchError

log = logging.getLogger(__name__)

#: Zarr metadata files of an array (v2 and v3); copied to recreate an empty array of the same kind.
_META_FILES = ("zarr.json", ".zarray", ".zattrs")
DEFAULT_UNDO_DEPTH = 200


@dataclass(frozen=True)
class Edit:
    """What one operation did.

    Attributes:
        op_id: its number in the journal.
        op: ``"stroke"``, ``"erase"``, ``"fill_slice"``, ``"fill_box"``, ``"clear"``, ``"import"``,
            ``"relabel"`` or ``"undo"``.
        region: the (z, y, x) slices it may have changed (the whole volume for whole-volume operations).
        changed: how many voxels changed value.
    """

    op_id: int
    op: str
    region: tuple[slice, slice, slice]
    changed: int


class _Shared:
    """In-process state shared by every LabelStore open on the same label image."""

    def __init__(self):
        self.lock = threading.RLock()
        self.loaded = False
        self.next_id = 0
        self.undo_stack: list[tuple[int, str]] = []  # (op id, "patch" | "snapshot"), oldest first
        self.counts: Counter | None = None
        self.version = 0
        self.listeners: list[Callable[[Edit], None]] = []


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared_for(path: Path) -> _Shared:
    key = str(path.resolve())
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, _Shared())


def _ome_attrs(attrs: dict) -> dict:
    """The NGFF metadata dict of a group's attributes (zarr v3 nests it under ``ome``)."""
    return attrs.get("ome", attrs)


def _level0_path(group_path: Path) -> Path:
    """Path of the full-resolution array of an NGFF (label) image group."""
    import zarr

    group = zarr.open_group(str(group_path), mode="r")
    ms = _ome_attrs(dict(group.attrs)).get("multiscales")
    if not ms:
        raise WorkbenchError("not an NGFF image (no multiscales metadata)", group_path)
    return group_path / ms[0]["datasets"][0]["path"]


class _LockedReader:
    """Array-like view of the labels that reads under the store's lock (for training and viewers)."""

    def __init__(self, store: LabelStore):
        self._store = store
        self.shape = store.shape
        self.dtype = store.dtype
        self.ndim = 3
        self.chunks = store.chunks

    def __getitem__(self, key):
        with self._store._shared.lock:
            return np.asarray(self._store._array[key])

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class LabelStoreOptions:
    """How :meth:`LabelStore.create` makes a new label image, checked when created.

    Attributes:
        dtype: ``uint8`` (up to 255 classes) or ``uint16``.
        chunks: storage chunks, default ``(1, 256, 256)`` so a stroke rewrites few chunks.
        colors: optional ``{label: "#rrggbb"}`` written as NGFF ``image-label`` colours.
        undo_dir: where undo snapshots go (see :class:`LabelStore`). undo_depth: edits that can be undone.

    Raises:
        WorkbenchError: another dtype.
    """

    dtype: str = "uint8"
    chunks: tuple[int, int, int] | None = None
    colors: dict[int, str] | None = None
    undo_dir: str | Path | None = None
    undo_depth: int = DEFAULT_UNDO_DEPTH

    def __post_init__(self) -> None:
        if np.dtype(self.dtype) not in (np.dtype("uint8"), np.dtype("uint16")):
            raise WorkbenchError(f"annotation labels must be uint8 or uint16, got {self.dtype}")


class LabelStore:
    """Sparse labels (0 = unlabelled, 1..K = classes) of one project, thread-safe and persisted per call.

    Every store opened on the same label image in a process shares one lock, undo history and class
    counts, so the UI and a training thread can use separate instances. One process edits at a time.

    Args:
        group_path: the NGFF label image group (e.g. ``project/data.zarr/labels/annotations``).
        journal_path: the append-only history (``annotations.jsonl``).
        undo_dir: where previous contents are kept for undo (default: ``<journal>.undo`` beside it).
        undo_depth: how many operations can be undone.

    Raises:
        WorkbenchError: the label image cannot be opened.
    """

    def __init__(self, group_path, journal_path, undo_dir=None, undo_depth: int = DEFAULT_UNDO_DEPTH):
        import zarr

        self.group_path = Path(group_path)
        self.journal_path = Path(journal_path)
        self.undo_dir = Path(undo_dir) if undo_dir is not None else self.journal_path.with_suffix(".undo")
        self.undo_depth = int(undo_depth)
        self._shared = _shared_for(self.group_path)
        with self._shared.lock:
            try:
                self._level0 = _level0_path(self.group_path)
            except WorkbenchError:
                raise
            except Exception as exc:
                raise WorkbenchError(f"cannot open the annotation labels ({exc})", self.group_path) from None
            if not self._shared.loaded:
                undone = self._load_journal()
                self._recover(undone)  # before opening: an interrupted edit may have the labels renamed aside
            try:
                self._array = zarr.open_array(str(self._level0), mode="r+")
            except Exception as exc:
                raise WorkbenchError(f"cannot open the annotation labels ({exc})", self.group_path) from None
            if self._array.ndim != 3 or self._array.dtype.kind != "u":
                raise WorkbenchError(f"annotation labels must be a 3D unsigned integer array, got "
                                     f"{self._array.ndim}D {self._array.dtype}", self._level0)
            self._shared.loaded = True

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, group_path, journal_path, shape, voxel_size=(1.0, 1.0, 1.0),
               options: LabelStoreOptions | None = None) -> LabelStore:
        """Create an empty NGFF label image and open a store on it.

        Args:
            group_path: where the label image group goes (under an OME-Zarr ``labels/`` group).
            journal_path: the history file (created empty).
            shape, voxel_size: those of the raw volume (z, y, x).
            options: :class:`LabelStoreOptions` (dtype, chunks, colours, undo folder and depth).
        """
        o = options or LabelStoreOptions()
        create_label_image(group_path, journal_path, shape, voxel_size, o)
        return cls(group_path, journal_path, undo_dir=o.undo_dir, undo_depth=o.undo_depth)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def chunks(self) -> tuple[int, int, int]:
        return tuple(int(c) for c in self._array.chunks)

    @property
    def max_label(self) -> int:
        return int(np.iinfo(self.dtype).max)

    @property
    def version(self) -> int:
        """Increases with every change (a cheap "did the labels change?" check for a training loop)."""
        return self._shared.version

    @property
    def lock(self) -> threading.RLock:
        """The lock every operation takes; hold it to read several regions consistently."""
        return self._shared.lock

    def as_array(self) -> _LockedReader:
        """A read-only array-like over the labels whose reads take the lock (wrap in a Volume for training)."""
        return _LockedReader(self)

    def as_volume(self, voxel_size=None):
        """The labels as a lazy :class:`~workbench.io.volume.Volume` whose reads take the lock.

        ``voxel_size`` defaults to the one in the label image's NGFF metadata.
        """
        import zarr

        from workbench.io.volume import Volume

        if voxel_size is None:
            attrs = dict(zarr.open_group(str(self.group_path), mode="r").attrs)
            ds = _ome_attrs(attrs)["multiscales"][0]["datasets"][0]
            scale = next((t["scale"] for t in ds.get("coordinateTransformations", []) if t.get("type") == "scale"),
                         (1.0, 1.0, 1.0))
            voxel_size = tuple(scale[-3:])
        return Volume(self.as_array(), voxel_size=voxel_size, name="annotations", source=str(self.group_path))

    def on_change(self, callback: Callable[[Edit], None]) -> None:
        """Call ``callback(edit)`` after every change (from the thread that made it)."""
        with self._shared.lock:
            self._shared.listeners.append(callback)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.group_path)!r}, shape={self.shape}, dtype={self.dtype})"

    # ------------------------------------------------------------------ reading
    def read(self, region=None) -> np.ndarray:
        """Labels of ``region`` (a tuple of slices/ints in z, y, x; None = everything) as a numpy array."""
        with self._shared.lock:
            return np.asarray(self._array[... if region is None else region])

    def __getitem__(self, key) -> np.ndarray:
        return self.read(key)

    def counts(self) -> dict[int, int]:
        """Labelled voxels per class: ``{label: voxels}`` for labels > 0 present in the volume."""
        with self._shared.lock:
            if self._shared.counts is None:
                self._shared.counts = self._scan_counts()
            return {int(k): int(v) for k, v in sorted(self._shared.counts.items()) if k > 0 and v > 0}

    def _slabs(self):
        step = max(1, self.chunks[0]) * max(1, 64 // max(1, self.chunks[0]))
        for z0 in range(0, self.shape[0], step):
            yield slice(z0, min(self.shape[0], z0 + step))

    def _scan_counts(self) -> Counter:
        counts: Counter = Counter()
        for zs in self._slabs():
            bc = np.bincount(np.asarray(self._array[zs]).ravel())
            counts.update({i: int(n) for i, n in enumerate(bc) if n})
        return counts

    # ------------------------------------------------------------------ editing
    def _check_label(self, label, allow_zero=False) -> int:
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise WorkbenchError(f"a label must be an integer class id, got {label!r}")
        lo = 0 if allow_zero else 1
        if not lo <= int(label) <= self.max_label:
            raise WorkbenchError(f"label {label} is out of range {lo}..{self.max_label}"
                                 + ("" if allow_zero else " (use an erase operation for 0)"))
        return int(label)

    def add_stroke(self, points_zyx, label: int, width: float = 3, plane: str = "xy") -> Edit:
        """Paint a polyline with a round brush.

        Args:
            points_zyx: (N, 3) float voxel coordinates (z, y, x); parts outside the volume are clipped.
            label: class id (1..max).
            width: brush diameter in voxels.
            plane: ``"xy"`` (disk in each point's slice) or ``"3d"`` (ball).
        """
        label = self._check_label(label)
        return self._paint_stroke("stroke", points_zyx, label, width, plane)

    def erase_stroke(self, points_zyx, width: float = 3, plane: str = "xy") -> Edit:
        """Unlabel (set to 0) the voxels a brush stroke covers."""
        return self._paint_stroke("erase", points_zyx, 0, width, plane)

    def _paint_stroke(self, op, points_zyx, label, width, plane) -> Edit:
        pts = check_points(points_zyx)
        hit = stroke_mask(pts, width, plane, self.shape)
        record = {"op": op, "label": label, "width": float(width), "plane": plane,
                  "points": np.round(pts, 3).tolist()}
        if hit is None:
            return self._apply_local(record, None, None, label)
        region, mask = hit
        return self._apply_local(record, region, mask, label)

    def fill_slice(self, index: int, label: int, axis: int = 0) -> Edit:
        """Label a whole slice (``index`` along ``axis``: 0 = z, 1 = y, 2 = x) with ``label`` (0 erases it)."""
        label = self._check_label(label, allow_zero=True)
        if axis not in (0, 1, 2):
            raise WorkbenchError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis}")
        if not 0 <= int(index) < self.shape[axis]:
            raise WorkbenchError(f"slice {index} is outside 0..{self.shape[axis] - 1} along axis {axis}")
        region = [slice(0, n) for n in self.shape]
        region[axis] = slice(int(index), int(index) + 1)
        record = {"op": "fill_slice", "label": label, "index": int(index), "axis": int(axis)}
        return self._apply_local(record, tuple(region), None, label)

    def fill_box(self, start, stop, label: int) -> Edit:
        """Label the half-open box ``start:stop`` (z, y, x), clipped to the volume (0 erases it)."""
        label = self._check_label(label, allow_zero=True)
        region = clip_box(start, stop, self.shape)
        record = {"op": "fill_box", "label": label, "start": [float(s) for s in start],
                  "stop": [float(s) for s in stop]}
        return self._apply_local(record, region, None, label)

    def accept_region(self, start, stop, labels, source: str = "prediction") -> Edit:
        """Take ``labels`` (e.g. the model's class map) as annotations inside the box ``start:stop``.

        Voxels the user already labelled keep their label; 0 in ``labels`` writes nothing. The edit is
        journalled as ``accept`` with its ``source`` and undone like a stroke.

        Args:
            start, stop: the half-open box (z, y, x); it must lie inside the volume.
            labels: integer array of the box's shape, classes 0..max.
            source: what the labels come from (kept in the journal).

        Raises:
            WorkbenchError: a box outside the volume, labels of another shape or with unknown classes.
        """
        start = [int(v) for v in start]
        stop = [int(v) for v in stop]
        if any(a < 0 or b > n or a >= b for a, b, n in zip(start, stop, self.shape)) or len(start) != 3:
            raise WorkbenchError(f"box {start}..{stop} is not inside the volume {self.shape}")
        region = tuple(slice(a, b) for a, b in zip(start, stop))
        labels = np.asarray(labels)
        if labels.shape != tuple(b - a for a, b in zip(start, stop)):
            raise WorkbenchError(f"labels of shape {labels.shape} do not fill the box {start}..{stop}")
        top = int(labels.max()) if labels.size else 0
        if top > self.max_label or (labels.size and int(labels.min()) < 0):
            raise WorkbenchError(f"labels to accept use class {top}, outside 0..{self.max_label}")
        labels = labels.astype(self.dtype, copy=False)
        with self._shared.lock:
            mask = (labels > 0) & (np.asarray(self._array[region]) == 0)
            record = {"op": "accept", "source": str(source), "start": start, "stop": stop}
            return self._apply_local(record, region, mask, labels)

    def _apply_local(self, record, region, mask, label) -> Edit:
        """Write ``label`` (a class id, or an array of the region's shape) where ``mask`` (all of ``region``
        when None), saving the previous contents."""
        with self._shared.lock:
            op_id = self._shared.next_id
            if region is None:
                return self._commit(op_id, record, None, None, 0, None)
            before = np.asarray(self._array[region])
            after = before.copy()
            per_voxel = isinstance(label, np.ndarray)
            if mask is None:
                after[...] = label
            else:
                after[mask] = label[mask] if per_voxel else label
            diff = before != after
            changed = int(np.count_nonzero(diff))
            undo = None
            if changed:
                self._save_patch(op_id, region, before)
                self._array[region] = after
                undo = "patch"
            delta = Counter()
            if changed:
                delta.update({int(k): -int(n) for k, n in zip(*np.unique(before[diff], return_counts=True))})
                if per_voxel:
                    delta.update({int(k): int(n) for k, n in zip(*np.unique(after[diff], return_counts=True))})
                else:
                    delta[int(label)] += changed
            return self._commit(op_id, record, region, undo, changed, delta)

    def clear(self) -> Edit:
        """Remove every label (undoable)."""
        with self._shared.lock:
            op_id = self._shared.next_id
            changed = sum(self.counts().values())
            undo = None
            if changed:
                self._replace_all(op_id, None)
                undo = "snapshot"
            self._shared.counts = Counter({0: int(np.prod(self.shape))})
            return self._commit(op_id, {"op": "clear"}, self._full(), undo, changed, None)

    def relabel(self, old: int, new: int) -> Edit:
        """Change every voxel labelled ``old`` to ``new`` (0 unlabels them); undoable."""
        old = self._check_label(old)
        new = self._check_label(new, allow_zero=True)

        def fill(src, dst, zs):
            block = np.asarray(src[zs])
            block[block == old] = new
            return block

        with self._shared.lock:
            op_id = self._shared.next_id
            changed = self.counts().get(old, 0) if old != new else 0
            undo = None
            if changed:
                self._replace_all(op_id, fill)
                undo = "snapshot"
            return self._commit(op_id, {"op": "relabel", "old": old, "new": new}, self._full(), undo,
                                changed, None)

    def import_labels(self, labels, merge: bool = False) -> Edit:
        """Replace the labels with an existing label volume (undoable).

        Args:
            labels: a ``Volume``, a numpy array (z, y, x) or a path any reader of ``workbench.io`` opens.
                Non-negative integers of the raw's shape; 0 = unlabelled.
            merge: keep the current labels where the imported ones are 0.

        Raises:
            WorkbenchError: wrong shape, not integers, negative values or values beyond the label dtype.
        """
        from workbench.io.volume import Volume

        source = ""
        if isinstance(labels, (str, os.PathLike)):
            from workbench.io import open_volume

            source = str(labels)
            labels = open_volume(source)
        if isinstance(labels, Volume):
            source = source or labels.source
            data = labels.data
        else:
            data = np.asarray(labels)
            if data.ndim == 2:
                data = data[None]
        where = source or None
        shape = tuple(int(s) for s in data.shape)
        if shape != self.shape:
            raise WorkbenchError(f"labels have shape {shape}, the volume has {self.shape}", where)
        dt = np.dtype(data.dtype)
        if dt.kind not in "iub":
            raise WorkbenchError(f"labels must be integers (class ids), got {dt}", where)
        with self._shared.lock:
            op_id = self._shared.next_id
            # validate everything before changing anything
            for zs in self._slabs():
                block = np.asarray(data[zs])
                if block.size and dt.kind == "i" and block.min() < 0:
                    raise WorkbenchError(f"labels must be non-negative, found {int(block.min())}", where)
                if block.size and int(block.max()) > self.max_label:
                    raise WorkbenchError(f"label {int(block.max())} does not fit the {self.dtype} annotations "
                                         f"(max {self.max_label})", where)

            def fill(src, dst, zs):
                block = np.asarray(data[zs]).astype(self.dtype)
                return np.where(block > 0, block, np.asarray(src[zs])) if merge else block

            changed = self._replace_all(op_id, fill)
            record = {"op": "import", "source": source or "<array>", "merge": bool(merge), "dtype": str(dt)}
            return self._commit(op_id, record, self._full(), "snapshot", changed, None)

    # ------------------------------------------------------------------ undo
    def can_undo(self) -> bool:
        with self._shared.lock:
            return bool(self._shared.undo_stack)

    def undo(self) -> Edit | None:
        """Revert the most recent operation that is not undone yet; None when there is nothing to undo."""
        with self._shared.lock:
            while self._shared.undo_stack:
                target, kind = self._shared.undo_stack.pop()
                if kind == "patch":
                    path = self._patch_path(target)
                    if not path.exists():
                        log.warning("undo data for operation %d is missing; skipped", target)
                        continue
                    try:
                        with np.load(path) as f:
                            before, start = f["before"], f["start"]
                        if before.ndim != 3 or start.shape != (3,):
                            raise ValueError(f"shapes {before.shape} {start.shape}")
                    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
                        log.warning("undo data for operation %d is damaged (%s); skipped", target, err)
                        continue
                    region = tuple(slice(int(s), int(s) + n) for s, n in zip(start, before.shape))
                    current = np.asarray(self._array[region])
                    diff = current != before
                    changed = int(np.count_nonzero(diff))
                    # what the labels are now, kept until the undo is journalled (a kill in between rolls back)
                    redo = self._redo_path(target)
                    atomic_save(redo, lambda f, c=current, s=start: np.savez_compressed(f, before=c, start=s))
                    self._array[region] = before
                    if self._shared.counts is not None:
                        self._shared.counts.update({int(k): -int(n) for k, n in
                                                    zip(*np.unique(current[diff], return_counts=True))})
                        self._shared.counts.update({int(k): int(n) for k, n in
                                                    zip(*np.unique(before[diff], return_counts=True))})
                    done = (path, redo)
                else:
                    snap = self._snapshot_path(target)
                    if not snap.exists():
                        log.warning("undo data for operation %d is missing; skipped", target)
                        continue
                    import zarr

                    trash = self._undone_path(target)
                    os.replace(self._level0, trash)
                    os.replace(snap, self._level0)
                    self._reopen()
                    undone = zarr.open_array(str(trash), mode="r")
                    changed, counts = 0, Counter()
                    for zs in self._slabs():  # one pass for the change count and the class counts
                        block = np.asarray(self._array[zs])
                        changed += int(np.count_nonzero(block != np.asarray(undone[zs])))
                        counts.update({i: int(n) for i, n in enumerate(np.bincount(block.ravel())) if n})
                    self._shared.counts = counts
                    region = self._full()
                    done = (trash,)
                op_id = self._shared.next_id
                edit = self._commit(op_id, {"op": "undo", "undoes": target}, region, None, changed, None,
                                    push=False)
                for leftover in done:  # removed only once the undo is journalled
                    _remove_path(leftover)
                return edit
            return None

    # ------------------------------------------------------------------ metadata
    def set_colors(self, colors: dict[int, str]) -> None:
        """Write class colours (``{label: "#rrggbb"}``) into the NGFF ``image-label`` metadata."""
        with self._shared.lock:
            _write_colors(self.group_path, colors)

    # ------------------------------------------------------------------ internals
    def _full(self) -> tuple[slice, slice, slice]:
        return tuple(slice(0, n) for n in self.shape)

    def _patch_path(self, op_id: int) -> Path:
        return self.undo_dir / f"{op_id:08d}.npz"

    def _snapshot_path(self, op_id: int) -> Path:
        return self.undo_dir / f"{op_id:08d}.snapshot"

    def _redo_path(self, op_id: int) -> Path:
        return self.undo_dir / f"{op_id:08d}.redo.npz"

    def _undone_path(self, op_id: int) -> Path:
        return self._level0.with_name(self._level0.name + f".undone-{op_id}")

    def _save_patch(self, op_id, region, before) -> None:
        self.undo_dir.mkdir(parents=True, exist_ok=True)
        path = self._patch_path(op_id)
        start = np.array([s.start for s in region], dtype=np.int64)
        atomic_save(path, lambda f: np.savez_compressed(f, before=before, start=start))

    def _replace_all(self, op_id, fill) -> int:
        """Swap in a new level-0 array; the current one becomes the undo snapshot (a rename, not a copy).

        The new array is written beside the current one (``fill(old, new, z_slab) -> block`` per slab;
        None leaves it empty) and renamed into place when complete, so a failure leaves the labels as
        they were. Updates the counts. Returns how many voxels changed.
        """
        import zarr

        tmp = self._level0.with_name(f"{self._level0.name}.new-{op_id}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            for name in _META_FILES:
                if (self._level0 / name).exists():
                    shutil.copy2(self._level0 / name, tmp / name)
            changed = 0
            counts: Counter = Counter()
            if fill is not None:
                new = zarr.open_array(str(tmp), mode="r+")
                for zs in self._slabs():
                    block = fill(self._array, new, zs)
                    changed += int(np.count_nonzero(block != np.asarray(self._array[zs])))
                    if np.any(block):
                        new[zs] = block
                    bc = np.bincount(block.ravel())
                    counts.update({i: int(n) for i, n in enumerate(bc) if n})
            else:
                changed = sum(self.counts().values())
                counts[0] = int(np.prod(self.shape))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.undo_dir.mkdir(parents=True, exist_ok=True)
        snap = self._snapshot_path(op_id)
        if snap.exists():
            shutil.rmtree(snap)
        os.replace(self._level0, snap)
        os.replace(tmp, self._level0)
        fsync_dir(self._level0.parent)
        self._reopen()
        self._shared.counts = counts
        return changed

    def _reopen(self) -> None:
        import zarr

        self._array = zarr.open_array(str(self._level0), mode="r+")

    def _commit(self, op_id, record, region, undo, changed, delta, push=True) -> Edit:
        """Journal the operation, update the shared state, tell the listeners. Called with the lock held."""
        record = {"id": op_id, "time": round(time.time(), 3), **record, "changed": changed, "undo": undo}
        if region is not None:
            record["region"] = [[s.start, s.stop] for s in region]
        line = json.dumps(record, separators=(",", ":"))
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.journal_path, line)  # one write + fsync: the edit is acknowledged once this returns
        sh = self._shared
        sh.next_id = op_id + 1
        if delta and sh.counts is not None:
            sh.counts.update(delta)
        if push and undo:
            sh.undo_stack.append((op_id, undo))
            self._prune()
        sh.version += 1
        edit = Edit(op_id, record["op"], region if region is not None else (slice(0, 0),) * 3, changed)
        for cb in list(sh.listeners):
            try:
                cb(edit)
            except Exception:  # a broken listener must not break labelling
                log.exception("annotation listener failed")
        return edit

    def _prune(self) -> None:
        stack = self._shared.undo_stack
        while len(stack) > self.undo_depth:
            op_id, kind = stack.pop(0)
            path = self._patch_path(op_id) if kind == "patch" else self._snapshot_path(op_id)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _recover(self, undone: set[int]) -> None:
        """Bring the labels back in step with the journal after a process was killed mid-edit.

        An edit is acknowledged when its journal line is written. Whatever an edit or undo did before that
        (a patch, a swapped-in array, a reverted region) is rolled back from the undo data it saved first;
        what a journalled undo left to delete is deleted. ``undone``: the operations the journal undid.
        """
        import zarr

        level0, next_id = self._level0, self._shared.next_id
        for path in level0.parent.glob(f"{level0.name}.new-*"):  # a whole-volume edit still being written
            shutil.rmtree(path, ignore_errors=True)
        for path in level0.parent.glob(f"{level0.name}.undone-*"):
            target = int(path.name.rsplit("-", 1)[1])
            if target in undone:  # the undo was journalled: this is what it replaced
                shutil.rmtree(path, ignore_errors=True)
                continue
            log.warning("rolling back an undo of operation %d that was not journalled", target)
            if level0.exists():
                os.replace(level0, self._snapshot_path(target))
            os.replace(path, level0)
        if not self.undo_dir.exists():
            if not level0.exists():
                raise WorkbenchError("the annotation labels are missing", level0)
            return
        for path in self.undo_dir.glob("*.tmp"):
            path.unlink(missing_ok=True)
        for path in sorted(self.undo_dir.glob("*.snapshot"), reverse=True):
            if int(path.name.split(".")[0]) >= next_id:  # a whole-volume edit that was not journalled
                log.warning("rolling back operation %s that was not journalled", path.name.split(".")[0])
                if level0.exists():
                    shutil.rmtree(level0)
                os.replace(path, level0)
        if not level0.exists():
            raise WorkbenchError("the annotation labels are missing", level0)
        array = None
        redo = sorted(self.undo_dir.glob("*.redo.npz"), reverse=True)
        patches = [p for p in sorted(self.undo_dir.glob("*.npz"), reverse=True)
                   if not p.name.endswith(".redo.npz") and int(p.name.split(".")[0]) >= next_id]
        for path in redo + patches:
            target = int(path.name.split(".")[0])
            if path in redo and target in undone:
                path.unlink(missing_ok=True)
                self._patch_path(target).unlink(missing_ok=True)
                continue
            log.warning("rolling back an edit (%s) that was not journalled", path.name)
            if array is None:
                array = zarr.open_array(str(level0), mode="r+")
            try:
                with np.load(path) as f:
                    before, start = f["before"], f["start"]
            except Exception:  # undo data of an edit that never reached the labels
                path.unlink(missing_ok=True)
                continue
            array[tuple(slice(int(s), int(s) + n) for s, n in zip(start, before.shape))] = before
            path.unlink(missing_ok=True)

    def _load_journal(self) -> set[int]:
        """Rebuild the undo stack and the next id from the journal (after a restart); returns the undone ids.

        A last line without its newline (an append cut short by a kill, never acknowledged) is dropped first.
        """
        sh = self._shared
        stack: list[tuple[int, str]] = []
        undone: set[int] = set()
        next_id = 0
        if self.journal_path.exists():
            if drop_partial_tail(self.journal_path):
                log.warning("%s: an unfinished last line was dropped", self.journal_path)
            with open(self.journal_path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except (json.JSONDecodeError, RecursionError):
                        log.warning("%s:%d: unreadable journal line skipped", self.journal_path, n)
                        continue
                    if not isinstance(rec, dict) or not isinstance(rec.get("id"), int) or rec["id"] < 0:
                        log.warning("%s:%d: journal line without an operation id skipped", self.journal_path, n)
                        continue
                    next_id = max(next_id, rec["id"] + 1)
                    if rec.get("op") == "undo":
                        target = rec.get("undoes")
                        stack = [e for e in stack if e[0] != target]
                        if isinstance(target, int):
                            undone.add(target)
                    elif rec.get("undo") in ("patch", "snapshot"):
                        stack.append((rec["id"], rec["undo"]))
        sh.undo_stack = stack[-self.undo_depth:] if self.undo_depth > 0 else []
        sh.next_id = next_id
        return undone

    def history(self) -> list[dict]:
        """Every journal record, oldest first."""
        with self._shared.lock:
            if not self.journal_path.exists():
                return []
            out = []
            with open(self.journal_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except (json.JSONDecodeError, RecursionError):
                        continue
                    if isinstance(rec, dict):
                        out.append(rec)
            return out


def create_label_image(group_path, journal_path, shape, voxel_size=(1.0, 1.0, 1.0),
                       options: LabelStoreOptions | None = None) -> None:
    """Write an empty NGFF label image (renamed into place when complete) and an empty journal, unopened.

    Args: as :meth:`LabelStore.create`.
    """
    from workbench.io.omezarr import WriteOptions, create_ome_zarr_image

    o = options or LabelStoreOptions()
    shape = tuple(int(s) for s in shape)
    chunks = o.chunks or (1, min(256, shape[1]), min(256, shape[2]))
    # one level: strokes rewrite level 0 only, so there is no pyramid to keep in step
    image = create_ome_zarr_image(Path(group_path), shape, np.dtype(o.dtype),
                                  WriteOptions(voxel_size=tuple(voxel_size), chunks=tuple(chunks), levels=1,
                                               labels=True))
    image.finalize()
    if o.colors:
        _write_colors(Path(group_path), dict(o.colors))
    journal_path = Path(journal_path)
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    journal_path.touch()


def _write_colors(group_path: Path, colors: dict[int, str]) -> None:
    import zarr

    group = zarr.open_group(str(group_path), mode="r+")
    attrs = dict(group.attrs)
    ome = _ome_attrs(attrs)
    entry = [{"label-value": int(k), "rgba": _hex_to_rgba(c)} for k, c in sorted(colors.items())]
    il = dict(ome.get("image-label", {}))
    il["colors"] = entry
    ome = dict(ome)
    ome["image-label"] = il
    if "ome" in attrs:
        group.attrs["ome"] = ome
    else:
        group.attrs["image-label"] = il


def _remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _hex_to_rgba(color: str) -> list[int]:
    from workbench.classes import hex_to_rgb

    return [*hex_to_rgb(color), 255]
