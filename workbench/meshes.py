"""Surface meshes of segmented objects, in Neuroglancer's legacy precomputed mesh format.

Each object is meshed from its own bounding box (grown by one voxel and closed with background, so objects
touching the volume's border get closed surfaces) by marching cubes, then optionally smoothed (Laplacian,
``smooth`` iterations) and simplified (quadric edge collapses removing the fraction ``simplify`` of the
faces, by ``fast-simplification``). Marching cubes and smoothing come from ``bioimage-cpp`` when it is
installed, else from scikit-image and numpy. (``bioimage-cpp``'s own simplifier was ~100x slower here:
0.3 s for a mesh of 4,400 triangles, against 2 million triangles per second.) Objects are read in groups: the objects whose bounding boxes start in one ``tile`` of
the y-x plane are meshed from one read of the union of their boxes, so memory holds one such region (at
most a tile plus the largest object's extent) and its meshes, however many objects there are.

The cache beside a segmentation ``SEG.zarr`` is ``SEG.zarr/meshes/`` (``MESH_DIR``; in a project
``data.zarr/segmentation/<run>/meshes/``), a legacy precomputed mesh directory any Neuroglancer reads
(zarr readers ignore the folder: it holds no zarr metadata):

- ``info``: ``{"@type": "neuroglancer_legacy_mesh", "workbench": {smooth, simplify, voxel_size, ...}}``;
- ``<id>:0``: the manifest ``{"fragments": ["<id>.frag"]}`` (a rewritten mesh: ``<id>.<stamp>.frag``);
- ``<id>.frag``: ``uint32`` vertex count, ``float32`` vertices ``(x, y, z)`` in nanometres (voxel centres at
  ``(i + 0.5) * voxel size``), ``uint32`` triangle indices; all little-endian.

Rewriting the segmentation (``workbench segment --overwrite``) replaces the whole store, cache included.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.objects import ObjectStats, array_of, object_stats, store_root

log = logging.getLogger(__name__)

#: Name of the mesh folder inside a segmentation store.
MESH_DIR = "meshes"
#: ``@type`` of a legacy precomputed mesh directory's ``info``.
LEGACY_MESH_TYPE = "neuroglancer_legacy_mesh"


@dataclass(frozen=True)
class MeshOptions:
    """How objects are meshed.

    Attributes:
        smooth: Laplacian smoothing iterations (0 = none).
        simplify: fraction of the faces to remove by edge collapses, in [0, 1) (0 = none).
        tile: y-x size (voxels) of the tiles that group objects into one read.
        workers: threads meshing groups at once.

    Raises:
        ValueError: an option out of range.
    """

    smooth: int = 0
    simplify: float = 0.0
    tile: int = 256
    workers: int = 2

    def __post_init__(self) -> None:
        if int(self.smooth) < 0:
            raise ValueError(f"smooth must be >= 0 iterations, got {self.smooth}")
        if not 0.0 <= float(self.simplify) < 1.0:
            raise ValueError(f"simplify must be a fraction in [0, 1), got {self.simplify}")
        if int(self.tile) < 1 or int(self.workers) < 1:
            raise ValueError("tile and workers must be positive")


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``vertices`` ``(n, 3)`` float32 in nanometres, ``(z, y, x)`` order; ``faces``
    ``(m, 3)`` uint32 vertex indices."""

    vertices: np.ndarray
    faces: np.ndarray

    def encode(self, order: str = "xyz", scale: float = 1.0) -> bytes:
        """The legacy precomputed fragment: ``uint32`` count, ``float32`` vertices, ``uint32`` indices.

        Args:
            order: ``"xyz"`` (precomputed files) or ``"zyx"`` (the python-served source, whose model
                axes are z, y, x).
            scale: multiplies the nanometre coordinates (``1e-9`` gives metres).
        """
        v = self.vertices[:, ::-1] if order == "xyz" else self.vertices
        v = np.ascontiguousarray(v * scale, dtype="<f4")
        return struct.pack("<I", v.shape[0]) + v.tobytes() + np.ascontiguousarray(self.faces, dtype="<u4").tobytes()

    @classmethod
    def decode(cls, data: bytes, order: str = "xyz") -> Mesh:
        """Read a legacy precomputed fragment back (vertices returned as ``(z, y, x)``)."""
        (n,) = struct.unpack_from("<I", data, 0)
        v = np.frombuffer(data, dtype="<f4", count=3 * n, offset=4).reshape(n, 3)
        f = np.frombuffer(data, dtype="<u4", offset=4 + 12 * n).reshape(-1, 3)
        return cls(np.array(v[:, ::-1] if order == "xyz" else v, dtype=np.float32), np.array(f, dtype=np.uint32))


