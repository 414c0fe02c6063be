"""``workbench view``: URL printed, bad input refused with one line, a busy port replaced."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest
import tifffile


@pytest.fixture
def files(tmp_path, rng):
    raw = rng.integers(0, 255, (10, 32, 32)).astype(np.uint8)
    paths = {
        "raw": tmp_path / "raw.tif",
        "labels": tmp_path / "labels.tif",
        "small": tmp_path / "small.tif",
        "float": tmp_path / "float.tif",
        "pred": tmp_path / "pred.h5",
    }
    tifffile.imwrite(paths["raw"], raw)
    tifffile.imwrite(paths["labels"], (raw > 200).astype(np.uint8))
    tifffile.imwrite(paths["small"], np.zeros((10, 16, 32), np.uint8))
    tifffile.imwrite(paths["float"], np.full((10, 32, 32), 0.5, np.float32))
    import h5py

    with h5py.File(paths["pred"], "w") as f:
        f["p"] = rng.random((2, 10, 32, 32)).astype(np.float32)
    return paths


def _view(*args):
    return subprocess.run([sys.executable, "-m", "workbench", "view", *map(str, args), "--no-wait"],
                          capture_output=True, text=True, timeout=120)


def test_view_prints_url(files):
    out = _view(files["raw"], "--labels", files["labels"], "--seg", files["labels"], "--pred", f"{files['pred']}:/p")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Neuroglancer: http://127.0.0.1:") and "/v/" in out.stdout


def test_view_in_process_builds_all_layers(files):
    import argparse

    from workbench.commands.view import build_viewer

    args = argparse.Namespace(src=str(files["raw"]), labels=str(files["labels"]), pred=f"{files['pred']}:/p",
                              seg=str(files["labels"]), voxel_size=None, port=0, bind="127.0.0.1", layout=None)
    viewer, notes = build_viewer(args)
    try:
        assert viewer.layer_names() == ["raw", "annotations", "prob: class 1", "prob: class 2", "segmentation"]
        assert notes == []
    finally:
        viewer.close()


@pytest.mark.parametrize("option, name, message", [
    ("--labels", "small", r"\(10, 16, 32\).*\(10, 32, 32\)"),
    ("--seg", "small", r"\(10, 16, 32\).*\(10, 32, 32\)"),
    ("--labels", "float", "integers"),
])
def test_view_refuses_bad_layers(files, option, name, message):
    import re

    out = _view(files["raw"], option, files[name])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench view: error:") and re.search(message, lines[0]), out.stderr


def test_view_missing_source(tmp_path):
    out = _view(tmp_path / "nothing.tif")
    assert out.returncode == 2 and "nothing.tif" in out.stderr


def test_view_busy_port_picks_another(files):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = _view(files["raw"], "--port", port)
    assert out.returncode == 0, out.stderr
    assert f"port {port} is in use" in out.stderr
    assert f":{port}/" not in out.stdout
