"""Fixtures shared by every test: tiny synthetic data and the real EM data directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real EM data (``WORKBENCH_DATA_DIR``, default ``../shared/data``). Fails, never skips, when absent."""
    d = _data_dir()
    assert (d / "isbi2012" / "train-volume.tif").exists(), f"real EM data missing in {d} (set WORKBENCH_DATA_DIR)"
    return d


@pytest.fixture(scope="session")
def isbi_dir(data_dir) -> Path:
    return data_dir / "isbi2012"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep screenshots and other things a person should look at (``test-artifacts/``)."""
    d = REPO / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_volume(rng) -> np.ndarray:
    """A 16^3 uint8 volume with a few bright disks on a noisy background."""
    from skimage.draw import disk

    vol = rng.integers(90, 140, size=(16, 16, 16)).astype(np.uint8)
    for z in range(16):
        rr, cc = disk((5 + z % 3, 6), 3, shape=(16, 16))
        vol[z, rr, cc] = 230
    return vol


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Keep caches and settings inside the test's tmp dir; never write into the working directory."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(_data_dir()))
    monkeypatch.setenv("WORKBENCH_NO_REEXEC", "1")


@pytest.fixture(scope="session")
def share_sample_project(tmp_path_factory):
    """The built-in sample (6 x 96 x 96) with two tiny trained, predicted and segmented runs (``share_sample``)."""
    from share_sample import make_sample_project

    return make_sample_project(tmp_path_factory.mktemp("share-sample") / "sample")
