"""The public dataset catalog: well-known EM datasets with ground truth, fetched to OME-Zarr.

The built-in entries are plain data (:mod:`workbench.datasets.catalog`), validated into
:class:`DatasetInfo` by the registry (:mod:`workbench.datasets.registry`) when it is first read.
``list_datasets()`` and ``get_dataset(name)`` read the catalog; ``fetch_dataset(name)`` finds the files
in the local mirror (``WORKBENCH_DATA_DIR/<name>/``) or downloads and verifies them, and converts them
to ``<cache>/datasets/<name>.zarr``; ``dataset_volumes(name)`` opens the result.
"""

from workbench.datasets.fetch import dataset_path, dataset_volumes, fetch_dataset, mirror_dir
from workbench.datasets.registry import (
    DatasetInfo,
    LabelKind,
    LabelSource,
    Layout,
    RemoteFile,
    Source,
    get_dataset,
    list_datasets,
    register_dataset,
    unregister_dataset,
    value_map,
)

__all__ = [
    "DatasetInfo",
    "LabelKind",
    "LabelSource",
    "Layout",
    "RemoteFile",
    "Source",
    "dataset_path",
    "dataset_volumes",
    "fetch_dataset",
    "get_dataset",
    "list_datasets",
    "mirror_dir",
    "register_dataset",
    "unregister_dataset",
    "value_map",
]
