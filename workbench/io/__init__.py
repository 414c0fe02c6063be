"""Reading volumes from every supported format and writing OME-Zarr.

``open_volume`` / ``open_labels`` return a lazy :class:`Volume` (z, y, x, voxel size in nm) for TIFF
stacks, folders of TIFF/PNG slices, PNG/JPEG images, HDF5, zarr v2/v3 and OME-Zarr, N5 and MRC;
``write_ome_zarr`` / ``create_ome_zarr_image`` write NGFF images and labels with a pyramid.
"""

from workbench.io.omezarr import (
    OmeZarrImage,
    WriteOptions,
    create_ome_zarr_image,
    finalize_pyramid,
    write_ome_zarr,
)
from workbench.io.sources import SUPPORTED, open_labels, open_volume
from workbench.io.volume import Volume

__all__ = [
    "SUPPORTED",
    "OmeZarrImage",
    "Volume",
    "WriteOptions",
    "create_ome_zarr_image",
    "finalize_pyramid",
    "open_labels",
    "open_volume",
    "write_ome_zarr",
]
