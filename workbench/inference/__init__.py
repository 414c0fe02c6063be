"""Blockwise prediction: any readable volume in, a resumable OME-Zarr of probabilities out.

See :func:`predict_volume` and :class:`PredictOptions`; the Predictor contract is
:class:`workbench.models.predictor.Predictor` (docs/internals.md).

Modules: ``options`` (the knobs), ``planner`` (blocks, halos, what is left), ``compute`` (one block),
``jobs`` (picklable block tasks), ``executors`` (threads or Dask), ``writer`` (the ``.partial`` store and
its done-markers), ``output`` (the store format, :func:`open_prediction`), ``tiling`` (tiles, blending,
TTA), ``slices`` (one z slice), ``blockwise`` (:func:`predict_volume`).
"""

from workbench.inference.blockwise import PredictionResult, predict_volume
from workbench.inference.compute import predict_array, predict_block
from workbench.inference.executors import auto_workers, connect
from workbench.inference.options import PredictOptions, StorageDtype
from workbench.inference.output import open_prediction, open_uncertainty, prediction_class_map, read_info
from workbench.inference.planner import default_block_shape
from workbench.inference.slices import predict_slice
from workbench.inference.tiling import TTA_TRANSFORMS, predict_region, ramp_weights

__all__ = [
    "TTA_TRANSFORMS",
    "PredictOptions",
    "PredictionResult",
    "StorageDtype",
    "auto_workers",
    "connect",
    "default_block_shape",
    "open_prediction",
    "open_uncertainty",
    "prediction_class_map",
    "predict_array",
    "predict_block",
    "predict_region",
    "predict_slice",
    "predict_volume",
    "ramp_weights",
    "read_info",
]
