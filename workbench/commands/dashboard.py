"""``workbench dashboard``: a read-only dashboard of the projects in a folder, for many viewers at once.

A plain threaded HTTP server over the projects' static shares (:mod:`workbench.share.server` says why not
Voila). Commands are the top layer: the pages come from the UI layer (:mod:`widgets.site`), imported lazily.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

NAME = "dashboard"
HELP = "serve a read-only dashboard (results, plots, slices, Neuroglancer) of the projects in a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--projects", required=True, metavar="DIR", help="folder whose sub-folders are projects")
    parser.add_argument("--port", type=int, default=8877, metavar="P",
                        help="port (default 8877; a free one if taken; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", metavar="H",
                        help="address to listen on (default 127.0.0.1; any other needs --token or --public)")
    parser.add_argument("--token", metavar="T", help="access token every viewer must give (?token=T)")
    parser.add_argument("--public", action="store_true", help="listen beyond this machine without a token")
    parser.add_argument("--max-mb", type=float, default=300.0, metavar="N", help="size budget of each project's share")
    parser.add_argument("--cache", metavar="DIR", help="where the shares are written (default: a new temporary folder)")
    parser.add_argument("--no-prebuild", action="store_true",
                        help="write each share when first viewed instead of at start")
    parser.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)  # tests: build, print, exit


def _live_state(root: Path) -> dict | None:
    """The Neuroglancer state of the project at ``root`` as it is now (full resolution, its own data.zarr)."""
    from workbench.project import Project
    from workbench.share.neuroglancer import live_state

    return live_state(Project.open(root))


def build_server(args: argparse.Namespace):
    """The server and the URL to print; prints the exposure warning (``--host`` beyond loopback)."""
    from workbench.commands.share import site_module
    from workbench.exposure import check_exposure
    from workbench.ports import port_is_free
    from workbench.share import ShareOptions
    from workbench.share.server import DashboardConfig, make_server

    warning = check_exposure(args.host, args.token, args.public)
    site = site_module()
    options = ShareOptions(max_mb=args.max_mb)
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="workbench-dashboard-"))
    config = DashboardConfig(projects=Path(args.projects).expanduser(), cache=cache,
                             build=lambda root, out: site.build_site(root, out, options),
                             front_page=site.projects_html, token=args.token, live=_live_state)
    port = int(args.port)
    if port and not port_is_free(args.host, port):
        print(f"workbench dashboard: port {port} is in use; using a free one", file=sys.stderr)
        port = 0
    try:
        server = make_server(config, args.host, port)
    except BaseException:
        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)
        raise
    server.temporary_cache = None if args.cache else cache  # removed when the dashboard stops
    if warning:
        print(f"workbench dashboard: {warning}", file=sys.stderr)
    shown = "127.0.0.1" if args.host in ("", "0.0.0.0", "::") else args.host
    url = f"http://{shown}:{server.server_address[1]}/" + (f"?token={args.token}" if args.token else "")
    return server, url


def _stop_on_sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt  # the same clean stop as Ctrl+C (the temporary cache is removed)


def run(args: argparse.Namespace) -> int:
    server, url = build_server(args)
    cache = server.share_cache
    try:
        if not args.no_prebuild:
            for name in cache.names():
                print(f"workbench dashboard: writing the share of {name} ...", file=sys.stderr, flush=True)
                cache.site(name)
        print(f"EM Workbench dashboard is running (read-only). Open this URL in a browser (Ctrl+C to stop):\n\n"
              f"    {url}\n", flush=True)
        if not args.no_wait:
            print("serving (read-only) until Ctrl+C", file=sys.stderr, flush=True)
            previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
            try:
                server.serve_forever()
            finally:
                signal.signal(signal.SIGTERM, previous)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
        if server.temporary_cache is not None:
            shutil.rmtree(server.temporary_cache, ignore_errors=True)
    return 0