def _bic_mesh():
    try:
        import bioimage_cpp.mesh as bic_mesh

        return bic_mesh
    except ImportError:
        return None


def _laplacian(verts: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Each vertex replaced by the mean of itself and its neighbours, ``iterations`` times (numpy)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    degree = np.bincount(edges.ravel(), minlength=len(verts)).astype(np.float64)[:, None] + 1.0
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    v = verts.astype(np.float64)
    for _ in range(iterations):
        acc = np.stack([np.bincount(src, weights=v[dst, k], minlength=len(v)) for k in range(3)], axis=1)
        v = (v + acc) / degree
    return v.astype(verts.dtype)


def mesh_mask(mask: np.ndarray, origin: Sequence[int], voxel_size: Sequence[float],
              options: MeshOptions | None = None) -> Mesh:
    """The surface of a binary ``mask`` whose voxel ``[0, 0, 0]`` sits at voxel index ``origin``.

    The mask must have a background border (see :func:`mesh_objects`). Returns an empty mesh for an
    empty mask.

    """
    o = options or MeshOptions()
    vs = np.asarray([float(v) for v in voxel_size], np.float64)
    if not mask.any():
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32))
    bic = _bic_mesh()
    field = mask.astype(np.float32)
    if bic is not None:
        verts, faces, normals, _ = bic.marching_cubes(field, 0.5, allow_degenerate=False)
    else:
        from skimage.measure import marching_cubes

        verts, faces, normals, _ = marching_cubes(field, 0.5, allow_degenerate=False)
    verts = np.asarray(verts, np.float32)
    normals = np.asarray(normals, np.float32)
    faces = np.asarray(faces, np.int64)
    # smooth in voxel units scaled to nm, so anisotropic voxels smooth evenly in space
    verts = (verts + np.asarray(origin, np.float32) + 0.5) * vs.astype(np.float32)
    if o.smooth:
        if bic is not None:
            verts, _ = bic.smooth_mesh(verts, normals, faces, int(o.smooth), n_threads=1)
        else:
            verts = _laplacian(verts, faces, int(o.smooth))
    if o.simplify > 0 and len(faces) > 8:
        import fast_simplification

        verts, faces = fast_simplification.simplify(np.asarray(verts, np.float32), faces.astype(np.int32),
                                                    target_reduction=float(o.simplify))
    return Mesh(np.asarray(verts, np.float32), np.asarray(faces, np.uint32))


