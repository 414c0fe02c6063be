"""The Predictor Protocol: both trained predictors implement it; minimal ones are adapted with defaults."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.models import get_architecture
from workbench.models.predictor import (
    OPTIONAL_DEFAULTS,
    PREDICTOR_ATTRIBUTES,
    Predictor,
    PredictorAdapter,
    as_predictor,
)
from workbench.training.config import TrainConfig
from workbench.training.predictor import ForestPredictor, TorchPredictor

NORM = {"low": 0.0, "high": 255.0}


def _torch_predictor(tmp_path):
    import torch

    options = {"depth": 2, "base_channels": 4}
    info = get_architecture("unet2d")
    model = info.build(1, 2, **options)
    state = {"arch": "unet2d", "channel_names": ["membrane", "interior"], "normalisation": NORM,
             "model": model.state_dict(), "arch_options": options}
    return TorchPredictor(tmp_path, TrainConfig(arch="unet2d", arch_options=options), state, info,
                          torch.device("cpu"))


def _forest_predictor(tmp_path):
    options = {"sigmas": [1.0], "n_estimators": 2}
    info = get_architecture("forest")
    forest = info.build(1, 2, **options)
    state = {"arch": "forest", "channel_names": ["membrane", "interior"], "normalisation": NORM,
             "forest": forest.state_dict(), "arch_options": options}
    return ForestPredictor(tmp_path, TrainConfig(arch="forest", arch_options=options), state, info)


def test_attribute_list_is_the_protocol():
    annotated = set(Predictor.__annotations__)
    assert annotated == set(PREDICTOR_ATTRIBUTES)
    assert set(OPTIONAL_DEFAULTS) < set(PREDICTOR_ATTRIBUTES)


@pytest.mark.parametrize("make", [_torch_predictor, _forest_predictor], ids=["torch", "forest"])
def test_trained_predictors_implement_the_protocol(make, tmp_path):
    pred = make(tmp_path)
    assert isinstance(pred, Predictor)
    assert as_predictor(pred) is pred  # not wrapped
    for name in PREDICTOR_ATTRIBUTES:
        assert hasattr(pred, name), name
    assert pred.spatial_dims == 2 and pred.out_channels == len(pred.channel_names) == 2
    assert len(pred.halo) == len(pred.divisor) == 3 and pred.halo[0] == 0 and pred.divisor[0] == 1
    assert pred.in_channels == 1 and pred.tile_shape is None and pred.run_dir == tmp_path
    assert pred.target == "semantic" and pred.activation == "softmax" and pred.model is not None
    out = pred.predict(np.zeros((2, 32, 32), np.uint8))
    assert out.shape == (2, 2, 32, 32) and out.dtype == np.float32


def test_minimal_predictor_is_adapted_with_defaults():
    class Minimal:
        out_channels = 3

        def predict(self, block):
            return np.zeros((3, *block.shape), np.float32)

    raw = Minimal()
    assert not isinstance(raw, Predictor)
    pred = as_predictor(raw)
    assert isinstance(pred, PredictorAdapter) and isinstance(pred, Predictor)
    assert as_predictor(pred) is pred
    for name, default in OPTIONAL_DEFAULTS.items():
        assert getattr(pred, name) == default, name
    assert pred.channel_names == ["channel 0", "channel 1", "channel 2"]
    assert pred.predict(np.zeros((1, 4, 4))).shape == (3, 1, 4, 4)
    # what it has wins over the defaults; writes go through (torch.compile replaces ``model``)
    raw.halo = (1, 2, 2)
    assert pred.halo == (1, 2, 2)
    pred.model = "compiled"
    assert raw.model == "compiled"


def test_not_a_predictor():
    with pytest.raises(WorkbenchError, match="predict"):
        as_predictor(object())

    class NoChannels:
        def predict(self, block):
            return block

    with pytest.raises(WorkbenchError, match="out_channels"):
        as_predictor(NoChannels())
