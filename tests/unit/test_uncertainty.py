"""Uncertainty maths: entropy and the disagreement of views, scaled to [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.inference.uncertainty import (
    UncertaintyKind,
    disagreement,
    entropy,
    predict_with_uncertainty,
    slice_uncertainty,
)


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    certain = np.zeros((3, 1, 2, 2), np.float32)
    certain[1] = 1
    uniform = np.full((3, 1, 2, 2), 1 / 3, np.float32)
    assert np.allclose(entropy(certain), 0, atol=1e-4)
    assert np.allclose(entropy(uniform), 1, atol=1e-5)


def test_entropy_of_two_classes_matches_the_formula():
    p = np.array([0.2, 0.8], np.float32).reshape(2, 1, 1, 1)
    expected = -(0.2 * np.log(0.2) + 0.8 * np.log(0.8)) / np.log(2)
    assert entropy(p).item() == pytest.approx(expected, rel=1e-5)


def test_sigmoid_entropy_is_the_mean_binary_entropy_of_the_channels():
    p = np.array([0.5, 1.0], np.float32).reshape(2, 1, 1, 1)  # one channel undecided, one certain
    assert entropy(p, "sigmoid").item() == pytest.approx(0.5, abs=1e-4)


def test_disagreement_is_zero_for_equal_views_even_when_unsure():
    view = np.full((2, 1, 3, 3), 0.5, np.float32)
    assert np.allclose(disagreement([view, view.copy()]), 0, atol=1e-6)


def test_disagreement_is_one_for_opposite_confident_views():
    a = np.zeros((2, 1, 1, 1), np.float32)
    a[0] = 1
    b = a[::-1].copy()
    assert disagreement([a, b]).item() == pytest.approx(1.0, abs=1e-4)


def test_disagreement_never_exceeds_entropy_of_the_mean():
    rng = np.random.default_rng(0)
    views = []
    for _ in range(4):
        x = rng.random((3, 2, 4, 4)).astype(np.float32)
        views.append(x / x.sum(axis=0, keepdims=True))
    mean = np.mean(views, axis=0)
    assert np.all(disagreement(views) <= entropy(mean) + 1e-6)


def test_disagreement_needs_two_views_of_one_shape():
    v = np.full((2, 1, 2, 2), 0.5, np.float32)
    with pytest.raises(ValueError):
        disagreement([v])
    with pytest.raises(ValueError):
        disagreement([v, np.full((2, 1, 3, 3), 0.5, np.float32)])


class _Orientation:
    """A 'model' that sees orientation: class 1 left of the middle column, class 2 right of it."""

    out_channels = 2
    channel_names = ["a", "b"]
    spatial_dims = 2
    activation = "softmax"

    def predict(self, block):
        z, y, x = block.shape
        p = np.zeros((2, z, y, x), np.float32)
        p[0, :, :, : x // 2] = 1
        p[1, :, :, x // 2:] = 1
        return p


def test_views_of_an_orientation_dependent_model_disagree():
    raw = np.zeros((1, 8, 8), np.uint8)
    probs, unc = predict_with_uncertainty(_Orientation(), raw, "disagreement")
    assert probs.shape == (2, 1, 8, 8)
    assert unc.max() > 0.3  # rotated views put the classes elsewhere
    _, ent = predict_with_uncertainty(_Orientation(), raw, "entropy")
    assert np.allclose(ent, 0, atol=1e-4)  # one view is certain everywhere


def test_slice_uncertainty_checks_the_slice_and_the_kind():
    raw = np.zeros((2, 8, 8), np.uint8)
    probs, unc = slice_uncertainty(_Orientation(), raw, 1)
    assert probs.shape == (2, 8, 8) and unc.shape == (8, 8)
    with pytest.raises(IndexError):
        slice_uncertainty(_Orientation(), raw, 2)
    with pytest.raises(WorkbenchError, match="did you mean 'entropy'"):
        slice_uncertainty(_Orientation(), raw, 0, "entropi")
    assert UncertaintyKind.parse("disagreement") == "disagreement"
