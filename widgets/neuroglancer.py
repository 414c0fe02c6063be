"""``NeuroglancerFrame``: a live Neuroglancer viewer embedded in a notebook or Voila page (an iframe).

Which URL the iframe uses:

- inside ``workbench app`` (Voila as a Jupyter server extension), under JupyterHub, or any page served
  by a Jupyter server with jupyter-server-proxy: the proxied URL ``{base_url}proxy/{port}/v/{token}/``,
  so the browser needs only the Jupyter server's port (remote machines, SSH tunnels, hubs);
- otherwise (a local Python session or a standalone ``voila`` without server extensions): the direct
  ``http://127.0.0.1:PORT/v/TOKEN/`` URL, which works when the browser runs on the same machine.

``WORKBENCH_PROXY_BASE`` overrides the base URL (``direct`` forces the direct URL).
"""

from __future__ import annotations

import html
import os

import ipywidgets as W

from widgets._common import styled


def proxy_base_from_env(env=None) -> str | None:
    """The Jupyter base URL to reach viewers through jupyter-server-proxy, or None for direct URLs."""
    env = os.environ if env is None else env
    forced = env.get("WORKBENCH_PROXY_BASE")
    if forced:
        return None if forced.strip().lower() == "direct" else forced
    for key in ("JUPYTERHUB_SERVICE_PREFIX", "VOILA_BASE_URL"):
        if env.get(key):
            return env[key]
    if env.get("WORKBENCH_PROXY_PORTS_DIR"):  # a kernel of `workbench app`
        return "/"
    return None


def page_origin_from_env(env=None) -> str | None:
    """``scheme://host[:port]`` of the page the app was loaded from (Voila's ``VOILA_REQUEST_URL``), or None."""
    from urllib.parse import urlsplit

    env = os.environ if env is None else env
    parts = urlsplit(env.get("VOILA_REQUEST_URL") or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def frame_url(viewer, proxy_base: str | None = None, env=None) -> str:
    """The URL an iframe should load for ``viewer`` (a :class:`WorkbenchViewer`)."""
    base = proxy_base if proxy_base is not None else proxy_base_from_env(env)
    if base is not None and base.strip().lower() == "direct":
        base = None
    return viewer.url(proxy_base=base)


class NeuroglancerFrame:
    """An ipywidgets panel showing ``viewer`` in an iframe, with a link to open it in its own tab.

    Args:
        viewer: a :class:`workbench.viewer.WorkbenchViewer`.
        height: iframe height in pixels.
        proxy_base: force a Jupyter base URL (``"direct"`` for the direct URL); default from the environment.

    Attributes:
        widget: the ipywidgets ``VBox`` to display (CSS class ``wb-neuroglancer``; the iframe has
            class ``wb-ng-frame``).
        url: the URL the iframe loads.
    """

    def __init__(self, viewer, height: int = 600, proxy_base: str | None = None):
        self.viewer = viewer
        self.height = int(height)
        self.url = frame_url(viewer, proxy_base)
        if hasattr(viewer, "set_page_url"):  # absolute URLs in the state (segment properties) go the same way
            viewer.set_page_url(self.url, origin=page_origin_from_env())
        self.frame = W.HTML(value=self._iframe_html())
        self.link = W.HTML(
            value=f'<a class="wb-ng-link" href="{html.escape(self.url, quote=True)}" target="_blank" rel="noopener">'
            "open Neuroglancer in its own tab</a>"
        )
        self.widget = styled(W.VBox([self.frame, self.link], layout=W.Layout(width="100%")), "wb-neuroglancer")

    def _iframe_html(self) -> str:
        src = html.escape(self.url, quote=True)
        return (
            f'<iframe class="wb-ng-frame" src="{src}" title="Neuroglancer" '
            f'style="width:100%;height:{self.height}px;border:0" allow="clipboard-write; fullscreen"></iframe>'
        )

    def reload(self) -> None:
        """Reload the iframe (e.g. after the viewer was replaced); the viewer state is kept by Python."""
        self.frame.value = ""
        self.frame.value = self._iframe_html()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
