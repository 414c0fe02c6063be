"""Every kind of bad input: a one-line WorkbenchError naming the file, in the API and in the CLI
(exit code 2, one line on stderr), and no output left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.io import WriteOptions, open_labels, open_volume, write_ome_zarr


def _tiff(p: Path, data, **kw) -> Path:
    import tifffile

    tifffile.imwrite(p, data, photometric="minisblack", **kw)
    return p


def _h5(p: Path, **datasets) -> Path:
    import h5py

    with h5py.File(p, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return p


def _truncate(p: Path, fraction: float) -> Path:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * fraction)])
    return p


def _stack(rng, shape=(6, 64, 64)):
    return rng.integers(0, 255, size=shape).astype(np.uint8)


def make_case(name: str, d: Path, rng) -> tuple[str, list[str], str, str]:
    """(source, extra CLI args, the file the message must name, expected message pattern)."""
    if name == "missing":
        return str(d / "nope.tif"), [], "nope.tif", "no such file"
    if name == "txt":
        (d / "notes.txt").write_text("hello")
        return str(d / "notes.txt"), [], "notes.txt", "unsupported format"
    if name == "empty_folder":
        (d / "empty").mkdir()
        return str(d / "empty"), [], "empty", "no TIFF or PNG slices"
    if name == "corrupt_tiff":
        (d / "bad.tif").write_bytes(b"II*\x00" + bytes(rng.integers(0, 255, 500, dtype=np.uint8)))
        return str(d / "bad.tif"), [], "bad.tif", "TIFF"
    if name == "truncated_tiff":
        p = _truncate(_tiff(d / "cut.tif", _stack(rng)), 0.5)
        return str(p), [], "cut.tif", "truncated"
    if name == "truncated_compressed_tiff":
        p = _truncate(_tiff(d / "cutz.tif", _stack(rng), compression="zlib"), 0.6)
        return str(p), [], "cutz.tif", "TIFF|truncated|damaged"
    if name == "garbled_tiff":  # compressed page data overwritten: found while reading
        import tifffile

        p = _tiff(d / "garbled.tif", _stack(rng), compression="zlib")
        with tifffile.TiffFile(p) as t:
            off = t.pages[3].dataoffsets[0]
        b = bytearray(p.read_bytes())
        b[off + 2 : off + 200] = b"U" * 198
        p.write_bytes(bytes(b))
        return str(p), [], "garbled.tif", "cannot read the data"
    if name == "truncated_h5":
        p = _truncate(_h5(d / "cut.h5", raw=_stack(rng)), 0.3)
        return str(p), [], "cut.h5", "HDF5"
    if name == "corrupt_h5":
        (d / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(300))
        return str(d / "bad.h5"), [], "bad.h5", "HDF5"
    if name == "h5_missing_key":
        p = _h5(d / "k.h5", raw=_stack(rng), mask=_stack(rng))
        return f"{p}:/volume", [], "k.h5", r"no dataset '/volume' \(datasets: /mask .*, /raw .*\)"
    if name == "h5_no_key_ambiguous":
        p = _h5(d / "two.h5", raw=_stack(rng), mask=_stack(rng))
        return str(p), [], "two.h5", r"several 3D datasets.*/mask.*/raw"
    if name == "channels_4d":
        p = _h5(d / "c.h5", raw=rng.integers(0, 9, size=(3, 5, 16, 16)).astype(np.uint8))
        return str(p), [], "c.h5", r"3 channels.*--channel N"
    if name == "nan_raw":
        data = rng.random((40, 16, 16)).astype(np.float32)
        data[37, 3, 4] = np.inf
        p = _tiff(d / "nan.tif", data)
        return str(p), [], "nan.tif", "NaN or infinite"
    if name == "zero_size":
        p = _h5(d / "zero.h5", raw=np.zeros((0, 4, 4), np.uint8))
        return str(p), [], "zero.h5", "empty"
    if name == "float_labels":
        p = _tiff(d / "fl.tif", rng.random((4, 8, 8)).astype(np.float32))
        return str(p), ["--labels"], "fl.tif", "labels must be integers"
    if name == "negative_labels":
        lab = rng.integers(0, 5, size=(4, 8, 8)).astype(np.int16)
        lab[2, 3, 3] = -1
        p = _tiff(d / "neg.tif", lab)
        return str(p), ["--labels"], "neg.tif", "non-negative"
    raise AssertionError(name)


CASES = [
    "missing", "txt", "empty_folder", "corrupt_tiff", "truncated_tiff", "truncated_compressed_tiff",
    "garbled_tiff",     "truncated_h5", "corrupt_h5", "h5_missing_key", "h5_no_key_ambiguous", "channels_4d", "nan_raw",
    "zero_size", "float_labels", "negative_labels",
]


def _leftovers(d: Path) -> list[str]:
    return [p.name for p in d.rglob("*") if "partial" in p.name or p.name == "out.zarr"]


@pytest.mark.parametrize("case", CASES)
def test_api_bad_input(case, tmp_path, rng):
    src, extra, fname, pattern = make_case(case, tmp_path, rng)
    with pytest.raises(WorkbenchError, match=pattern) as info:
        if "--labels" in extra:
            write_ome_zarr(open_labels(src), tmp_path / "out.zarr", WriteOptions(name="l", labels=True))
        else:
            write_ome_zarr(open_volume(src), tmp_path / "out.zarr")
    msg = str(info.value)
    assert fname in msg and "\n" not in msg
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_input(case, tmp_path, rng, capsys):
    src, extra, fname, pattern = make_case(case, tmp_path, rng)
    code = main(["import", src, str(tmp_path / "out.zarr"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("workbench import: error:") and fname in err
    import re

    assert re.search(pattern, err), err
    assert _leftovers(tmp_path) == []


def test_labels_shape_mismatch_api_and_cli(tmp_path, rng, capsys):
    raw = _tiff(tmp_path / "raw.tif", _stack(rng, (6, 32, 32)))
    lab = _tiff(tmp_path / "lab.tif", _stack(rng, (6, 32, 30)))
    with pytest.raises(WorkbenchError, match=r"lab.tif: labels have shape \(6, 32, 30\) but the image has shape \(6, 32, 32\)"):
        open_labels(lab, like=open_volume(raw))
    out = tmp_path / "out.zarr"
    assert main(["import", str(raw), str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["import", str(lab), str(out), "--labels", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lab.tif" in err and "(6, 32, 30)" in err and "(6, 32, 32)" in err
    assert not (out / "labels").exists()
    assert not [p for p in tmp_path.rglob("*partial*")]


def test_existing_output_cli(tmp_path, rng, capsys):
    raw = _tiff(tmp_path / "raw.tif", _stack(rng, (4, 16, 16)))
    out = tmp_path / "o.zarr"
    assert main(["import", str(raw), str(out), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["import", str(raw), str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import", str(raw), str(out), "--no-progress", "--overwrite", "--voxel-size", "30", "5", "5"]) == 0
    assert open_volume(out).voxel_size == (30.0, 5.0, 5.0)


def test_channel_option_cli(tmp_path, rng, capsys):
    data = rng.integers(0, 9, size=(3, 5, 16, 16)).astype(np.uint8)
    p = _h5(tmp_path / "c.h5", raw=data)
    out = tmp_path / "c.zarr"
    assert main(["import", f"{p}:/raw", str(out), "--channel", "2", "--chunks", "2", "8", "8", "--no-progress"]) == 0
    np.testing.assert_array_equal(open_volume(out).read(), data[2])
