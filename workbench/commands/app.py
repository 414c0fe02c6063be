"""``workbench app``: serve the guided app (Voila) and its viewers through one port."""

from __future__ import annotations

import argparse
import sys

NAME = "app"
HELP = "serve the guided Voila app (Jupyter server + Voila + viewer proxy) and print its URL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8866, metavar="P", help="port (default 8866; a free one if taken)")
    parser.add_argument("--data", metavar="PATH", help="a volume or folder the app opens first (WORKBENCH_DATA_ROOT)")
    parser.add_argument("--project", metavar="DIR", help="project folder to open or create (WORKBENCH_PROJECT)")
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1; for remote use prefer an SSH tunnel)")
    parser.add_argument("--notebook-dir", metavar="DIR", help="folder of notebooks to serve (default: notebooks/)")
    parser.add_argument("--notebook", default="workbench.ipynb", metavar="NAME", help="the app notebook (default workbench.ipynb)")


def run(args: argparse.Namespace) -> int:
    from workbench.server import serve_forever, start_app_server

    def moved(old: int, new: int) -> None:
        print(f"workbench app: port {old} is in use; using {new}", file=sys.stderr, flush=True)

    server = start_app_server(
        port=args.port,
        bind=args.bind,
        notebook_dir=args.notebook_dir,
        notebook=args.notebook,
        project=args.project,
        data=args.data,
        on_port_change=moved,
    )
    return serve_forever(server)
