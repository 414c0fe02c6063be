"""``workbench app``: serve the guided app (Voila) and its viewers through one port.

Commands are the top layer: this one imports the app layer (:mod:`widgets.serve`) lazily, in :func:`run`.
"""

from __future__ import annotations

import argparse
import sys

NAME = "app"
HELP = "serve the guided Voila app (Jupyter server + Voila + viewer proxy) and print its URL"
EXTRAS_HINT = "pip install 'em-workbench[app]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8866, metavar="P",
                        help="port (default 8866; a free one if taken; 0: any free port)")
    parser.add_argument("--data", metavar="PATH", help="a volume or folder the app opens first (WORKBENCH_DATA_ROOT)")
    parser.add_argument("--project", metavar="DIR", help="project folder to open or create (WORKBENCH_PROJECT)")
    parser.add_argument("--host", "--bind", dest="bind", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1: this machine only; any other address "
                             "needs --token or --public; for remote use prefer an SSH tunnel)")
    parser.add_argument("--token", metavar="TOKEN", help="access token (default: a random one, printed in the URL)")
    parser.add_argument("--public", action="store_true",
                        help="no token at all: whoever reaches the port uses the app (with a non-loopback --host)")
    parser.add_argument("--notebook-dir", metavar="DIR",
                        help="folder of notebooks to serve (default: the app notebook installed with the package)")
    parser.add_argument("--notebook", default="workbench.ipynb", metavar="NAME", help="the app notebook (default workbench.ipynb)")


def _serve_module():
    """:mod:`widgets.serve`, or a one-line WorkbenchError when the app layer cannot be imported."""
    from workbench.errors import WorkbenchError

    try:
        import widgets.serve as serve
    except ImportError as err:
        raise WorkbenchError(f"the app is not installed ({err}); install the app extras: {EXTRAS_HINT}") from err
    return serve


def run(args: argparse.Namespace) -> int:
    from workbench.exposure import check_exposure

    warning = check_exposure(args.bind, args.token, args.public)
    serve = _serve_module()
    if warning:
        print(f"workbench app: {warning}", file=sys.stderr, flush=True)

    def moved(old: int, new: int) -> None:
        print(f"workbench app: port {old} is in use; using {new}", file=sys.stderr, flush=True)

    options = serve.AppServerOptions(
        port=args.port,
        bind=args.bind,
        notebook_dir=args.notebook_dir,
        notebook=args.notebook,
        project=args.project,
        data=args.data,
        token=args.token,
        public=bool(args.public) and not args.token,
    )
    server = serve.start_app_server(options, on_port_change=moved)
    return serve.serve_forever(server)
