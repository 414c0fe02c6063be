"""Blockwise prediction: any readable volume in, a resumable OME-Zarr of probabilities out.

See :func:`predict_volume`; the Predictor contract is in docs/internals.md.
"""

from workbench.inference.blockwise import (
    PredictionResult,
    auto_workers,
    connect,
    default_block_shape,
    predict_array,
    predict_block,
    predict_volume,
)
from workbench.inference.output import open_prediction, read_info
from workbench.inference.tiling import TTA_TRANSFORMS, predict_region, ramp_weights

__all__ = [
    "TTA_TRANSFORMS",
    "PredictionResult",
    "auto_workers",
    "connect",
    "default_block_shape",
    "open_prediction",
    "predict_array",
    "predict_block",
    "predict_region",
    "predict_volume",
    "ramp_weights",
    "read_info",
]
