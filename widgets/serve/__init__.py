"""Hosting the guided app: one Jupyter server with Voila and a restricted viewer proxy, on one port.

- :mod:`widgets.serve.jupyter`: :func:`start_app_server` (:class:`AppServerOptions`) -> :class:`AppServer`,
  :func:`serve_forever` (what ``workbench app`` runs);
- :mod:`widgets.serve.config`: the server's command line, Jupyter configuration, Voila template and
  kernel environment; where the app notebook is (package data, ``notebooks/workbench.ipynb`` here);
- :mod:`widgets.serve.proxy`: the Jupyter server extension proxying ``/proxy/<port>/`` to registered
  viewer ports only (the registry itself is :mod:`workbench.ports`).
- :mod:`widgets.serve.guard`: the Jupyter server extension that leaves only the app's routes reachable,
  redirects the page URL without its token, and stops the server when its launcher dies.

Importing this package loads the standard library and ``workbench.ports`` only (no Jupyter, no widgets).
The threat model of the whole arrangement is ``SECURITY.md``.
"""

from __future__ import annotations

from widgets.serve.config import APP_NOTEBOOK, default_notebook_dir
from widgets.serve.jupyter import AppServer, AppServerOptions, serve_forever, start_app_server

__all__ = ["APP_NOTEBOOK", "AppServer", "AppServerOptions", "default_notebook_dir", "serve_forever",
           "start_app_server"]
