"""The built-in synthetic EM sample: serial-section-EM-like volumes with exact ground truth.

``make_sample(shape, seed)`` builds one in memory; ``generate_sample(out, shape, seed)`` writes an
OME-Zarr (raw + NGFF labels ``instances`` and ``semantic``) block by block, for any size.
"""

from workbench.synthetic.classes import SEMANTIC_CLASSES
from workbench.synthetic.sample import (
    DEFAULT_SHAPE,
    SampleArrays,
    SampleOptions,
    generate_sample,
    make_sample,
)
from workbench.synthetic.scene import SampleConfig

__all__ = [
    "DEFAULT_SHAPE",
    "SEMANTIC_CLASSES",
    "SampleArrays",
    "SampleConfig",
    "SampleOptions",
    "generate_sample",
    "make_sample",
]