def _groups(stats: ObjectStats, rows: np.ndarray, tile: int) -> list[np.ndarray]:
    """Rows grouped by the y-x tile their bounding box starts in; big objects alone."""
    if rows.size == 0:
        return []
    extent = (stats.hi[rows] - stats.lo[rows])[:, 1:]
    big = np.any(extent > 2 * tile, axis=1)
    keys = (stats.lo[rows, 1] // tile) * (1 << 32) + stats.lo[rows, 2] // tile
    groups = [rows[big][i:i + 1] for i in range(int(big.sum()))]
    small, small_keys = rows[~big], keys[~big]
    order = np.argsort(small_keys, kind="stable")
    small, small_keys = small[order], small_keys[order]
    cuts = np.nonzero(np.diff(small_keys))[0] + 1
    groups.extend(g for g in np.split(small, cuts) if g.size)
    return groups


def _mesh_group(arr, stats: ObjectStats, rows: np.ndarray, voxel_size, options: MeshOptions) -> list[tuple[int, Mesh]]:
    """Meshes of the objects ``rows``, from one read of the union of their (grown) boxes."""
    shape = np.asarray(stats.shape, np.int64)
    lo = np.maximum(stats.lo[rows].min(axis=0) - 1, 0)
    hi = np.minimum(stats.hi[rows].max(axis=0) + 1, shape)
    region = np.asarray(arr[Box.from_bounds(lo, hi).slices])
    out = []
    for r in rows:
        oid = int(stats.ids[r])
        glo, ghi = stats.lo[r] - 1, stats.hi[r] + 1  # grown by one voxel: always background around
        clo, chi = np.maximum(glo, 0), np.minimum(ghi, shape)
        crop = region[tuple(slice(int(a - b), int(c - b)) for a, c, b in zip(clo, chi, lo))] == oid
        mask = np.pad(crop, [(int(a - g), int(h - c)) for a, g, h, c in zip(clo, glo, ghi, chi)])
        out.append((oid, mesh_mask(mask, glo, voxel_size, options)))
    return out


def _select(stats: ObjectStats, ids: Iterable[int] | None, where=None) -> np.ndarray:
    """Rows of ``ids`` in ``stats`` (all rows for None).

    Raises:
        WorkbenchError: an id that is not in the segmentation (one line, naming it).
    """
    if ids is None:
        return np.arange(len(stats))
    rows = []
    for i in ids:
        try:
            rows.append(stats.index(int(i)))
        except KeyError:
            hint = f"ids {int(stats.ids[0])}..{int(stats.ids[-1])}" if len(stats) else "it has no objects"
            raise WorkbenchError(f"no object with id {int(i)} in the segmentation ({len(stats)} objects, {hint})",
                                 where) from None
    return np.asarray(rows, np.int64)


def mesh_objects(
    seg: Any,
    voxel_size: Sequence[float],
    ids: Iterable[int] | None = None,
    options: MeshOptions | None = None,
    stats: ObjectStats | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> Iterator[tuple[int, Mesh]]:
    """``(id, mesh)`` for objects of ``seg``, group by group (order: by tile; not by id).

    Args:
        seg: ``(z, y, x)`` label array-like or Volume.
        voxel_size: ``(z, y, x)`` nm.
        ids: which objects (default: all).
        stats: the segmentation's :func:`~workbench.objects.object_stats` (computed when missing).
        progress: ``callable(objects done, objects total)``.
    Raises:
        WorkbenchError: an unknown id.
    """
    from concurrent.futures import ThreadPoolExecutor

    o = options or MeshOptions()
    arr = array_of(seg)
    stats = stats if stats is not None else object_stats(arr)
    rows = _select(stats, ids, getattr(seg, "source", None) or None)
    groups = _groups(stats, rows, int(o.tile))
    done, total = 0, int(rows.size)
    with ThreadPoolExecutor(max_workers=int(o.workers)) as pool:
        pending: list = []
        it = iter(groups)
        while True:
            while len(pending) < 2 * int(o.workers):
                g = next(it, None)
                if g is None:
                    break
                pending.append(pool.submit(_mesh_group, arr, stats, g, voxel_size, o))
            if not pending:
                return
            for oid, mesh in pending.pop(0).result():
                done += 1
                yield oid, mesh
            if progress is not None:
                progress(done, total)


# ---------------------------------------------------------------- the cache on disk
def mesh_dir_for(seg_path: str | Path) -> Path:
    """The mesh folder of a segmentation store: ``SEG.zarr/meshes``."""
    return Path(seg_path) / MESH_DIR


class MeshStore:
    """A legacy precomputed mesh directory (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def info(self) -> dict:
        """The ``info`` JSON, ``{}`` when the folder has none."""
        try:
            return json.loads((self.path / "info").read_text())
        except (OSError, ValueError):
            return {}

    def write_info(self, options: MeshOptions, voxel_size: Sequence[float], extra: dict | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        meta = dict(asdict(options), voxel_size=[float(v) for v in voxel_size], format="legacy", **(extra or {}))
        _atomic_write(self.path / "info", json.dumps({"@type": LEGACY_MESH_TYPE, "workbench": meta}).encode())

    def has(self, object_id: int) -> bool:
        return (self.path / f"{int(object_id)}:0").is_file()

    def write(self, object_id: int, mesh: Mesh) -> None:
        """Write the mesh of ``object_id``, safe against a kill at any moment.

        A first write: ``<id>.frag``, then its manifest ``<id>:0`` (a manifest names only a fragment written
        whole, and one cut short is not valid JSON, so :meth:`read` says not cached); two file creations and
        no renames, since creating files is what costs on a busy disk. A rewrite: the new fragment under a
        new name, then the manifest replaced by a rename, then the old fragments removed, so the old mesh
        stays readable until the new one is whole.
        """
        oid = int(object_id)
        if not self.path.is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.path / f"{oid}:0"
        data = mesh.encode("xyz")
        if not manifest.exists():
            (self.path / f"{oid}.frag").write_bytes(data)
            manifest.write_text(json.dumps({"fragments": [f"{oid}.frag"]}))
            return
        frag = f"{oid}.{time.time_ns():x}.frag"
        (self.path / frag).write_bytes(data)
        tmp = self.path / f".{oid}:0.{frag}.tmp"  # a rename is atomic against kills; no fsync: a cache
        tmp.write_text(json.dumps({"fragments": [frag]}))  # is remade, and fsyncs per object would cost
        os.replace(tmp, manifest)  # more than the meshing
        for old in self.path.glob(f"{oid}.*frag"):  # this object's earlier fragments (and any a kill left)
            if old.name != frag:
                old.unlink(missing_ok=True)

    def read(self, object_id: int) -> Mesh | None:
        """The mesh of ``object_id`` (all its fragments), or None when it is not cached."""
        oid = int(object_id)
        try:
            manifest = json.loads((self.path / f"{oid}:0").read_text())
        except (OSError, ValueError):
            return None
        meshes = []
        for frag in manifest.get("fragments", []):
            try:
                meshes.append(Mesh.decode((self.path / frag).read_bytes(), "xyz"))
            except (OSError, ValueError, struct.error):  # missing or cut short: not cached
                return None
        return concatenate(meshes)

    def ids(self) -> list[int]:
        """Ids with a cached mesh."""
        return sorted(int(p.name[:-2]) for p in self.path.glob("*:0") if p.name[:-2].isdigit())


def concatenate(meshes: Sequence[Mesh]) -> Mesh:
    """One mesh of several (vertex indices offset)."""
    if not meshes:
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32))
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(np.concatenate([m.vertices for m in meshes]),
                np.concatenate([m.faces + np.uint32(o) for m, o in zip(meshes, offsets)]).astype(np.uint32))


def _atomic_write(path: Path, data: bytes) -> None:
    from workbench.atomic import atomic_write

    atomic_write(path, data)


@dataclass(frozen=True)
class MeshReport:
    """What :func:`write_meshes` did: ``objects`` meshed, ``vertices``/``faces`` in total, ``seconds``,
    ``path`` of the mesh folder."""

    objects: int
    vertices: int
    faces: int
    seconds: float
    path: Path


def write_meshes(
    seg: Any,
    out: str | Path | None = None,
    ids: Iterable[int] | None = None,
    options: MeshOptions | None = None,
    voxel_size: Sequence[float] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> MeshReport:
    """Mesh objects of a segmentation and write them as a legacy precomputed mesh folder.

    Args:
        seg: a segmentation path (``SEG.zarr``, anything :func:`workbench.io.open_volume` reads) or a Volume.
        out: the mesh folder (default: ``SEG.zarr/meshes`` beside the data; required for a Volume
            without a path).
        ids: which objects (default: all).
        options: :class:`MeshOptions`.
        voxel_size: ``(z, y, x)`` nm (default: the segmentation's).
    Raises:
        WorkbenchError: unreadable segmentation, not integer labels, an id not in it, no place to write.
    """
    from workbench.io import open_volume

    t0 = time.perf_counter()
    o = options or MeshOptions()
    vol = open_volume(str(seg)) if isinstance(seg, (str, Path)) else seg
    where = getattr(vol, "source", None) or (str(seg) if isinstance(seg, (str, Path)) else None)
    if np.dtype(vol.dtype).kind not in "biu":
        raise WorkbenchError(f"not a label volume (dtype {vol.dtype}); mesh an instance segmentation", where)
    if out is None:
        if not isinstance(seg, (str, Path)) or "[" in str(seg):
            raise WorkbenchError("give the mesh folder (out) for a volume without a path or a region of one")
        out = mesh_dir_for(store_root(Path(seg)))
    vs = voxel_size or getattr(vol, "voxel_size", (1.0, 1.0, 1.0))
    store = MeshStore(out)
    stats = object_stats(vol)
    rows = _select(stats, ids, where)  # bad ids fail before anything is written
    store.write_info(o, vs)
    nv = nf = n = 0
    for oid, mesh in mesh_objects(vol, vs, stats.ids[rows].tolist(), o, stats=stats, progress=progress):
        store.write(oid, mesh)
        n += 1
        nv += len(mesh.vertices)
        nf += len(mesh.faces)
    return MeshReport(n, nv, nf, time.perf_counter() - t0, store.path)


class ObjectMeshes:
    """Meshes of one segmentation on demand: read from the cache folder, else computed and cached.

    Thread-safe; the object bounding boxes are computed once, on the first request.

    Args:
        seg: the ``(z, y, x)`` label array-like or Volume.
        voxel_size: ``(z, y, x)`` nm.
        cache: the mesh folder (None: keep meshes in memory only).
        options: used for meshes computed here (default: the cache's, as ``workbench mesh`` wrote them).
    """

    def __init__(self, seg: Any, voxel_size: Sequence[float], cache: str | Path | None = None,
                 options: MeshOptions | None = None):
        import threading

        self.seg = array_of(seg)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.store = MeshStore(cache) if cache is not None else None
        if options is None and self.store is not None:  # mesh new objects as the cached ones were
            meta = self.store.info().get("workbench") or {}
            options = MeshOptions(smooth=int(meta.get("smooth", 0)), simplify=float(meta.get("simplify", 0.0)),
                                  workers=1)
        self.options = options or MeshOptions(workers=1)
        self._stats: ObjectStats | None = None
        self._memory: dict[int, Mesh] = {}
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()

    def reset(self) -> None:
        """Forget the bounding boxes and in-memory meshes (the labels changed)."""
        with self._lock:
            self._stats = None
            self._memory.clear()

    @property
    def stats(self) -> ObjectStats:
        with self._lock:
            if self._stats is None:
                self._stats = object_stats(self.seg)
            return self._stats

    def get(self, object_id: int) -> Mesh:
        """The mesh of ``object_id``.

        Raises:
            WorkbenchError: no such object in the segmentation.
        """
        oid = int(object_id)
        cached = self._cached(oid)
        if cached is not None:
            return cached
        rows = _select(self.stats, [oid])
        with self._compute_lock:  # one writer per mesh: requests for the same object wait for it
            cached = self._cached(oid)
            if cached is not None:
                return cached
            return self._compute(oid, rows)

    def _cached(self, oid: int) -> Mesh | None:
        if oid in self._memory:
            return self._memory[oid]
        return self.store.read(oid) if self.store is not None else None

    def _compute(self, oid: int, rows: np.ndarray) -> Mesh:
        (_, mesh), = _mesh_group(self.seg, self.stats, rows, self.voxel_size, self.options)
        if self.store is not None:
            try:
                if not (self.store.path / "info").exists():
                    self.store.write_info(self.options, self.voxel_size)
                self.store.write(oid, mesh)
                return mesh
            except OSError as err:  # read-only data: keep it in memory
                log.debug("mesh cache not writable: %s", err)
        self._memory[oid] = mesh
        return mesh
