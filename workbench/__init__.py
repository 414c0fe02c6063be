"""EM Workbench: deep-learning segmentation of electron-microscopy volumes.

The core library. It never imports UI packages (ipywidgets, IPython, holoviews, voila);
heavy packages (torch, neuroglancer, dask.distributed) are imported lazily by the modules that need them.
"""

from workbench.errors import WorkbenchError

__version__ = "0.1.0"
__all__ = ["WorkbenchError", "__version__"]
