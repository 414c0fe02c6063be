"""What a catalog entry says about a public EM dataset, and the registry that holds the entries.

An entry is built by a function decorated with :func:`register_dataset`; :func:`list_datasets` and
:func:`get_dataset` read the registry. Entries are plain data: where the files come from
(:class:`RemoteFile`), which of them hold raw and labels and how to read them (:class:`Source`,
:class:`LabelSource`), grouped into alternative :class:`Layout` s (for example the official TIFF files
in a local mirror, or an HDF5 file to download).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from workbench.errors import WorkbenchError

LabelKind = Literal["instances", "semantic", "original"]


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
        kind: ``"instances"`` (0 = background, other ids = objects), ``"semantic"``
            (0 = unlabelled, 1..K = ``classes``) or ``"original"`` (the file's values kept as they are,
            explained in ``note``).
        classes: for semantic labels, class id -> class name.
        transform: maps a block of source values to stored values (e.g. :func:`value_map`); None keeps them.
        note: how the stored values relate to the file (for learners).
    """

    name: str
    source: Source
    kind: LabelKind = "instances"
    classes: dict[int, str] = field(default_factory=dict)
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    note: str = ""


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


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(name: str) -> Callable[[Callable[[], DatasetInfo]], Callable[[], DatasetInfo]]:
    """Decorator: register the :class:`DatasetInfo` returned by the decorated function under ``name``.

    Raises:
        ValueError: ``name`` is already registered, or the entry's ``name`` differs (programming errors).
    """

    def decorator(build: Callable[[], DatasetInfo]) -> Callable[[], DatasetInfo]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        info = build()
        if info.name != name:
            raise ValueError(f"dataset registered as {name!r} calls itself {info.name!r}")
        _REGISTRY[name] = info
        return build

    return decorator


def unregister_dataset(name: str) -> None:
    """Remove an entry (used by tests that register temporary entries)."""
    _REGISTRY.pop(name, None)


def _load_catalog() -> None:
    from workbench.datasets import catalog  # noqa: F401  (registers the built-in entries)


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    _load_catalog()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_dataset(name: str) -> DatasetInfo:
    """The entry called ``name`` (case-insensitive).

    Raises:
        WorkbenchError: no such dataset; the message lists the valid names and the closest match.
    """
    _load_catalog()
    key = str(name).strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    valid = sorted(_REGISTRY)
    close = [v for v in valid if key and v.startswith(key)] or difflib.get_close_matches(
        key, valid, n=1, cutoff=0.5
    )
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise WorkbenchError(f"unknown dataset {name!r}{hint} Valid names: {', '.join(valid)}")


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
