"""Instance segmentation from predictions: connected components, seeded watershed, affinity agglomeration,
and the field's mutex watershed, multicut and GASP (bioimage-cpp).

:func:`segment` works on an in-memory probability map; :func:`segment_prediction` on a stored
prediction (``OUT.zarr`` of :func:`workbench.inference.predict_volume`), block by block, into an
OME-Zarr label image, with its settings in :class:`SegmentOptions`.

Modules (each imports only those above it): ``components`` (connected components, size filter),
``graph`` (region adjacency graph, greedy mean-affinity agglomeration), ``watershed``, ``affinity``,
``blockwise`` (the same, for volumes larger than memory), ``options`` (:class:`SegmentMethod`,
:class:`SegmentOptions`), ``offsets`` (a prediction's affinity offsets), ``solvers`` (mutex watershed,
multicut, GASP through bioimage-cpp), ``fragments`` (their over-segmentation), ``tasks`` (per-block work on
threads or Dask), ``stitching`` (their blockwise passes), ``run`` (the entry points).
"""

from workbench.segmentation.affinity import affinity_agglomeration, boundaries_from_affinities
from workbench.segmentation.blockwise import (
    AgglomerateBlockParams,
    BlockJob,
    WatershedBlockParams,
    agglomerate_blockwise,
    label_blockwise,
    merge_blockwise,
    watershed_blockwise,
)
from workbench.segmentation.components import connected_components, relabel_sequential, remove_small
from workbench.segmentation.graph import agglomerate, region_graph
from workbench.segmentation.options import METHOD_HELP, METHODS, SegmentMethod, SegmentOptions
from workbench.segmentation.run import segment, segment_prediction
from workbench.segmentation.watershed import (
    WatershedParams,
    make_seeds,
    merge_weak_boundaries,
    seeded_watershed,
)

__all__ = [
    "METHODS",
    "METHOD_HELP",
    "AgglomerateBlockParams",
    "BlockJob",
    "SegmentMethod",
    "SegmentOptions",
    "WatershedBlockParams",
    "WatershedParams",
    "affinity_agglomeration",
    "agglomerate",
    "agglomerate_blockwise",
    "boundaries_from_affinities",
    "connected_components",
    "label_blockwise",
    "make_seeds",
    "merge_blockwise",
    "merge_weak_boundaries",
    "region_graph",
    "relabel_sequential",
    "remove_small",
    "seeded_watershed",
    "segment",
    "segment_prediction",
    "watershed_blockwise",
]
