"""Simulated scribbles (``workbench.annotations.simulate_scribbles``) on tiny synthetic dense labels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.annotations import ScribbleStyle, simulate_scribbles
from workbench.annotations.scribbles import INTERIOR, MEMBRANE

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def cell_labels(shape=(2, 96, 96), step=16) -> np.ndarray:
    """ISBI-like dense labels: 255 interior, 0 on a grid of 3-pixel membranes with a wobble."""
    z, y, x = np.indices(shape)
    wob = (2 * np.sin(x / 7.0 + z)).astype(int)
    membrane = ((y + wob) % step < 3) | (x % step < 3)
    return np.where(membrane, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("fraction", [0.0025, 0.005, 0.01, 0.05])
def test_hits_target_fraction_with_right_classes(fraction):
    dense = cell_labels(shape=(3, 160, 160))
    labels, achieved = simulate_scribbles(dense, fraction, seed=1)
    assert labels.shape == dense.shape and labels.dtype == np.uint8
    total = np.count_nonzero(labels) / labels.size
    assert abs(total - fraction) <= 0.2 * fraction
    assert achieved[MEMBRANE] > 0 and achieved[INTERIOR] > 0
    assert achieved[MEMBRANE] + achieved[INTERIOR] == pytest.approx(total)
    assert (dense[labels == MEMBRANE] == 0).all()
    assert (dense[labels == INTERIOR] == 255).all()
    assert set(np.unique(labels)) <= {0, MEMBRANE, INTERIOR}


def test_deterministic_and_seed_dependent():
    dense = cell_labels()
    a, _ = simulate_scribbles(dense, 0.02, seed=3)
    b, _ = simulate_scribbles(dense, 0.02, seed=3)
    c, _ = simulate_scribbles(dense, 0.02, seed=4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_strokes_are_connected_pieces_and_2d_input():
    dense = cell_labels()[0]
    labels, _ = simulate_scribbles(dense, 0.02, seed=0)
    assert labels.ndim == 2
    from scipy import ndimage as ndi

    n_pieces = ndi.label(labels > 0, structure=np.ones((3, 3)))[1]
    labelled = np.count_nonzero(labels)
    assert n_pieces < labelled / 10  # strokes, not scattered pixels


def test_style_slices_and_other_membrane_value():
    dense = np.where(cell_labels(shape=(3, 96, 96)) == 0, 1, 2).astype(np.uint8)  # the sample's truth: 1 membrane
    labels, achieved = simulate_scribbles(dense, 0.006, seed=0, membrane_value=1, slices=[1],
                                          style=ScribbleStyle(width=1, membrane_share=0.25))
    assert not labels[[0, 2]].any() and labels[1].any()
    assert (dense[labels == MEMBRANE] == 1).all() and (dense[labels == INTERIOR] == 2).all()
    assert achieved[INTERIOR] > 2 * achieved[MEMBRANE]


def test_benchmarks_use_the_public_simulator(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("scribbles", None)
    import scribbles

    assert scribbles.simulate_scribbles is simulate_scribbles
    assert scribbles.FRACTIONS == (0.0025, 0.005, 0.01, 0.05)


def test_overlay_png(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from scribbles import save_overlay_png

    dense = cell_labels()[0]
    labels, _ = simulate_scribbles(dense, 0.05, seed=0)
    path = save_overlay_png(dense, labels, tmp_path / "s.png")
    img = np.asarray(Image.open(path))
    assert img.shape == (96, 96, 3)
    assert (img[labels == MEMBRANE] == (230, 25, 75)).all()
