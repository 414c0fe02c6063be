"""The guided app's widgets: one panel per step, each a thin layer over the workbench library.

``WorkbenchApp.from_env().show()`` is the whole app notebook. Imports are lazy: ``import widgets`` does not
load HoloViews, Panel or torch.
"""

from __future__ import annotations

__all__ = ["AnnotatePanel", "AppContext", "ArchitecturePanel", "DataPanel", "ResultsPanel", "TrainPanel",
           "WorkbenchApp"]

_WHERE = {
    "WorkbenchApp": "widgets.app",
    "AppContext": "widgets.context",
    "DataPanel": "widgets.data",
    "ArchitecturePanel": "widgets.architecture",
    "AnnotatePanel": "widgets.annotate",
    "TrainPanel": "widgets.train",
    "ResultsPanel": "widgets.results",
}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'widgets' has no attribute {name!r}")
