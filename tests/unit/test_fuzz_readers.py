"""Fuzzed readers: corrupted and adversarial files (truncations, bit flips, huge claimed shapes, wrong dtypes,
NaN voxel sizes, deeply nested JSON) fed to every reader. Each may be read or refused, but only with the
project's one-line WorkbenchError: no other exception, no hang (each example has a time limit) and no memory
blow-up (headers that claim 10^12 voxels are refused before anything is allocated).

``FUZZ_EXAMPLES`` (environment) sets the examples per reader: a few dozen in ``make test``, more in
``benchmarks/bench_robustness.py``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
import tracemalloc
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
SECONDS_PER_EXAMPLE = 10
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large], database=None)
#: what every example of a session saw (the benchmark reads it): {reader: [examples, accepted, refused]}
SEEN: dict[str, list[int]] = {}


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the main thread when the block takes longer than ``seconds``."""
    def alarm(signum, frame):
        raise Hang(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def exercise(name: str, action: Callable[[], object]) -> None:
    """Run ``action`` under the time limit: it may succeed or raise a one-line WorkbenchError, nothing else."""
    counts = SEEN.setdefault(name, [0, 0, 0])
    counts[0] += 1
    try:
        with time_limit(SECONDS_PER_EXAMPLE):
            action()
        counts[1] += 1
    except WorkbenchError as err:
        assert "\n" not in str(err), str(err)
        counts[2] += 1


def read_some(src: str) -> None:
    """Open ``src`` and read what a user would first read: a slice, and the whole volume when small."""
    from workbench.io import open_labels, open_volume

    vol = open_volume(src)
    vol[0]
    if vol.nbytes <= 16 * 1024**2:
        vol.read()
    if vol.dtype.kind in "iub":
        open_labels(src)[0]


@contextmanager
def scratch():
    d = Path(tempfile.mkdtemp(prefix="wbfuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- mutations
@st.composite
def mutations(draw, size: int):
    """A list of edits to a file of ``size`` bytes: a truncation, bit flips, overwritten byte runs."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "flip", "overwrite", "overwrite-header"]))
        if kind == "truncate":
            edits.append(("truncate", draw(st.integers(0, max(0, size - 1)))))
        elif kind == "flip":
            edits.append(("flip", draw(st.integers(0, max(0, size - 1))), draw(st.integers(0, 7))))
        else:
            hi = min(size, 512) if kind == "overwrite-header" else size
            at = draw(st.integers(0, max(0, hi - 1)))
            edits.append(("overwrite", at, draw(st.binary(min_size=1, max_size=8))))
    return edits


def mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for e in edits:
        if e[0] == "truncate":
            del b[e[1]:]
        elif e[0] == "flip" and e[1] < len(b):
            b[e[1]] ^= 1 << e[2]
        elif e[0] == "overwrite":
            b[e[1]:e[1] + len(e[2])] = e[2]
    return bytes(b)


def _tiff_bytes(dtype, compression, tiled: bool) -> bytes:
    import tifffile

    buf = io.BytesIO()
    data = (np.arange(3 * 32 * 32) % 251).reshape(3, 32, 32).astype(dtype)
    kwargs = {"tile": (16, 16)} if tiled else {}
    tifffile.imwrite(buf, data, photometric="minisblack", compression=compression,
                     resolution=(1 / 0.004, 1 / 0.004), **kwargs)
    return buf.getvalue()


TIFF_SEEDS = {(d, c, t): _tiff_bytes(d, c, t) for d in ("uint8", "uint16", "float32")
              for c in (None, "zlib") for t in (False, True)}


@FUZZ
@given(seed=st.sampled_from(sorted(TIFF_SEEDS, key=str)), data=st.data())
def test_tiff(seed, data):
    raw = TIFF_SEEDS[seed]
    bad = mutate(raw, data.draw(mutations(len(raw))))
    with scratch() as d:
        (d / "f.tif").write_bytes(bad)
        exercise("tiff", lambda: read_some(str(d / "f.tif")))


def _png_bytes(mode: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    arr = (np.arange(24 * 24) % 255).reshape(24, 24)
    Image.fromarray(arr.astype(np.uint16 if mode == "I;16" else np.uint8), mode=None).save(buf, "PNG")
    return buf.getvalue()


PNG_SEEDS = {m: _png_bytes(m) for m in ("L", "I;16")}


@FUZZ
@given(mode=st.sampled_from(sorted(PNG_SEEDS)), data=st.data(), stack=st.booleans())
def test_png(mode, data, stack):
    raw = PNG_SEEDS[mode]
    bad = mutate(raw, data.draw(mutations(len(raw))))
    with scratch() as d:
        if stack:  # a folder of slices: one good, one damaged
            (d / "s").mkdir()
            (d / "s" / "a0.png").write_bytes(raw)
            (d / "s" / "a1.png").write_bytes(bad)
            exercise("png", lambda: read_some(str(d / "s")))
        else:
            (d / "f.png").write_bytes(bad)
            exercise("png", lambda: read_some(str(d / "f.png")))


def _h5_bytes(chunked: bool) -> bytes:
    import h5py

    with scratch() as d:
        with h5py.File(d / "f.h5", "w") as f:
            f.create_dataset("raw", data=(np.arange(4 * 16 * 16) % 200).reshape(4, 16, 16).astype(np.uint8),
                             chunks=(1, 16, 16) if chunked else None, compression="gzip" if chunked else None)
            f["raw"].attrs["resolution"] = [40.0, 4.0, 4.0]
        return (d / "f.h5").read_bytes()


H5_SEEDS = {c: _h5_bytes(c) for c in (False, True)}


@FUZZ
@given(chunked=st.booleans(), data=st.data())
def test_hdf5(chunked, data):
    raw = H5_SEEDS[chunked]
    # HDF5's superblock and object headers sit in the first 2 kB; flips there are the interesting ones
    bad = mutate(raw, data.draw(mutations(min(len(raw), 4096))))
    with scratch() as d:
        (d / "f.h5").write_bytes(bad)
        exercise("hdf5", lambda: read_some(str(d / "f.h5")))


@FUZZ
@given(resolution=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                                     st.integers(-10, 10)), max_size=4))
def test_hdf5_voxel_size_attributes(resolution):
    import h5py

    with scratch() as d:
        with h5py.File(d / "f.h5", "w") as f:
            f["raw"] = np.zeros((2, 8, 8), np.uint8)
            try:
                f["raw"].attrs["resolution"] = resolution
            except (TypeError, ValueError):  # h5py cannot store a mixed list: store its text
                f["raw"].attrs["resolution"] = str(resolution)
        exercise("hdf5", lambda: read_some(str(d / "f.h5")))


def _mrc_bytes(dtype) -> bytes:
    import mrcfile

    with scratch() as d:
        with mrcfile.new(d / "f.mrc") as m:
            m.set_data((np.arange(3 * 16 * 16) % 100).reshape(3, 16, 16).astype(dtype))
            m.voxel_size = (40.0, 20.0, 20.0)
        return (d / "f.mrc").read_bytes()


MRC_SEEDS = {d: _mrc_bytes(d) for d in ("int8", "int16", "float32", "uint8")}
MRC_FIELDS = {"nx": 0, "ny": 4, "nz": 8, "mode": 12, "mx": 28, "my": 32, "mz": 36, "nsymbt": 92}


@FUZZ
@given(dtype=st.sampled_from(sorted(MRC_SEEDS)), data=st.data(),
       fields=st.dictionaries(st.sampled_from(sorted(MRC_FIELDS)), st.integers(-2**31, 2**31 - 1), max_size=3),
       cella=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3))
def test_mrc(dtype, data, fields, cella):
    b = bytearray(MRC_SEEDS[dtype])
    for name, value in fields.items():
        b[MRC_FIELDS[name]:MRC_FIELDS[name] + 4] = np.int32(value).tobytes()
    b[40:52] = np.array(cella, "<f4").tobytes()  # cell size: the voxel size's numerator
    bad = mutate(bytes(b), data.draw(mutations(len(b))))
    with scratch() as d:
        (d / "f.mrc").write_bytes(bad)
        exercise("mrc", lambda: read_some(str(d / "f.mrc")))


# ---------------------------------------------------------------------------------------------- JSON metadata
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64), st.floats(allow_nan=True),
                      st.text(max_size=6))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=12)
DEEP = "[" * 100000 + "]" * 100000


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True)


def _with_random_entries(base: dict, data, keys: list[str]) -> dict:
    out = dict(base)
    for k in data.draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        out[k] = data.draw(JSON)
    return out


def _overridden(meta: dict, **values) -> dict:
    """``meta`` with the entries of ``values`` that are not None."""
    return {**meta, **{k: v for k, v in values.items() if v is not None}}


ZARRAY = {"zarr_format": 2, "shape": [2, 8, 8], "chunks": [1, 8, 8], "dtype": "|u1", "compressor": None,
          "fill_value": 0, "order": "C", "filters": None, "dimension_separator": "/"}
HUGE_SHAPES = st.lists(st.sampled_from([0, -1, 1, 7, 10**4, 10**6, 10**12, 2**63 - 1]), min_size=0, max_size=5)


@FUZZ
@given(data=st.data(), shape=st.one_of(st.none(), HUGE_SHAPES), chunks=st.one_of(st.none(), HUGE_SHAPES),
       dtype=st.one_of(st.none(), st.sampled_from(["<f8", "|b1", "<c16", "|O", "<U4", "<M8[s]", "|V3", "x", ">u2"])),
       deep=st.booleans())
def test_zarr_metadata(data, shape, chunks, dtype, deep):
    meta = _overridden(_with_random_entries(ZARRAY, data, list(ZARRAY)), shape=shape, chunks=chunks, dtype=dtype)
    with scratch() as d:
        a = d / "a.zarr"
        a.mkdir()
        (a / ".zarray").write_text(DEEP if deep else _dump(meta))
        (a / "0").mkdir()
        (a / "0" / "0").mkdir()
        (a / "0" / "0" / "0").write_bytes(data.draw(st.binary(max_size=80)))
        exercise("zarr", lambda: read_some(str(a)))


def _ome_attrs(voxel, data) -> dict:
    ds = {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": voxel}]}
    ms = {"version": "0.4", "name": "x", "datasets": [ds],
          "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]}
    ms = _with_random_entries(ms, data, ["version", "datasets", "axes", "coordinateTransformations", "name"])
    ds.update(_with_random_entries({}, data, ["path", "coordinateTransformations"]))
    return {"multiscales": data.draw(st.sampled_from([[ms], [ms, 3], ms, [], "x"]))}


@FUZZ
@given(data=st.data(), voxel=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4), deep=st.booleans())
def test_ome_zarr_metadata(tmp_path_factory, data, voxel, deep):
    from workbench.io import write_ome_zarr

    base = tmp_path_factory.getbasetemp() / "ome-seed.zarr"
    if not base.exists():
        write_ome_zarr(np.zeros((2, 8, 8), np.uint8), base)
    with scratch() as d:
        img = d / "i.zarr"
        shutil.copytree(base, img)
        attrs = DEEP if deep else _dump(_ome_attrs(voxel, data))
        (img / ".zattrs").write_text(attrs)
        exercise("ome-zarr", lambda: read_some(str(img)))


N5_ATTRS = {"dimensions": [8, 8, 2], "blockSize": [8, 8, 1], "dataType": "uint8", "compression": {"type": "raw"},
            "pixelResolution": {"dimensions": [4.0, 4.0, 40.0], "unit": "nm"}}


@FUZZ
@given(data=st.data(), dims=st.one_of(st.none(), HUGE_SHAPES), block=st.one_of(st.none(), HUGE_SHAPES),
       deep=st.booleans())
def test_n5_metadata(data, dims, block, deep):
    attrs = _overridden(_with_random_entries(N5_ATTRS, data, list(N5_ATTRS) + ["resolution"]), dimensions=dims,
                        blockSize=block)
    with scratch() as d:
        n5 = d / "v.n5"
        (n5 / "raw" / "0" / "0").mkdir(parents=True)
        (n5 / "attributes.json").write_text('{"n5": "2.0.0"}')
        (n5 / "raw" / "attributes.json").write_text(DEEP if deep else _dump(attrs))
        (n5 / "raw" / "0" / "0" / "0").write_bytes(data.draw(st.binary(max_size=80)))
        exercise("n5", lambda: read_some(str(n5 / "raw")))


# ---------------------------------------------------------------------------------------------- project files
@pytest.fixture(scope="module")
def seed_project(tmp_path_factory):
    from workbench.project import Project

    root = tmp_path_factory.mktemp("seed") / "p"
    project = Project.create(root, np.zeros((2, 16, 16), np.uint8))
    project.annotations.fill_box((0, 0, 0), (1, 4, 4), 1)
    project.annotations.fill_box((1, 4, 4), (2, 8, 8), 2)
    project.annotations.undo()
    return root


def _copy_project(seed: Path, d: Path) -> Path:
    import workbench.annotations.store as store_mod

    store_mod._SHARED.clear()  # each example opens its copy as a new process would
    root = d / "p"
    shutil.copytree(seed, root)
    return root


def _open_project(root: Path) -> None:
    from workbench.project import Project

    p = Project.open(root)
    p.name, p.shape, p.voxel_size, p.classes, dict(p.state), p.truth_path
    store = p.annotations
    store.read()
    store.counts()
    store.history()
    if store.can_undo():
        store.undo()


PROJECT_KEYS = ["schema", "name", "raw", "truth", "classes", "state", "created"]


@FUZZ
@given(data=st.data(), how=st.sampled_from(["entries", "bytes", "deep", "raw-entries"]))
def test_project_json(seed_project, data, how):
    text = (seed_project / "project.json").read_text()
    meta = json.loads(text)
    if how == "entries":
        new = _dump(_with_random_entries(meta, data, PROJECT_KEYS))
    elif how == "raw-entries":
        meta["raw"] = _with_random_entries(meta["raw"], data, ["source", "shape", "voxel_size", "dtype"])
        meta["raw"]["voxel_size"] = data.draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4))
        new = _dump(meta)
    elif how == "deep":
        new = DEEP
    else:
        new = mutate(text.encode(), data.draw(mutations(len(text)))).decode("utf-8", "replace")
    with scratch() as d:
        root = _copy_project(seed_project, d)
        (root / "project.json").write_text(new)
        exercise("project.json", lambda: _open_project(root))


JOURNAL_LINE = st.one_of(JSON.map(_dump), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                         st.just(DEEP[:5000] + DEEP[-5000:]),
                         st.fixed_dictionaries({"id": st.integers(-5, 10**18), "op": st.sampled_from(
                             ["stroke", "undo", "fill_box", "clear", "import"]), "undo": JSON,
                             "undoes": JSON}).map(_dump))


@FUZZ
@given(data=st.data(), lines=st.lists(JOURNAL_LINE, max_size=5), cut=st.booleans())
def test_annotation_journal(seed_project, data, lines, cut):
    with scratch() as d:
        root = _copy_project(seed_project, d)
        journal = root / "annotations.jsonl"
        text = journal.read_text() + "".join(line.replace("\n", " ") + "\n" for line in lines)
        if cut:
            text = text[: data.draw(st.integers(0, len(text)))]
        journal.write_text(text)
        for name in data.draw(st.lists(st.sampled_from(["00000000.npz", "00000001.npz", "00000001.redo.npz"]),
                                       max_size=2)):
            (root / "annotations.undo" / name).write_bytes(data.draw(st.binary(max_size=64)))
        exercise("journal", lambda: _open_project(root))


CONFIG_KEYS = ["arch", "arch_options", "target", "patch_shape", "batch_size", "iterations", "minutes", "lr",
               "augment", "device", "precision", "schedule", "semi_supervised", "offsets", "classes"]


@FUZZ
@given(data=st.data(), how=st.sampled_from(["entries", "bytes", "deep", "any"]))
def test_config_json(data, how):
    from workbench.training.config import TrainConfig

    base = TrainConfig(arch="unet2d", iterations=3).to_dict()
    if how == "entries":
        text = _dump(_with_random_entries(base, data, CONFIG_KEYS))
    elif how == "deep":
        text = DEEP
    elif how == "any":
        text = _dump(data.draw(JSON))
    else:
        raw = json.dumps(base)
        text = mutate(raw.encode(), data.draw(mutations(len(raw)))).decode("utf-8", "replace")
    with scratch() as d:
        (d / "config.json").write_text(text)

        def load():
            cfg = TrainConfig.load(d / "config.json")
            TrainConfig.from_dict(cfg.to_dict())

        exercise("config.json", load)


@FUZZ
@given(data=st.data())
def test_checkpoint(data, tmp_path_factory):
    """A damaged checkpoint.pt is refused in one line (torch.load with weights_only=True)."""
    import torch

    from workbench.training.checkpoint import load_checkpoint

    seed = tmp_path_factory.getbasetemp() / "seed.pt"
    if not seed.exists():
        torch.save({"iteration": 3, "model": {"w": torch.zeros(4, 4)}, "arch": "unet2d"}, seed)
    raw = seed.read_bytes()
    with scratch() as d:
        (d / "checkpoint.pt").write_bytes(mutate(raw, data.draw(mutations(len(raw)))))
        exercise("checkpoint", lambda: load_checkpoint(d / "checkpoint.pt"))


# ---------------------------------------------------------------------------------------------- huge claims
def _huge_tiff(d: Path) -> Path:
    import tifffile

    p = d / "huge.tif"
    tifffile.imwrite(p, np.zeros((1, 64, 64), np.uint8), compression="zlib", photometric="minisblack")
    b = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as t:  # ImageWidth and ImageLength of the one page: 10^6 x 10^6 = 10^12 pixels
        for tag in ("ImageWidth", "ImageLength"):
            tg = t.pages[0].tags[tag]
            fmt = "<I" if tg.dtype in (4, 16) else "<H"
            b[tg.valueoffset:tg.valueoffset + (4 if fmt == "<I" else 2)] = (
                np.uint32(1_000_000).tobytes() if fmt == "<I" else np.uint16(65535).tobytes())
            tg_dtype = tg.dtype
    if tg_dtype not in (4, 16):  # SHORT tags hold at most 65535 x 65535 = 4.3 * 10^9: still refused
        pass
    p.write_bytes(bytes(b))
    return p


def _huge_zarr(d: Path) -> Path:
    a = d / "huge.zarr"
    a.mkdir()
    (a / ".zarray").write_text(_dump({**ZARRAY, "shape": [10**4, 10**4, 10**4], "chunks": [10**4, 10**4, 10**4]}))
    return a


def _huge_n5(d: Path) -> Path:
    n5 = d / "huge.n5"
    (n5 / "raw").mkdir(parents=True)
    (n5 / "attributes.json").write_text('{"n5": "2.0.0"}')
    (n5 / "raw" / "attributes.json").write_text(_dump({**N5_ATTRS, "dimensions": [10**4] * 3,
                                                        "blockSize": [10**4] * 3}))
    return n5 / "raw"


def _huge_h5(d: Path) -> Path:
    import h5py

    p = d / "huge.h5"
    with h5py.File(p, "w") as f:  # a chunked dataset claiming 10^12 voxels in 10^9-voxel chunks, none written
        f.create_dataset("raw", shape=(10**4, 10**4, 10**4), chunks=(1000, 1000, 1000), dtype=np.uint8)
    return p


def _huge_mrc(d: Path) -> Path:
    import mrcfile

    p = d / "huge.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.zeros((2, 8, 8), np.uint8))
    b = bytearray(p.read_bytes())
    b[0:12] = np.array([10**4, 10**4, 10**4], "<i4").tobytes()
    p.write_bytes(bytes(b))
    return p


def _huge_png(d: Path) -> Path:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    p = d / "huge.png"  # a valid header claiming 10^6 x 10^6 pixels, a tiny compressed body
    ihdr = struct.pack(">IIBBBBB", 10**6, 10**6, 8, 0, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                  + chunk(b"IEND", b""))
    return p


#: formats where a huge, sparsely written volume is legitimate (chunks read lazily, unwritten ones are fill)
LAZY = {_huge_h5}


@pytest.mark.parametrize("make", [_huge_tiff, _huge_zarr, _huge_n5, _huge_h5, _huge_mrc, _huge_png],
                         ids=["tiff", "zarr", "n5", "hdf5", "mrc", "png"])
def test_a_header_claiming_a_huge_volume_is_refused_before_allocating(tmp_path, make):
    """Open and read the first slice of a file whose header claims ~10^12 voxels: refused (or a lazily read
    slice), and Python never holds more than 64 MB while trying (tracemalloc sees numpy's buffers)."""
    from workbench.io import open_volume

    src = make(tmp_path)
    tracemalloc.start()
    try:
        with time_limit(SECONDS_PER_EXAMPLE):
            try:
                vol = open_volume(str(src))
                region = vol[0, :64, :64]  # a lazy format may hold it: a small read stays small
                refused = None
            except WorkbenchError as err:
                refused, region = err, None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024**2, f"{peak / 1e6:.0f} MB allocated for a 64 x 64 read"
    if refused is not None:
        assert "\n" not in str(refused) and src.name in str(refused), str(refused)
    else:
        assert vol.size >= 10**9 and region.shape == (64, 64)
        assert make in LAZY, f"{src.name}: a damaged header was accepted"
