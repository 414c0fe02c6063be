"""``workbench share``: a project's results as a static site anyone can open (no Python, no kernel).

Commands are the top layer: this one reaches the UI layer's pages (:mod:`widgets.site`) lazily, in :func:`run`.
"""

from __future__ import annotations

import argparse

NAME = "share"
HELP = "write a project's results as a self-contained static site (OUT_DIR/index.html), Neuroglancer included"
EXTRAS_HINT = "pip install 'em-workbench[app]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", metavar="PROJECT", help="the project folder")
    parser.add_argument("out", metavar="OUT_DIR",
                        help="the site folder: new, empty, or an earlier share (replaced when the new one is complete)")
    parser.add_argument("--run", action="append", metavar="RUN", dest="runs",
                        help="a run to include (repeat for several; default: every trained run)")
    parser.add_argument("--max-mb", type=float, default=300.0, metavar="N",
                        help="size budget in MB (default 300): downsample, then crop, then drop layers to fit")


def site_module():
    """:mod:`widgets.site`, or a one-line WorkbenchError when the UI layer is not installed."""
    from workbench.errors import WorkbenchError

    try:
        import widgets.site as site
    except ImportError as err:
        raise WorkbenchError(f"the site pages need the app extras ({err}): {EXTRAS_HINT}") from err
    return site


def run(args: argparse.Namespace) -> int:
    from workbench.project import Project
    from workbench.share import ShareOptions

    options = ShareOptions(runs=tuple(args.runs) if args.runs else None, max_mb=args.max_mb)
    project = Project.open(args.project)
    site = site_module()
    result = site.build_site(project, args.out, options)
    plan = result.plan
    print(f"share: {result.path / 'index.html'} ({result.bytes / 1e6:.1f} MB, {len(result.manifest['runs'])} runs"
          + (f"; {'; '.join(plan.steps)}" if plan.steps else "") + ")")
    print("open it from any static web server, e.g. "
          f"python -m http.server -d {result.path} 8000  ->  http://127.0.0.1:8000/")
    return 0
