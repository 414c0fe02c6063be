"""The project folder: everything a user makes, saved as it happens.

```
project/
  project.json          schema, name, raw source + voxel size, classes, UI state
  data.zarr/            OME-Zarr: raw is the root image (unless project.json links an external zarr),
                        labels/annotations, labels/truth, predictions/<run>, segmentation/<name>
  annotations.jsonl     the annotation history (see workbench.annotations.store)
  annotations.undo/     previous contents kept for undo
  runs/<id>/            config.json, checkpoint.pt, metrics.jsonl
```
Paths inside the project are stored relative to it, so a project folder can be moved or copied.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write_json, pid_alive
from workbench.classes import PALETTE, LabelClass, as_class, default_color, normalize_color
from workbench.errors import WorkbenchError
from workbench.io.volume import Volume

SCHEMA_VERSION = 1
PROJECT_FILE = "project.json"
DATA_STORE = "data.zarr"
JOURNAL_FILE = "annotations.jsonl"
UNDO_DIR = "annotations.undo"
RUNS_DIR = "runs"
MAX_CLASS_NAME = 100

#: The class record and the colours given to new classes live in :mod:`workbench.classes` (re-exported here).
__all__ = ["DEFAULT_CLASSES", "PALETTE", "LabelClass", "Project", "ProjectState", "RunInfo"]

DEFAULT_CLASSES = (LabelClass(1, "membrane", PALETTE[0]), LabelClass(2, "interior", PALETTE[1]))


@dataclass(frozen=True)
class RunInfo:
    """A training run folder and what it holds.

    Attributes:
        id: folder name.
        path: the folder.
        config: ``config.json`` contents, or None.
        metrics: the records of ``metrics.jsonl`` (oldest first), empty when absent.
        checkpoint: path of ``checkpoint.pt`` when it exists.
        created: folder creation time (seconds since the epoch).
    """

    id: str
    path: Path
    config: dict | None
    metrics: list[dict]
    checkpoint: Path | None
    created: float

    @property
    def last_metrics(self) -> dict | None:
        return self.metrics[-1] if self.metrics else None


def _is_zarr_source(src: str) -> bool:
    """True for a path inside or naming a zarr store (``x.zarr``, ``x.zarr/raw``, a folder with zarr metadata)."""
    p = Path(src.split(":/")[0] if ":/" in src and not Path(src).exists() else src)
    if any(part.endswith(".zarr") for part in p.parts):
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(root: Path) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(root.resolve()), threading.RLock())


@dataclass(frozen=True)
class ProjectOptions:
    """How :meth:`Project.create` makes a project, checked when created.

    Attributes:
        voxel_size: (z, y, x) nm, overriding what the source says.
        name: display name (default: the folder name).
        classes: list of ``LabelClass`` or ``(name, color)`` / names; default membrane + interior.
        copy_raw: copy an existing zarr/OME-Zarr source into the project instead of linking it.
        sample_shape, seed: shape and seed of the synthetic sample when ``raw`` is None.

    Raises:
        WorkbenchError: voxel size or sample shape not three positive numbers.
    """

    voxel_size: tuple[float, float, float] | None = None
    name: str | None = None
    classes: tuple | list | None = None
    copy_raw: bool = False
    sample_shape: tuple[int, int, int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for what, value, cast in (("voxel size", self.voxel_size, float), ("sample shape", self.sample_shape, int)):
            if value is None:
                continue
            try:
                out = tuple(cast(v) for v in value)
            except (TypeError, ValueError):
                out = ()
            if len(out) != 3 or min(out) <= 0:
                raise WorkbenchError(f"{what} must be three positive numbers (z, y, x), got {value}")
            object.__setattr__(self, "voxel_size" if what == "voxel size" else "sample_shape", out)
        object.__setattr__(self, "copy_raw", bool(self.copy_raw))
        object.__setattr__(self, "seed", int(self.seed))


class ProjectState(MutableMapping):
    """A small JSON dict (UI step, chosen architecture, brush width ...) saved to project.json on every set."""

    def __init__(self, project: Project):
        self._project = project

    def _data(self) -> dict:
        return self._project._meta.setdefault("state", {})

    def __getitem__(self, key):
        return self._data()[key]

    def __iter__(self) -> Iterator:
        return iter(list(self._data()))

    def __len__(self) -> int:
        return len(self._data())

    def __setitem__(self, key, value) -> None:
        self.update({key: value})

    def __delitem__(self, key) -> None:
        if key not in self._data():
            raise KeyError(key)
        self._project._mutate(lambda m: m.setdefault("state", {}).pop(key, None))

    def update(self, other=(), /, **kwargs) -> None:
        """Set several keys with one save."""
        new = dict(other, **kwargs)
        for k in new:
            if not isinstance(k, str):
                raise TypeError(f"state keys must be strings, got {k!r}")
        json.dumps(new)  # TypeError now, before anything is written, for values JSON cannot hold
        self._project._mutate(lambda m: m.setdefault("state", {}).update(new))

    def __repr__(self) -> str:
        return f"ProjectState({self._data()!r})"


class Project:
    """A project folder. Use :meth:`create`, :meth:`open` or :meth:`open_or_create`, not the constructor."""

    def __init__(self, root: Path, meta: dict):
        self.root = Path(root)
        self._meta = meta
        self._lock = _lock_for(self.root)
        self._annotations = None

    # ------------------------------------------------------------------ paths
    @property
    def json_path(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def data_path(self) -> Path:
        """The project's OME-Zarr store (``data.zarr``)."""
        return self.root / DATA_STORE

    @property
    def runs_path(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def annotations_path(self) -> Path:
        return self.data_path / "labels" / "annotations"

    @property
    def truth_path(self) -> Path | None:
        t = self._meta.get("truth")
        return None if not t else self._resolve(t["source"])

    def prediction_path(self, run_id: str) -> Path:
        """Where predictions of run ``run_id`` go (``data.zarr/predictions/<run>``)."""
        return self.data_path / "predictions" / _safe_name(run_id)

    def segmentation_path(self, name: str) -> Path:
        """Where segmentation ``name`` goes (``data.zarr/segmentation/<name>``)."""
        return self.data_path / "segmentation" / _safe_name(name)

    def _resolve(self, source: str) -> Path:
        p = Path(source)
        return p if p.is_absolute() else self.root / p

    # ------------------------------------------------------------------ creating / opening
    @classmethod
    def create(cls, root, raw=None, options: ProjectOptions | None = None, *, truth=None,
               progress=None) -> Project:
        """Make a new project folder.

        Args:
            root: the folder (created; must be empty or absent).
            raw: None for the built-in synthetic sample (its ground truth becomes ``labels/truth``), a
                source any ``workbench.io`` reader opens, a ``Volume`` or a numpy array (z, y, x).
            options: :class:`ProjectOptions` (voxel size, name, classes, copy_raw, sample shape and seed).
            truth: optional ground-truth labels (source, Volume or array) stored as ``labels/truth``.
            progress: optional tqdm-like callable for long imports.

        Raises:
            WorkbenchError: the folder is already a project or not empty, or the raw cannot be read.
        """
        root = Path(root).expanduser()
        if (root / PROJECT_FILE).exists():
            raise WorkbenchError("already a project; open it instead", root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise WorkbenchError("cannot create a project here: the folder is not empty", root)
        from dataclasses import replace

        from workbench.annotations.store import create_label_image

        o = replace(options or ProjectOptions(), name=(options.name if options else None) or root.name)
        # built under a hidden name beside the folder and renamed into place when complete: a process
        # killed while creating leaves no half-made project under the final name
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WorkbenchError(f"cannot create a project here ({err.strerror})", root.parent) from None
        _remove_dead_builds(root)
        tmp = root.with_name(f"{_BUILD_PREFIX}{os.getpid()}-{root.name[:100]}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            meta = cls._build(tmp, raw, o, truth, progress)
            classes = [LabelClass(**c) for c in meta["classes"]]
            create_label_image(tmp / DATA_STORE / "labels" / "annotations", tmp / JOURNAL_FILE,
                               meta["raw"]["shape"], meta["raw"]["voxel_size"],
                               _label_options(classes, tmp / UNDO_DIR))
            atomic_write_json(tmp / PROJECT_FILE, meta)  # the folder is a project once complete
            try:
                os.replace(tmp, root)  # root absent or an empty folder
            except OSError as err:
                raise WorkbenchError(f"cannot create a project here ({err.strerror})", root) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        from workbench.atomic import fsync_dir

        fsync_dir(root.parent)
        return cls(root, meta)

    @classmethod
    def _build(cls, root, raw, o: ProjectOptions, truth, progress):
        from workbench.io import open_volume
        from workbench.io.omezarr import WriteOptions, write_ome_zarr

        voxel_size, seed = o.voxel_size, o.seed
        data = root / DATA_STORE
        meta: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "name": o.name or root.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "raw": None,
            "truth": None,
            "classes": [asdict(c) for c in _make_classes(o.classes)],
            "state": {},
        }
        if raw is None:
            from workbench.synthetic import generate_sample

            kwargs = {"seed": seed, "progress": progress}
            if o.sample_shape is not None:
                kwargs["shape"] = o.sample_shape
            generate_sample(data, **kwargs)
            raw_vol = open_volume(str(data))
            if voxel_size is not None:
                raw_vol = raw_vol.with_voxel_size(voxel_size)
            meta["raw"] = {"source": DATA_STORE, "linked": False}
            meta["sample"] = {"seed": int(seed)}
            if truth is None:
                truth = _sample_truth(data)
        elif isinstance(raw, (str, os.PathLike)) and _is_zarr_source(str(raw)) and not o.copy_raw:
            raw_vol = open_volume(str(raw), voxel_size=voxel_size)
            meta["raw"] = {"source": str(Path(str(raw)).expanduser().resolve()), "linked": True}
        else:
            if isinstance(raw, (str, os.PathLike)):
                raw_vol = open_volume(str(raw), voxel_size=voxel_size)
            else:
                raw_vol = _as_volume(raw, voxel_size, "raw")
            write_ome_zarr(raw_vol, data, WriteOptions(name="raw", voxel_size=raw_vol.voxel_size), progress=progress)  # image at the root
            meta["raw"] = {"source": DATA_STORE, "linked": False, "imported_from": raw_vol.source}
        meta["raw"].update(shape=list(raw_vol.shape), dtype=str(raw_vol.dtype),
                           voxel_size=list(raw_vol.voxel_size))
        if truth is not None:
            tvol = open_volume(str(truth)) if isinstance(truth, (str, os.PathLike)) else _as_volume(truth, None, "truth")
            if tvol.shape != raw_vol.shape:
                raise WorkbenchError(f"ground truth has shape {tvol.shape}, the raw volume {raw_vol.shape}",
                                     tvol.source or None)
            if tvol.dtype.kind not in "iub":
                raise WorkbenchError(f"ground truth must be integer labels, got {tvol.dtype}", tvol.source or None)
            write_ome_zarr(tvol, data, WriteOptions(name="truth", voxel_size=raw_vol.voxel_size, labels=True),
                           progress=progress)
            meta["truth"] = {"source": f"{DATA_STORE}/labels/truth", "imported_from": tvol.source}
        return meta

    @classmethod
    def open(cls, root) -> Project:
        """Open an existing project.

        Raises:
            WorkbenchError: the folder is not a project, project.json is unreadable, or it was written
                by a newer version.
        """
        root = Path(root).expanduser()
        if not root.is_dir():
            raise WorkbenchError("no such project folder", root)
        path = root / PROJECT_FILE
        if not path.exists():
            raise WorkbenchError(f"not an EM Workbench project (no {PROJECT_FILE})", root)
        meta = _read_meta(path)
        return cls(root, meta)

    @classmethod
    def open_or_create(cls, root, **create_kwargs) -> Project:
        """Open the project at ``root`` if there is one, else create it with ``create_kwargs``."""
        if (Path(root).expanduser() / PROJECT_FILE).exists():
            return cls.open(root)
        return cls.create(root, **create_kwargs)

    @staticmethod
    def is_project(root) -> bool:
        return (Path(root).expanduser() / PROJECT_FILE).is_file()

    # ------------------------------------------------------------------ saving
    def _mutate(self, change) -> None:
        """Re-read project.json, apply ``change(meta)``, write it atomically (under the project lock)."""
        with self._lock:
            meta = _read_meta(self.json_path) if self.json_path.exists() else self._meta
            change(meta)
            atomic_write_json(self.json_path, meta)
            self._meta = meta

    def reload(self) -> None:
        """Re-read project.json (changes made by another process)."""
        with self._lock:
            self._meta = _read_meta(self.json_path)

    # ------------------------------------------------------------------ data
    @property
    def name(self) -> str:
        return self._meta.get("name", self.root.name)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self._meta["raw"]["voxel_size"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._meta["raw"]["shape"])

    @property
    def raw(self) -> Volume:
        """The raw image volume (lazy)."""
        from workbench.io import open_volume

        info = self._meta["raw"]
        src = self._resolve(info["source"])
        if not src.exists():
            raise WorkbenchError("the project's raw data is missing (moved or deleted?)", src)
        vol = open_volume(str(src), voxel_size=self.voxel_size)
        if vol.shape != self.shape:
            raise WorkbenchError(f"raw data has shape {vol.shape}, the project expects {self.shape}", src)
        return vol

    @property
    def truth(self) -> Volume | None:
        """Ground-truth labels when the project has them (synthetic sample, or given at creation)."""
        from workbench.io import open_volume

        path = self.truth_path
        if path is None:
            return None
        return open_volume(str(path), voxel_size=self.voxel_size)

    @property
    def state(self) -> ProjectState:
        """UI state (dict-like), saved to project.json on every set."""
        return ProjectState(self)

    @property
    def annotations(self):
        """The project's :class:`~workbench.annotations.store.LabelStore` (created on first use)."""
        from workbench.annotations.store import LabelStore

        with self._lock:
            if self._annotations is None:
                journal = self.root / JOURNAL_FILE
                undo = self.root / UNDO_DIR
                if (self.annotations_path).exists():
                    self._annotations = LabelStore(self.annotations_path, journal, undo_dir=undo)
                else:
                    self._annotations = LabelStore.create(self.annotations_path, journal, self.shape,
                                                          self.voxel_size, _label_options(self.classes, undo))
            return self._annotations

    # ------------------------------------------------------------------ classes
    @property
    def classes(self) -> list[LabelClass]:
        return [LabelClass(int(c["id"]), str(c["name"]), str(c["color"])) for c in self._meta["classes"]]

    def get_class(self, class_id: int) -> LabelClass:
        for c in self.classes:
            if c.id == class_id:
                return c
        raise WorkbenchError(f"no class with id {class_id} (classes: "
                             f"{', '.join(f'{c.id} {c.name}' for c in self.classes)})", self.json_path)

    def add_class(self, name: str, color=None) -> LabelClass:
        """Add a class with the next free id; returns it."""
        name = _check_name(name, [c.name for c in self.classes])
        ids = [c.id for c in self.classes]
        new_id = max(ids, default=0) + 1
        if new_id > 65535:
            raise WorkbenchError("too many classes (at most 65535)", self.json_path)
        if new_id > 255 and self.annotations.dtype == np.uint8:
            raise WorkbenchError("this project's annotations hold at most 255 classes", self.json_path)
        color = normalize_color(color) if color is not None else default_color(new_id)
        cls = LabelClass(new_id, name, color)
        self._mutate(lambda m: m["classes"].append(asdict(cls)))
        self._sync_colors()
        return cls

    def rename_class(self, class_id: int, name: str) -> LabelClass:
        self.get_class(class_id)
        name = _check_name(name, [c.name for c in self.classes if c.id != class_id])
        return self._edit_class(class_id, name=name)

    def recolor_class(self, class_id: int, color) -> LabelClass:
        self.get_class(class_id)
        out = self._edit_class(class_id, color=normalize_color(color))
        self._sync_colors()
        return out

    recolour_class = recolor_class

    def remove_class(self, class_id: int, erase_labels: bool = False) -> None:
        """Remove a class. Its labelled voxels must be erased first, or pass ``erase_labels=True``.

        Raises:
            WorkbenchError: unknown id, or voxels still carry the class and ``erase_labels`` is False.
        """
        cls = self.get_class(class_id)
        if len(self.classes) <= 1:
            raise WorkbenchError("a project needs at least one class", self.json_path)
        n = self.annotations.counts().get(class_id, 0)
        if n and not erase_labels:
            raise WorkbenchError(f"class {class_id} ({cls.name}) still labels {n} voxels; erase them first",
                                 self.json_path)
        if n:
            self.annotations.relabel(class_id, 0)
        self._mutate(lambda m: m.__setitem__("classes", [c for c in m["classes"] if int(c["id"]) != class_id]))
        self._sync_colors()

    def _edit_class(self, class_id, **changes) -> LabelClass:
        def change(m):
            for c in m["classes"]:
                if int(c["id"]) == class_id:
                    c.update(changes)

        self._mutate(change)
        return self.get_class(class_id)

    def _sync_colors(self) -> None:
        if self.annotations_path.exists():
            self.annotations.set_colors({c.id: c.color for c in self.classes})

    # ------------------------------------------------------------------ runs
    def new_run_dir(self, prefix: str = "run") -> Path:
        """Create and return a new, unique run folder ``runs/<prefix>-YYYYmmdd-HHMMSS[-n]``."""
        prefix = _safe_name(prefix)
        self.runs_path.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = self.runs_path / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise WorkbenchError("could not make a unique run folder", self.runs_path)

    def record_run_inputs(self, run_dir: Path, init: str | None = None, recipe: str | None = None) -> Path:
        """Write ``run_dir/inputs.json``: which strokes (the annotation journal's length and the labelled voxels
        per class when the run started) and which model it started from, so a run can be traced back."""
        journal = self.root / JOURNAL_FILE
        try:
            with open(journal, "rb") as f:
                entries = sum(1 for _ in f)
        except OSError:
            entries = 0
        record = {"journal_entries": entries, "labelled_voxels": {str(k): v for k, v in self.annotations.counts().items()},
                  "init": init, "recipe": recipe, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        path = Path(run_dir) / "inputs.json"
        atomic_write_json(path, record)
        return path

    def runs(self) -> list[RunInfo]:
        """Run folders, oldest first, with their config and metrics when present."""
        if not self.runs_path.is_dir():
            return []
        out = []
        for d in self.runs_path.iterdir():
            if not d.is_dir() or d.name.startswith("."):
                continue
            config = None
            if (d / "config.json").exists():
                try:
                    config = json.loads((d / "config.json").read_text())
                except (OSError, json.JSONDecodeError):
                    config = None
            metrics = []
            if (d / "metrics.jsonl").exists():
                for line in (d / "metrics.jsonl").read_text().splitlines():
                    try:
                        metrics.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line being written
            ckpt = d / "checkpoint.pt"
            out.append(RunInfo(d.name, d, config, metrics, ckpt if ckpt.exists() else None, d.stat().st_mtime))
        return sorted(out, key=lambda r: (r.created, r.id))

    def __repr__(self) -> str:
        return f"Project({self.name!r}, root={str(self.root)!r}, shape={self.shape})"


# ---------------------------------------------------------------------- helpers
_BUILD_PREFIX = ".creating-"


def _remove_dead_builds(root: Path) -> None:
    """Delete what a killed :meth:`Project.create` left beside ``root`` (builds of processes no longer alive)."""
    for p in root.parent.glob(f"{_BUILD_PREFIX}*-{glob_escape(root.name[:100])}"):
        try:
            pid = int(p.name[len(_BUILD_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _label_options(classes: list[LabelClass], undo_dir: Path):
    from workbench.annotations.store import LabelStoreOptions

    dtype = "uint8" if max((c.id for c in classes), default=1) <= 255 else "uint16"
    return LabelStoreOptions(dtype=dtype, colors={c.id: c.color for c in classes}, undo_dir=undo_dir)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise WorkbenchError("project file is corrupt (nested too deeply)", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"project file is corrupt ({exc})", path) from None
    if not isinstance(meta, dict):
        raise WorkbenchError("project file is corrupt (not a JSON object)", path)
    schema = meta.get("schema")
    if not isinstance(schema, int):
        raise WorkbenchError("project file is corrupt (no schema version)", path)
    if schema > SCHEMA_VERSION:
        raise WorkbenchError(f"project was written by a newer EM Workbench (schema {schema} > {SCHEMA_VERSION})",
                             path)
    for key in ("raw", "classes"):
        if not meta.get(key):
            raise WorkbenchError(f"project file is corrupt (no '{key}')", path)
    problem = _meta_problem(meta)
    if problem:
        raise WorkbenchError(f"project file is corrupt ({problem})", path)
    meta.setdefault("state", {})
    return meta


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with the entries of a project.json that was read as a JSON object, or None."""
    import math

    raw, classes = meta["raw"], meta["classes"]
    if not isinstance(raw, dict) or not isinstance(raw.get("source"), str):
        return "raw has no source path"
    shape, voxel = raw.get("shape"), raw.get("voxel_size")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        return f"raw shape must be three positive integers, got {str(shape)[:60]}"
    if not (isinstance(voxel, list) and len(voxel) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                    for v in voxel)):
        return f"raw voxel_size must be three positive numbers, got {str(voxel)[:60]}"
    if not isinstance(classes, list):
        return "classes is not a list"
    for c in classes:
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and not isinstance(c.get("id"), bool)
                and isinstance(c.get("name"), str) and isinstance(c.get("color"), str)):
            return f"bad class entry {str(c)[:60]}"
    if not isinstance(meta.get("state", {}), dict):
        return "state is not an object"
    if not isinstance(meta.get("name", ""), str):
        return "name is not text"
    truth = meta.get("truth")
    if truth is not None and not (isinstance(truth, dict) and isinstance(truth.get("source"), str)):
        return "truth has no source path"
    return None


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    if not s:
        raise WorkbenchError(f"not a usable name: {name!r}")
    return s


def _check_name(name, taken) -> str:
    if not isinstance(name, str) or not name.strip():
        raise WorkbenchError("a class name cannot be empty")
    name = name.strip()
    if any(not ch.isprintable() for ch in name):
        raise WorkbenchError(f"a class name is one line of text without control characters, got {name[:40]!r}")
    if len(name) > MAX_CLASS_NAME:
        raise WorkbenchError(f"a class name is at most {MAX_CLASS_NAME} characters, got {len(name)} "
                             f"({name[:20]!r}...)")
    if name.lower() in (t.lower() for t in taken):
        raise WorkbenchError(f"there is already a class called {name!r}")
    return name


def _make_classes(classes) -> list[LabelClass]:
    if classes is None:
        return list(DEFAULT_CLASSES)
    out: list[LabelClass] = []
    for i, c in enumerate(classes, 1):
        if isinstance(c, dict) and "color" not in c:  # a saved class without colour: its position's colour
            c = {**c, "color": default_color(i)}
        c = as_class(c, i)
        item = LabelClass(int(c.id), c.name, normalize_color(c.color))
        _check_name(item.name, [o.name for o in out])
        if item.id < 1 or item.id in (o.id for o in out):
            raise WorkbenchError(f"class ids must be unique and >= 1, got {item.id}")
        out.append(item)
    if not out:
        raise WorkbenchError("a project needs at least one class")
    return out


def _as_volume(obj, voxel_size, name) -> Volume:
    if isinstance(obj, Volume):
        return obj if voxel_size is None else obj.with_voxel_size(voxel_size)
    arr = np.asarray(obj)
    if arr.ndim == 2:
        arr = arr[None]
    return Volume(arr, voxel_size=voxel_size or (1.0, 1.0, 1.0), name=name, source="")


def _sample_truth(data: Path) -> Volume:
    """Membrane (1) / interior (2) ground truth, matching the default classes, from the sample's semantics.

    Synaptic clefts are thickened membranes, so they count as membrane.
    """
    import dask.array as da

    from workbench.io import open_volume
    from workbench.synthetic.classes import CLEFT, MEMBRANE

    sem = open_volume(str(data / "labels" / "semantic"))
    d = sem.to_dask()
    truth = da.where((d == MEMBRANE) | (d == CLEFT), np.uint8(1), np.uint8(2)).astype(np.uint8)
    return Volume(truth, voxel_size=sem.voxel_size, name="truth", source=f"{DATA_STORE}/labels/semantic")
