"""What a catalog entry says about a public EM dataset, and the registry that holds the entries.

Entries are plain data: where the files come from (:class:`RemoteFile`), which of them hold raw and labels
and how to read them (:class:`Source`, :class:`LabelSource`), grouped into alternative :class:`Layout` s
(for example the official TIFF files in a local mirror, or an HDF5 file to download). The built-in entries
are dicts in :mod:`workbench.datasets.catalog`, validated into :class:`DatasetInfo` by
:func:`dataset_from_dict` when the registry is first read; more are added with :func:`register_dataset`.
:func:`list_datasets` and :func:`get_dataset` read the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workbench.choices import Choice
from workbench.errors import WorkbenchError
from workbench.registry import Registry


class LabelKind(Choice, what="label kind"):
    """What the values of a label volume mean: ``instances`` (0 = background, other ids = objects),
    ``semantic`` (0 = unlabelled, 1..K = classes) or ``original`` (the file's values, explained in a note)."""

    INSTANCES = "instances"
    SEMANTIC = "semantic"
    ORIGINAL = "original"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset, as it sits in the local mirror and (if ``url``) on its host.

    Attributes:
        name: the file name in the mirror folder ``WORKBENCH_DATA_DIR/<dataset>/`` and the download cache.
        url: where to download it; None when the host needs a login or has no stable link.
        sha256: the published or pinned SHA-256; None when no checksum is known for certain
            (fetching then prints the SHA-256 it saw so a user can pin it).
        unpack: True for a zip archive to extract after download.
        size_mb: approximate size of the download in MB (for the user's information), if known.
    """

    name: str
    url: str | None = None
    sha256: str | None = None
    unpack: bool = False
    size_mb: float | None = None


@dataclass(frozen=True)
class Source:
    """Where an array is inside a dataset's files.

    Attributes:
        paths: file or folder paths relative to the dataset folder (the mirror, or the download cache
            where archives are unpacked); several paths are stacked along z in order. A folder is read
            as a stack of 2D slices.
        key: the dataset key inside an HDF5 file (e.g. ``volumes/raw``); None for TIFF, PNG, NIfTI.
        z_range: keep only slices ``z_range[0]:z_range[1]`` (after stacking); None keeps all.
        layout: axis order on disk: ``"zyx"`` (TIFF, HDF5, image stacks) or ``"xyz"`` (NIfTI).
    """

    paths: tuple[str, ...]
    key: str | None = None
    z_range: tuple[int, int] | None = None
    layout: Literal["zyx", "xyz"] = "zyx"

    def describe(self) -> str:
        """A short human-readable description, e.g. ``sample_A.hdf:/volumes/raw``."""
        text = " + ".join(self.paths)
        if self.key:
            text += f":/{self.key}"
        if self.z_range:
            text += f" (z {self.z_range[0]}:{self.z_range[1]})"
        return text


@dataclass(frozen=True)
class LabelSource:
    """A label volume stored as an NGFF label image ``labels/<name>``.

    Attributes:
        name: the label image name (``instances``, ``semantic``, ``membranes`` ...).
        source: where the values are read from.
        kind: a :class:`LabelKind` (or its name): ``"instances"`` (0 = background, other ids = objects),
            ``"semantic"`` (0 = unlabelled, 1..K = ``classes``) or ``"original"`` (the file's values kept
            as they are, explained in ``note``).
        classes: for semantic labels, class id -> class name.
        transform: maps a block of source values to stored values (e.g. :func:`value_map`); None keeps them.
        note: how the stored values relate to the file (for learners).
    """

    name: str
    source: Source
    kind: LabelKind = LabelKind.INSTANCES
    classes: dict[int, str] = field(default_factory=dict)
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    note: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kind", LabelKind.parse(self.kind))


@dataclass(frozen=True)
class Layout:
    """One way to obtain a dataset: a set of files and how raw and labels are read from them.

    Attributes:
        name: short name (``"tiff"``, ``"hdf5"``, ``"zip"``).
        files: the files needed (all present in the mirror, or all downloadable).
        raw: where the raw image is.
        labels: the label volumes.
        note: anything a user should know about this layout.
    """

    name: str
    files: tuple[RemoteFile, ...]
    raw: Source
    labels: tuple[LabelSource, ...] = ()
    note: str = ""

    @property
    def downloadable(self) -> bool:
        """True when every file has a URL."""
        return all(f.url for f in self.files)


@dataclass(frozen=True)
class DatasetInfo:
    """A catalog entry: everything a learner and the fetcher need to know about one dataset.

    Attributes:
        name: the catalog name (lower case, used on the command line).
        title: the dataset's usual name.
        description: a few sentences for learners.
        modality: imaging technique (ssTEM, FIB-SEM, ATUM-SEM, ...).
        organism: species.
        tissue: tissue or cell type.
        voxel_size: (z, y, x) in nm.
        shape: (z, y, x) of the raw volume the workbench stores.
        license: the terms the host states (or that none are stated).
        citation: the reference to cite.
        doi: the DOI of that reference.
        homepage: the dataset's official page.
        layouts: alternative ways to obtain the files, tried in order (mirror first, then download).
        raw_dtype: numpy dtype name of the raw volume.
        tasks: what the labels are used for (e.g. ``("membranes", "neurons")``).
    """

    name: str
    title: str
    description: str
    modality: str
    organism: str
    tissue: str
    voxel_size: tuple[float, float, float]
    shape: tuple[int, int, int]
    license: str
    citation: str
    doi: str
    homepage: str
    layouts: tuple[Layout, ...]
    raw_dtype: str = "uint8"
    tasks: tuple[str, ...] = ()

    @property
    def urls(self) -> list[str]:
        """Every download URL of every layout."""
        return [f.url for layout in self.layouts for f in layout.files if f.url]

    @property
    def nbytes(self) -> int:
        """Size of the raw volume in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.raw_dtype).itemsize

    @property
    def label_names(self) -> list[str]:
        """Names of the label images (of the first layout; all layouts store the same names)."""
        return [label.name for label in self.layouts[0].labels] if self.layouts else []

    def mirror_files(self) -> list[list[str]]:
        """For each layout, the file names a local mirror must hold."""
        return [[f.name for f in layout.files] for layout in self.layouts]


def _load_catalog() -> Iterator[tuple[str, DatasetInfo]]:
    from workbench.datasets.catalog import ENTRIES  # plain data: imports nothing back

    for entry in ENTRIES:
        info = dataset_from_dict(entry)
        yield info.name, info


_REGISTRY: Registry[DatasetInfo] = Registry("dataset", loader=_load_catalog, normalize=lambda n: n.strip().lower())


def register_dataset(name: str) -> Callable[[Callable[[], DatasetInfo]], Callable[[], DatasetInfo]]:
    """Decorator: register the :class:`DatasetInfo` returned by the decorated function under ``name``.

    Raises:
        ValueError: ``name`` is already registered, or the entry's ``name`` differs (programming errors).
    """

    def decorator(build: Callable[[], DatasetInfo]) -> Callable[[], DatasetInfo]:
        info = build()
        if info.name != name:
            raise ValueError(f"dataset registered as {name!r} calls itself {info.name!r}")
        _REGISTRY.register(name, info)
        return build

    return decorator


def unregister_dataset(name: str) -> None:
    """Remove an entry (used by tests that register temporary entries)."""
    _REGISTRY.unregister(name)


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    return sorted(_REGISTRY.list(), key=lambda info: info.name)


def get_dataset(name: str) -> DatasetInfo:
    """The entry called ``name`` (case-insensitive).

    Raises:
        WorkbenchError: no such dataset; the message lists the valid names and the closest match.
    """
    return _REGISTRY.get(name)


# ------------------------------------------------------------------------ catalog dicts -> DatasetInfo
def _source(d: dict) -> Source:
    d = dict(d)
    d["paths"] = tuple(d["paths"])
    if d.get("z_range") is not None:
        d["z_range"] = tuple(int(v) for v in d["z_range"])
    return Source(**d)


def _transform(spec: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    if spec is None or callable(spec):
        return spec
    spec = dict(spec)
    mapping = {int(k): int(v) for k, v in spec.pop("value_map").items()}
    return value_map(mapping, **spec)


def _label(d: dict) -> LabelSource:
    d = dict(d)
    d["source"] = _source(d["source"])
    d["classes"] = {int(k): str(v) for k, v in (d.get("classes") or {}).items()}
    d["transform"] = _transform(d.get("transform"))
    return LabelSource(**d)


def _layout(d: dict) -> Layout:
    d = dict(d)
    d["files"] = tuple(RemoteFile(**f) for f in d["files"])
    d["raw"] = _source(d["raw"])
    d["labels"] = tuple(_label(label) for label in d.get("labels", ()))
    return Layout(**d)


def dataset_from_dict(entry: dict) -> DatasetInfo:
    """Validate a plain-data catalog entry (see :mod:`workbench.datasets.catalog`) into a :class:`DatasetInfo`.

    Raises:
        ValueError: a missing, unknown or malformed field (a programming error in the catalog).
    """
    name = entry.get("name", "?")
    try:
        d = dict(entry)
        d["voxel_size"] = tuple(float(v) for v in d["voxel_size"])
        d["shape"] = tuple(int(v) for v in d["shape"])
        d["tasks"] = tuple(d.get("tasks", ()))
        d["layouts"] = tuple(_layout(layout) for layout in d["layouts"])
        if len(d["voxel_size"]) != 3 or len(d["shape"]) != 3:
            raise ValueError("voxel_size and shape need three values (z, y, x)")
        return DatasetInfo(**d)
    except (KeyError, TypeError, ValueError, WorkbenchError) as err:
        raise ValueError(f"catalog entry {name!r}: {type(err).__name__}: {err}") from err


def value_map(mapping: dict[int, int], what: str = "labels") -> Callable[[np.ndarray], np.ndarray]:
    """A label transform mapping each source value to a stored value, e.g. ``{0: 1, 255: 2}``.

    The returned function raises :class:`WorkbenchError` when a block holds a value not in ``mapping``
    (a file that is not what the catalog expects), instead of storing wrong classes.
    """
    src = np.array(sorted(mapping), dtype=np.int64)
    dst = np.array([mapping[k] for k in sorted(mapping)], dtype=np.uint8)

    def transform(block: np.ndarray) -> np.ndarray:
        values = np.unique(block)
        unexpected = np.setdiff1d(values, src)
        if unexpected.size:
            raise WorkbenchError(
                f"{what}: unexpected values {unexpected[:5].tolist()} (expected only {src.tolist()})"
            )
        return dst[np.searchsorted(src, block)]

    transform.mapping = dict(mapping)  # type: ignore[attr-defined]
    return transform
