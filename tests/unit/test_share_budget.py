"""The share's size budget: what fits, and the drop order downsample -> crop -> drop layers."""

from __future__ import annotations

import pytest

from workbench.errors import WorkbenchError
from workbench.share import DROP_ORDER, LayerSize, plan_share
from workbench.share.budget import estimate_bytes, picture_grid

RAW = LayerSize("raw", 1, pyramid=True, drop_rank=0)
LAYERS = [RAW, LayerSize("truth", 1, drop_rank=3), LayerSize("a/prediction", 1, drop_rank=1),
          LayerSize("b/prediction", 1, drop_rank=2), LayerSize("a/instances", 4, drop_rank=5),
          LayerSize("b/instances", 4, drop_rank=4)]
SHAPE = (16, 1024, 1024)


def test_drop_order_is_stated():
    assert DROP_ORDER == ("downsample", "crop", "drop layers")


def test_everything_fits_at_full_resolution():
    plan = plan_share(SHAPE, LAYERS, 10**10)
    assert plan.factor == 1 and plan.crop == ((0, 16), (0, 1024), (0, 1024)) and not plan.dropped
    assert plan.steps == () and plan.shape == SHAPE and plan.estimate <= plan.budget


def test_downsampling_comes_first():
    full = estimate_bytes(SHAPE, LAYERS, 64, 512)
    plan = plan_share(SHAPE, LAYERS, full // 2)
    assert plan.factor == 2 and plan.crop == ((0, 16), (0, 1024), (0, 1024)) and not plan.dropped
    assert plan.shape == (16, 512, 512) and plan.estimate <= full // 2
    assert plan.steps == ("downsampled y and x by 2",)


def test_then_cropping_then_dropping():
    # at the largest factor (8: 128 px, the smallest side) the layers still do not fit: crop next
    at8 = estimate_bytes((16, 128, 128), LAYERS, 64, 512)
    plan = plan_share(SHAPE, LAYERS, at8 - 1, max_factor=8, min_side=128)
    assert plan.factor == 8 and not plan.dropped
    (z0, z1), (y0, y1), (x0, x1) = plan.crop
    assert (z1 - z0) < 16 and plan.estimate <= at8 - 1
    assert [s.split()[0] for s in plan.steps] == ["downsampled", "cropped"]
    # far less: the smallest crop does not fit either, layers are dropped, highest rank first
    plan = plan_share(SHAPE, LAYERS, estimate_bytes((8, 128, 128), [RAW], 64, 512) + 1000)
    assert plan.dropped == ("a/instances", "b/instances", "truth", "b/prediction", "a/prediction")
    assert plan.layers == ("raw",) and [s.split()[0] for s in plan.steps] == ["downsampled", "cropped", "dropped"]
    assert plan.crop[0] == (4, 12) and plan.shape == (8, 128, 128)


def test_only_as_many_layers_dropped_as_needed():
    small = (8, 128, 128)
    keep = [RAW, LAYERS[2], LAYERS[3]]
    budget = estimate_bytes(small, keep, 64, 512) + 10
    plan = plan_share(SHAPE, LAYERS, budget)
    assert set(plan.layers) == {"raw", "a/prediction", "b/prediction"} and plan.estimate <= budget


def test_too_small_a_budget_is_one_line():
    with pytest.raises(WorkbenchError, match="too small.*needs about"):
        plan_share(SHAPE, LAYERS, 10_000)


def test_fixed_bytes_count():
    full = estimate_bytes(SHAPE, LAYERS, 64, 512)
    assert plan_share(SHAPE, LAYERS, full + 100).factor == 1
    assert plan_share(SHAPE, LAYERS, full + 100, fixed=200).factor == 2


def test_picture_grid():
    assert picture_grid((100, 2048, 1024), 64, 512) == (64, 512, 256)
    assert picture_grid((3, 60, 40), 64, 512) == (3, 60, 40)
