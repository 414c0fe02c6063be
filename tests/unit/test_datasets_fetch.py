"""Fetching: pooch against a local HTTP server, checksum failures, the no-network message, the mirror, the CLI."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from workbench.cli import main as cli_main
from workbench.datasets import (
    DatasetInfo,
    LabelSource,
    Layout,
    RemoteFile,
    Source,
    dataset_volumes,
    fetch_dataset,
    get_dataset,
    list_datasets,
    mirror_dir,
    register_dataset,
    unregister_dataset,
    value_map,
)
from workbench.datasets.fetch import downloads_dir
from workbench.errors import WorkbenchError

NAME = "unit-zip"
SHAPE = (5, 24, 20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def arrays(rng):
    raw = rng.integers(0, 256, size=SHAPE, dtype=np.uint8)
    labels = np.where(rng.random(SHAPE) > 0.5, 255, 0).astype(np.uint8)
    return raw, labels


@pytest.fixture
def served(tmp_path, arrays):
    """A tmp folder served by ``python -m http.server`` on 127.0.0.1 holding ``tiny.zip``."""
    raw, labels = arrays
    root = tmp_path / "www"
    (root / "stage" / "tiny").mkdir(parents=True)
    tifffile.imwrite(root / "stage" / "tiny" / "volume.tif", raw, metadata={"axes": "ZYX"})
    tifffile.imwrite(root / "stage" / "tiny" / "labels.tif", labels, metadata={"axes": "ZYX"})
    with zipfile.ZipFile(root / "tiny.zip", "w") as zf:
        for name in ("volume.tif", "labels.tif"):
            zf.write(root / "stage" / "tiny" / name, f"tiny/{name}")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # wait until it answers (bounded: 10 s)
            try:
                urllib.request.urlopen(f"{base}/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("local http.server did not start")
        yield root, base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _register(url: str, sha256: str | None, name: str = NAME) -> None:
    layout = Layout(
        "zip",
        files=(RemoteFile("tiny.zip", url=url, sha256=sha256, unpack=True),),
        raw=Source(("tiny/volume.tif",)),
        labels=(
            LabelSource("original", Source(("tiny/labels.tif",)), kind="original", note="as in the file"),
            LabelSource(
                "semantic",
                Source(("labels.tif",)),  # found below the archive's top folder
                kind="semantic",
                classes={1: "background", 2: "object"},
                transform=value_map({0: 1, 255: 2}),
                note="1 = background, 2 = object",
            ),
        ),
        note="test archive",
    )
    info = DatasetInfo(
        name=name, title="tiny", description="A tiny test volume.", modality="synthetic", organism="none",
        tissue="none", voxel_size=(40.0, 4.0, 4.0), shape=SHAPE, license="CC0", citation="none (2024)",
        doi="10.0000/none", homepage="https://example.org", layouts=(layout,),
    )  # fmt: skip
    unregister_dataset(name)
    register_dataset(name)(lambda: info)


@pytest.fixture
def cleanup_registry():
    yield
    unregister_dataset(NAME)


@pytest.fixture
def empty_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(mirror))
    return mirror


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_volumes(path: Path, arrays) -> None:
    raw, labels = arrays
    vols = dataset_volumes(NAME, out=path.parent)
    assert set(vols) == {"raw", "original", "semantic"}
    assert vols["raw"].voxel_size == (40.0, 4.0, 4.0)
    np.testing.assert_array_equal(vols["raw"].read(), raw)
    np.testing.assert_array_equal(vols["original"].read(), labels)
    np.testing.assert_array_equal(vols["semantic"].read(), np.where(labels == 255, 2, 1))
    props = zarr.open_group(str(path / "labels" / "semantic"), mode="r").attrs["image-label"]["properties"]
    assert props == [{"label-value": 1, "name": "background"}, {"label-value": 2, "name": "object"}]
    meta = zarr.open_group(str(path), mode="r").attrs["workbench_dataset"]
    assert meta["name"] == NAME and meta["labels"]["semantic"]["kind"] == "semantic"


def test_download_verify_unzip_convert(served, arrays, empty_mirror, tmp_path, cleanup_registry):
    root, base = served
    _register(f"{base}/tiny.zip", _sha(root / "tiny.zip"))
    notes: list[str] = []
    out = fetch_dataset(NAME, out=tmp_path / "out", report=notes.append, retries=0)
    assert out == tmp_path / "out" / f"{NAME}.zarr" and out.is_dir()
    assert notes == []  # checksum known: nothing to report
    assert (downloads_dir(NAME) / "tiny.zip").is_file()
    assert not (downloads_dir(NAME) / "unpacked").exists()  # unpacked files are removed after conversion
    _check_volumes(out, arrays)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no partial left beside it
    # a second fetch returns the existing copy without touching the network
    unregister_dataset(NAME)
    _register("http://127.0.0.1:9/tiny.zip", None)
    assert fetch_dataset(NAME, out=tmp_path / "out", retries=0) == out


def test_unknown_checksum_is_reported_so_it_can_be_pinned(
    served, arrays, empty_mirror, tmp_path, cleanup_registry
):
    root, base = served
    _register(f"{base}/tiny.zip", None)
    notes: list[str] = []
    calls: list[tuple] = []
    out = fetch_dataset(
        NAME, out=tmp_path / "out", report=notes.append, retries=0, progress=lambda d, t: calls.append((d, t))
    )
    size = (root / "tiny.zip").stat().st_size
    assert (size, size) in calls  # the download reported in bytes through the callable
    assert len(calls) > 1  # and the conversion too
    assert notes == [f"tiny.zip: no published checksum; sha256 seen: {_sha(root / 'tiny.zip')}"]
    _check_volumes(out, arrays)


def test_tampered_download_fails_clearly_and_leaves_nothing(served, empty_mirror, tmp_path, cleanup_registry):
    root, base = served
    good = _sha(root / "tiny.zip")
    with open(root / "tiny.zip", "ab") as f:  # tamper with the served file
        f.write(b"tampered")
    _register(f"{base}/tiny.zip", good)
    with pytest.raises(WorkbenchError) as err:
        fetch_dataset(NAME, out=tmp_path / "out", retries=0)
    msg = str(err.value)
    assert "checksum mismatch" in msg and good in msg and _sha(root / "tiny.zip") in msg and "\n" not in msg
    assert "deleted" in msg
    left = [p for p in downloads_dir(NAME).rglob("*") if p.is_file()] if downloads_dir(NAME).exists() else []
    assert left == []
    out_dir = tmp_path / "out"
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_no_network_names_the_mirror_and_files(empty_mirror, tmp_path, cleanup_registry):
    port = _free_port()  # nothing listens there
    _register(f"http://127.0.0.1:{port}/tiny.zip", None)
    with pytest.raises(WorkbenchError) as err:
        fetch_dataset(NAME, out=tmp_path / "out", retries=0)
    msg = str(err.value)
    assert "could not be downloaded" in msg and "no connection" in msg and "\n" not in msg
    assert str(empty_mirror / NAME) in msg and "tiny.zip" in msg
    assert not (tmp_path / "out" / f"{NAME}.zarr").exists()


def test_missing_file_on_the_host_says_http_404(served, empty_mirror, tmp_path, cleanup_registry):
    _, base = served
    _register(f"{base}/missing.zip", None)
    with pytest.raises(WorkbenchError, match=r"missing\.zip: HTTP 404\)\. Put tiny\.zip in "):
        fetch_dataset(NAME, out=tmp_path / "out", retries=0)


def test_no_network_message_for_a_catalog_entry(empty_mirror, tmp_path, monkeypatch):
    """isbi2012 without mirror: the message lists both file sets (the TIFFs or the HDF5 file)."""
    import workbench.datasets.fetch as fetch_mod

    def offline(info, layout, progress, report, retries):
        raise fetch_mod._DownloadFailed(f"{layout.files[0].url}: ConnectionError")

    monkeypatch.setattr(fetch_mod, "_download", offline)
    with pytest.raises(WorkbenchError) as err:
        fetch_dataset("isbi2012", out=tmp_path / "out")
    msg = str(err.value)
    assert str(empty_mirror / "isbi2012") in msg
    assert "train-volume.tif + train-labels.tif or isbi.h5" in msg


def test_mirror_archive_is_used_without_network(served, arrays, empty_mirror, tmp_path, cleanup_registry):
    root, _ = served
    (empty_mirror / NAME).mkdir()
    (empty_mirror / NAME / "tiny.zip").write_bytes((root / "tiny.zip").read_bytes())
    _register(f"http://127.0.0.1:{_free_port()}/tiny.zip", _sha(root / "tiny.zip"))
    out = fetch_dataset(NAME, out=tmp_path / "out", retries=0)
    _check_volumes(out, arrays)
    assert list((empty_mirror / NAME).iterdir()) == [empty_mirror / NAME / "tiny.zip"]  # mirror untouched


def test_mirror_with_wrong_checksum_is_refused(served, empty_mirror, tmp_path, cleanup_registry):
    root, _ = served
    (empty_mirror / NAME).mkdir()
    (empty_mirror / NAME / "tiny.zip").write_bytes((root / "tiny.zip").read_bytes() + b"x")
    _register(f"http://127.0.0.1:{_free_port()}/tiny.zip", _sha(root / "tiny.zip"))
    with pytest.raises(WorkbenchError, match="checksum mismatch"):
        fetch_dataset(NAME, out=tmp_path / "out", retries=0)
    assert not (tmp_path / "out" / f"{NAME}.zarr").exists()


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_list(capsys):
    assert cli_main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "MODALITY"]
    row = next(line for line in lines if line.startswith("isbi2012 "))
    assert "50x4x4" in row and "30x512x512" in row
    assert cli_main(["datasets"]) == 0  # list is the default
    assert capsys.readouterr().out == out


def test_cli_info(capsys):
    assert cli_main(["datasets", "info", "cremi-a"]) == 0
    out = capsys.readouterr().out
    assert "volumes/raw" in out and "volumes/labels/neuron_ids" in out and "40x4x4" in out
    assert "10.1016/j.cell.2018.06.019" in out and "sample_A_20160501.hdf" in out


@pytest.mark.parametrize("name", [d.name for d in list_datasets()])
def test_cli_info_every_entry(name, capsys):
    assert cli_main(["datasets", "info", name]) == 0
    out = capsys.readouterr().out
    info = get_dataset(name)
    assert out.startswith(f"{name}: {info.title}") and info.doi in out and str(mirror_dir(name)) in out
    for layout in info.layouts:
        assert all(f.name in out for f in layout.files)


def test_cli_unknown_name_exits_2_with_one_line(capsys):
    assert cli_main(["datasets", "info", "snemi"]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "did you mean 'snemi3d'" in err
        and err.startswith("workbench datasets: error:")
    )
    assert cli_main(["datasets", "fetch", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_fetch_prints_the_path(served, arrays, empty_mirror, tmp_path, capsys, cleanup_registry):
    root, base = served
    _register(f"{base}/tiny.zip", _sha(root / "tiny.zip"))
    assert cli_main(["datasets", "fetch", NAME, "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "cli" / f"{NAME}.zarr")
    _check_volumes(Path(out), arrays)


# ------------------------------------------------------------------ other layouts, from a local mirror
def _register_layout(name: str, layout: Layout, shape) -> None:
    info = DatasetInfo(
        name=name, title="t", description="A test volume.", modality="synthetic", organism="none",
        tissue="none", voxel_size=(30.0, 8.0, 8.0), shape=shape, license="CC0", citation="none (2024)",
        doi="10.0000/none", homepage="https://example.org", layouts=(layout,),
    )  # fmt: skip
    unregister_dataset(name)
    register_dataset(name)(lambda: info)


def test_hdf5_layout_from_mirror(empty_mirror, tmp_path, rng):
    import h5py

    name = "unit-h5"
    raw = rng.integers(0, 256, size=(5, 12, 10), dtype=np.uint8)
    ids = rng.integers(0, 2**40, size=(5, 12, 10), dtype=np.uint64)
    (empty_mirror / name).mkdir()
    with h5py.File(empty_mirror / name / "sample_X.hdf", "w") as f:
        f["volumes/raw"] = raw
        f["volumes/labels/neuron_ids"] = ids
    layout = Layout(
        "hdf5",
        files=(RemoteFile("sample_X.hdf", url="http://127.0.0.1:9/sample_X.hdf"),),
        raw=Source(("sample_X.hdf",), key="volumes/raw"),
        labels=(
            LabelSource("instances", Source(("sample_X.hdf",), key="volumes/labels/neuron_ids"), note="ids"),
        ),
        note="test",
    )
    try:
        _register_layout(name, layout, raw.shape)
        notes: list[str] = []
        fetch_dataset(name, out=tmp_path / "out", report=notes.append, retries=0)
        vols = dataset_volumes(name, out=tmp_path / "out")
        np.testing.assert_array_equal(vols["raw"].read(), raw)
        np.testing.assert_array_equal(vols["instances"].read(), ids)
        assert vols["raw"].voxel_size == (30.0, 8.0, 8.0)
        assert len(notes) == 1 and "sample_X.hdf: no published checksum; sha256 seen:" in notes[0]
    finally:
        unregister_dataset(name)


def test_slice_folders_stacked_and_cropped_in_z(empty_mirror, tmp_path, rng):
    """As MitoEM: two archives; raw PNG slices cropped to the labelled slices, labels from two TIFF folders."""
    from PIL import Image

    name = "unit-stack"
    raw = rng.integers(0, 256, size=(8, 12, 10), dtype=np.uint8)
    ids = rng.integers(0, 50, size=(6, 12, 10), dtype=np.uint16)
    stage = tmp_path / "stage"
    stage.mkdir()
    (empty_mirror / name).mkdir()
    with zipfile.ZipFile(empty_mirror / name / "im.zip", "w") as zf:
        for z in range(8):
            Image.fromarray(raw[z]).save(stage / f"im{z:04d}.png")
            zf.write(stage / f"im{z:04d}.png", f"im/im{z:04d}.png")
    with zipfile.ZipFile(empty_mirror / name / "labels.zip", "w") as zf:
        for z in range(6):
            tifffile.imwrite(stage / f"seg{z:04d}.tif", ids[z])
            zf.write(stage / f"seg{z:04d}.tif", f"{'train' if z < 4 else 'val'}/seg{z:04d}.tif")
    layout = Layout(
        "zip",
        files=(
            RemoteFile("im.zip", url="http://127.0.0.1:9/im.zip", unpack=True),
            RemoteFile("labels.zip", url="http://127.0.0.1:9/labels.zip", unpack=True),
        ),
        raw=Source(("im",), z_range=(0, 6)),
        labels=(LabelSource("instances", Source(("train", "val")), note="ids"),),
        note="test",
    )
    try:
        _register_layout(name, layout, (6, 12, 10))
        fetch_dataset(name, out=tmp_path / "out", report=lambda _: None, retries=0)
        vols = dataset_volumes(name, out=tmp_path / "out")
        np.testing.assert_array_equal(vols["raw"].read(), raw[:6])
        np.testing.assert_array_equal(vols["instances"].read(), ids)
    finally:
        unregister_dataset(name)


def test_nifti_xyz_is_transposed_to_zyx(empty_mirror, tmp_path, rng):
    import nibabel as nib

    name = "unit-nifti"
    raw = rng.integers(0, 256, size=(4, 6, 5), dtype=np.uint8)  # z, y, x
    ids = rng.integers(0, 9, size=(4, 6, 5), dtype=np.uint16)
    (empty_mirror / name).mkdir()
    with zipfile.ZipFile(empty_mirror / name / "repo.zip", "w") as zf:
        for rel, arr in (("repo-master/data/v.nii.gz", raw), ("repo-master/mito/instance/v.nii.gz", ids)):
            path = tmp_path / rel.replace("/", "_")
            nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), np.eye(4)), path)  # stored x, y, z
            zf.write(path, rel)
    layout = Layout(
        "zip",
        files=(RemoteFile("repo.zip", url="http://127.0.0.1:9/repo.zip", unpack=True),),
        raw=Source(("data/v.nii.gz",), layout="xyz"),  # found below the archive's top folder
        labels=(LabelSource("instances", Source(("mito/instance/v.nii.gz",), layout="xyz"), note="ids"),),
        note="test",
    )
    try:
        _register_layout(name, layout, raw.shape)
        fetch_dataset(name, out=tmp_path / "out", report=lambda _: None, retries=0)
        vols = dataset_volumes(name, out=tmp_path / "out")
        np.testing.assert_array_equal(vols["raw"].read(), raw)
        np.testing.assert_array_equal(vols["instances"].read(), ids)
    finally:
        unregister_dataset(name)
