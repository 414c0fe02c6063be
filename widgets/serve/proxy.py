"""The app server's viewer proxy: a Jupyter server extension reaching registered viewer ports only.

jupyter-server-proxy 4.x lets any authenticated user reach *any* local port through ``/proxy/<port>/``
(its ``host_allowlist`` only filters other hosts; the local-port handler ignores it). This extension
registers the same handler but refuses every port a workbench kernel did not register: a viewer writes its
port to the directory named by ``WORKBENCH_PROXY_PORTS_DIR`` (see :mod:`workbench.ports`; the app server
sets it for every kernel) and removes it when its process exits. jupyter-server-proxy's own unrestricted
extension is switched off in the app server's configuration (:mod:`widgets.serve.config`).

Jupyter, jupyter-server-proxy and tornado are imported only when the server loads the extension.
"""

from __future__ import annotations

from workbench.ports import proxy_port_allowed

#: The module name the app server's configuration enables as a Jupyter server extension.
EXTENSION = "widgets.serve.proxy"


def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Register ``/proxy/<port>/...`` for registered viewer ports only (HTTP and websockets)."""
    from jupyter_server.utils import url_path_join
    from jupyter_server_proxy.handlers import LocalProxyHandler
    from tornado import web

    class ViewerProxyHandler(LocalProxyHandler):
        """jupyter-server-proxy's local handler, limited to ports the workbench's viewers registered."""

        def _check(self, port) -> None:
            if not proxy_port_allowed(port):
                raise web.HTTPError(403, f"port {port} is not a workbench viewer")

        def proxy(self, port, proxied_path):
            self._check(port)
            return super().proxy(port, proxied_path)

        async def open(self, port, proxied_path):
            if not proxy_port_allowed(port):
                self.close(code=1008, reason="not a workbench viewer")
                return
            return await super().open(port, proxied_path)

    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*",
        [(url_path_join(base, r"/proxy/(\d+)(/.*|)"), ViewerProxyHandler, {"absolute_url": False})],
    )
    serverapp.log.info("workbench: viewer proxy at %sproxy/<port>/ (registered ports only)", base)
