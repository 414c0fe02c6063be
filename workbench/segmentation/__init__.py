"""Instance segmentation from predictions: connected components, seeded watershed, affinity agglomeration.

:func:`segment` works on an in-memory probability map; :func:`segment_prediction` on a stored
prediction (``OUT.zarr`` of :func:`workbench.inference.predict_volume`), block by block, into an
OME-Zarr label image.
"""

from workbench.segmentation.affinity import affinity_agglomeration, boundaries_from_affinities
from workbench.segmentation.blockwise import agglomerate_blockwise, label_blockwise, watershed_blockwise
from workbench.segmentation.components import connected_components, relabel_sequential, remove_small
from workbench.segmentation.run import METHODS, segment, segment_prediction
from workbench.segmentation.watershed import make_seeds, seeded_watershed

__all__ = [
    "METHODS",
    "affinity_agglomeration",
    "agglomerate_blockwise",
    "boundaries_from_affinities",
    "connected_components",
    "label_blockwise",
    "make_seeds",
    "relabel_sequential",
    "remove_small",
    "seeded_watershed",
    "segment",
    "segment_prediction",
    "watershed_blockwise",
]
