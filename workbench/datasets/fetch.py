"""Getting a catalog dataset onto disk as OME-Zarr: local mirror first, then a verified download.

Order of look-up for a dataset called NAME:

1. ``<cache>/datasets/NAME.zarr`` already converted: returned at once.
2. The local mirror ``WORKBENCH_DATA_DIR/NAME/`` holding every file of one of the entry's layouts
   (the official archive, or the already-unpacked files such as ``train-volume.tif``).
3. A download with pooch (retries, checksum verification) into ``<cache>/datasets/downloads/NAME/``.

Archives are unpacked into ``<cache>/datasets/downloads/NAME/unpacked/`` (never into the mirror), then
raw and labels are written to OME-Zarr under a temporary name that is renamed when complete.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from workbench.config import cache_dir, data_dir
from workbench.datasets.registry import DatasetInfo, Layout, RemoteFile, get_dataset
from workbench.datasets.sources import open_label_source, open_source
from workbench.errors import WorkbenchError
from workbench.io.volume import Volume
from workbench.progress import Progress

#: Root attribute of a fetched OME-Zarr holding the catalog metadata.
METADATA_KEY = "workbench_dataset"

Report = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def mirror_dir(name: str) -> Path:
    """The local mirror folder of a dataset: ``WORKBENCH_DATA_DIR/<name>/``."""
    return data_dir() / name


def downloads_dir(name: str) -> Path:
    """Where downloads of a dataset are kept: ``<cache>/datasets/downloads/<name>/``."""
    return cache_dir() / "datasets" / "downloads" / name


def dataset_path(name: str, out: str | Path | None = None) -> Path:
    """Where the OME-Zarr of a dataset goes: ``<out or cache/datasets>/<name>.zarr``."""
    base = Path(out).expanduser() if out is not None else cache_dir() / "datasets"
    return base / f"{get_dataset(name).name}.zarr"


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file (hex)."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


class _DownloadFailed(Exception):
    """The network or the host failed (not a checksum problem)."""


def _check_file(path: Path, rf: RemoteFile, report: Report) -> None:
    """Verify a file against its known checksum, or report the one seen so a user can pin it."""
    seen = sha256_of(path)
    if rf.sha256 is None:
        report(f"{rf.name}: no published checksum; sha256 seen: {seen}")
    elif seen != rf.sha256.lower():
        raise WorkbenchError(f"checksum mismatch: sha256 {seen}, the catalog expects {rf.sha256}", path)


class _PoochBar(Progress):
    """The one progress adapter with the tqdm-like face pooch wants (``total``, ``update``, ``reset``,
    ``close``): reports ``callback(done, total)`` in bytes."""

    def update(self, n: int) -> None:
        self.advance(n)

    def reset(self) -> None:
        self.done = self.initial = 0

    def close(self) -> None:
        pass


def _progressbar(progress):
    """pooch accepts True/False or a tqdm-like object with total/update/reset/close."""
    if progress is not None and all(hasattr(progress, a) for a in ("update", "reset", "close")):
        return progress
    if callable(progress):
        return _PoochBar(progress)
    return False


def _download(info: DatasetInfo, layout: Layout, progress, report: Report, retries: int) -> dict[str, Path]:
    """Download every file of ``layout`` with pooch; returns file name -> local path.

    Raises:
        _DownloadFailed: network or host error (after ``retries`` retries).
        WorkbenchError: a downloaded file does not match its checksum (the download is deleted).
    """
    import pooch
    import requests

    folder = downloads_dir(info.name)
    registry = {f.name: (f"sha256:{f.sha256}" if f.sha256 else None) for f in layout.files}
    fetcher = pooch.create(
        path=folder,
        base_url="",
        registry=registry,
        urls={f.name: f.url for f in layout.files},
        retry_if_failed=retries,
    )
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # we report ourselves, in one line per file
    paths: dict[str, Path] = {}
    try:
        for rf in layout.files:
            downloader = pooch.HTTPDownloader(progressbar=_progressbar(progress), timeout=60)
            try:
                paths[rf.name] = Path(fetcher.fetch(rf.name, downloader=downloader))
            except ValueError as err:
                if "hash" not in str(err).lower():
                    raise
                seen = re.search(r"got ([0-9a-f]{64})", str(err))
                seen_text = f"sha256 {seen.group(1)}" if seen else "a different sha256"
                raise WorkbenchError(
                    f"checksum mismatch for {rf.name} downloaded from {rf.url}: {seen_text}, the catalog "
                    f"expects {rf.sha256}; the download was deleted",
                    folder,
                ) from err
            except requests.exceptions.RequestException as err:
                raise _DownloadFailed(f"{rf.url}: {_reason(err)}") from err
            if rf.sha256 is None:
                report(f"{rf.name}: no published checksum; sha256 seen: {sha256_of(paths[rf.name])}")
    finally:
        logger.setLevel(level)
    return paths


def _reason(err: Exception) -> str:
    """A few words for a failed request."""
    import requests

    response = getattr(err, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS certificate error"
    if isinstance(err, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(err, requests.exceptions.ConnectionError):
        return "no connection"
    return type(err).__name__


def _unpack(name: str, layout: Layout, paths: dict[str, Path]) -> Path:
    """Unzip the archives of ``layout`` into the download cache; returns the unpack folder."""
    import zipfile

    import pooch

    target = downloads_dir(name) / "unpacked"
    shutil.rmtree(target, ignore_errors=True)  # never mix in files of an earlier unpacking
    for rf in layout.files:
        if not rf.unpack:
            continue
        try:
            pooch.Unzip(extract_dir=str(target))(str(paths[rf.name]), "download", None)
        except zipfile.BadZipFile as err:
            shutil.rmtree(target, ignore_errors=True)
            raise WorkbenchError(f"not a valid zip archive: {err}", paths[rf.name]) from err
    return target


def _no_data_message(info: DatasetInfo, mirror: Path, failures: list[str]) -> str:
    """One line: why nothing could be obtained, and which files to put where."""
    options = " or ".join(" + ".join(files) for files in info.mirror_files())
    why = f" ({'; '.join(failures)})" if failures else " (no download link: the host needs a login)"
    return (
        f"dataset {info.name!r} could not be downloaded{why}. Put {options} in {mirror} "
        "(set WORKBENCH_DATA_DIR to use another folder) and run again"
    )


def obtain_files(
    info: DatasetInfo, progress=None, report: Report = _stderr, retries: int = 2
) -> tuple[Layout, list[Path]]:
    """Find or download the files of one layout of ``info``.

    Returns:
        the layout used and the folders its relative paths are resolved in (first match wins).

    Raises:
        WorkbenchError: no layout is in the mirror and none could be downloaded (the message names the
            mirror folder and the files to put there), or a checksum does not match.
    """
    mirror = mirror_dir(info.name)
    for layout in info.layouts:
        files = {f.name: mirror / f.name for f in layout.files}
        if all(p.is_file() for p in files.values()):
            for rf in layout.files:
                _check_file(files[rf.name], rf, report)
            roots = [mirror]
            if any(f.unpack for f in layout.files):
                roots.insert(0, _unpack(info.name, layout, files))
            return layout, roots
    failures: list[str] = []
    for layout in info.layouts:
        if not layout.downloadable:
            continue
        try:
            paths = _download(info, layout, progress, report, retries)
        except _DownloadFailed as err:
            failures.append(str(err))
            continue
        roots = [downloads_dir(info.name)]
        if any(f.unpack for f in layout.files):
            roots.insert(0, _unpack(info.name, layout, paths))
        return layout, roots
    raise WorkbenchError(_no_data_message(info, mirror, failures))


def _write_metadata(store: Path, info: DatasetInfo, layout: Layout) -> None:
    """Catalog metadata on the root; NGFF ``image-label.properties`` (class names) on semantic labels."""
    import zarr

    for label in layout.labels:
        if label.classes:
            attrs = zarr.open_group(str(store / "labels" / label.name), mode="a").attrs
            image_label = dict(attrs.get("image-label", {}))
            image_label["properties"] = [
                {"label-value": k, "name": v} for k, v in sorted(label.classes.items())
            ]
            attrs["image-label"] = image_label
    group = zarr.open_group(str(store), mode="a")
    group.attrs[METADATA_KEY] = {
        "name": info.name,
        "title": info.title,
        "voxel_size": list(info.voxel_size),
        "license": info.license,
        "citation": info.citation,
        "doi": info.doi,
        "homepage": info.homepage,
        "layout": layout.name,
        "labels": {
            label.name: {
                "kind": str(label.kind),
                "classes": {str(k): v for k, v in label.classes.items()},
                "note": label.note,
            }
            for label in layout.labels
        },
    }


def convert(
    info: DatasetInfo, layout: Layout, roots: list[Path], target: Path, progress=None, overwrite: bool = False
) -> Path:
    """Write raw and labels of ``layout`` to the OME-Zarr ``target`` (temporary name, renamed when done).

    If another process finished the same ``target`` meanwhile (and not ``overwrite``), that copy is kept.

    Raises:
        WorkbenchError: a file is missing or unreadable, or a label volume's shape differs from raw.
    """
    from workbench.io.omezarr import WriteOptions, write_ome_zarr

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        raw = open_source(layout.raw, roots, info.voxel_size, name="raw")
        labels = [open_label_source(label, roots, info.voxel_size) for label in layout.labels]
        for vol in labels:
            if vol.shape != raw.shape:
                raise WorkbenchError(
                    f"labels {vol.name!r} have shape {vol.shape}, raw has {raw.shape}", vol.source
                )
        write_ome_zarr(raw, tmp, WriteOptions(name="raw", voxel_size=info.voxel_size), progress=progress)
        for vol in labels:
            write_ome_zarr(
                vol, tmp, WriteOptions(name=vol.name, voxel_size=info.voxel_size, labels=True), progress=progress
            )
        _write_metadata(tmp, info, layout)
        if target.exists():
            if not overwrite:
                shutil.rmtree(tmp)
                return target
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def fetch_dataset(
    name: str,
    progress=None,
    out: str | Path | None = None,
    report: Report = _stderr,
    retries: int = 2,
    overwrite: bool = False,
) -> Path:
    """Make dataset ``name`` available as OME-Zarr and return its path.

    Args:
        name: a catalog name (see :func:`list_datasets`).
        progress: a tqdm-like object (``total``, ``update``, ``reset``, ``close``) for download progress,
            or ``callable(done, total)`` called in bytes for each download and each image written.
        out: folder for ``<name>.zarr`` (default ``<cache>/datasets``).
        report: receives one-line notes (e.g. the sha256 seen for files without a published checksum).
        retries: download retries after a network failure.
        overwrite: convert again even if the OME-Zarr exists.

    Returns:
        the OME-Zarr path: the raw image (NGFF multiscales at the root) with NGFF label images under
        ``labels/<name>`` and the catalog metadata in the root attribute ``workbench_dataset``.

    Raises:
        WorkbenchError: unknown name; no mirror and no download possible (the message says which
            files to put where); checksum mismatch; unreadable files.
    """
    info = get_dataset(name)
    target = dataset_path(info.name, out)
    if target.exists() and not overwrite:
        return target
    layout, roots = obtain_files(info, progress=progress, report=report, retries=retries)
    writer_progress = progress if callable(progress) and not hasattr(progress, "update") else None
    try:
        return convert(info, layout, roots, target, progress=writer_progress, overwrite=overwrite)
    finally:  # unpacked archives are re-made from the kept archive when needed
        shutil.rmtree(downloads_dir(info.name) / "unpacked", ignore_errors=True)


def dataset_volumes(name: str, out: str | Path | None = None, progress=None) -> dict[str, Volume]:
    """The volumes of a dataset (fetched if needed): ``{"raw": ..., "<label name>": ...}``.

    Raises:
        WorkbenchError: as :func:`fetch_dataset`.
    """
    from workbench.io import open_volume

    path = fetch_dataset(name, progress=progress, out=out)
    volumes = {"raw": open_volume(str(path))}
    for label in _label_names(path):
        volumes[label] = open_volume(str(path / "labels" / label))
    return volumes


def _label_names(path: Path) -> list[str]:
    import zarr

    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    return list(attrs.get(METADATA_KEY, {}).get("labels", {}))
