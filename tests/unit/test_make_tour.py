"""The README tour's script (docs/make_tour.py) and the rule that tests never write tracked files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_tour(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_tour", REPO / "docs" / "make_tour.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "SHAPE", (16, 64, 64))  # small sample, same slices
    return mod


def test_tour_project_is_reproducible_with_sensible_scribbles(make_tour, tmp_path):
    project = make_tour.make_project(tmp_path)
    assert project.root == tmp_path / "tour" and project.name == "tour"
    labels = project.annotations.read()
    truth = project.truth.read()
    drawn = sorted({int(z) for z in np.nonzero(labels)[0]})
    assert drawn and set(drawn) <= set(make_tour.SLICES)
    assert (truth[labels > 0] == labels[labels > 0]).all()  # every stroke lies on its class
    assert set(np.unique(labels)) == {0, 1, 2}
    assert project.state["arch"] == "unet2d" and project.state["arch_options"] == make_tour.ARCH_OPTIONS
    again = make_tour.make_project(tmp_path)  # made afresh, the same scribbles
    np.testing.assert_array_equal(again.annotations.read(), labels)
    (tmp_path / "other" / "tour").mkdir(parents=True)
    (tmp_path / "other" / "tour" / "keep.txt").write_text("not a project")
    with pytest.raises(SystemExit, match="not a workbench project"):
        make_tour.make_project(tmp_path / "other")
    assert (tmp_path / "other" / "tour" / "keep.txt").exists()


def test_tests_never_write_the_readme_images():
    for path in (REPO / "tests").rglob("*.py"):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text()
        assert "docs/images" not in text and '"docs" / "images"' not in text, f"{path} touches docs/images"
