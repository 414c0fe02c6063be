"""``workbench mesh``: surface meshes of a segmentation's objects, cached beside it for Neuroglancer."""

from __future__ import annotations

import argparse
import sys

NAME = "mesh"
HELP = "mesh the objects of an instance segmentation (legacy precomputed meshes in SEG.zarr/meshes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seg", metavar="SEG.zarr", help="instance segmentation (e.g. written by 'workbench segment')")
    parser.add_argument("--ids", nargs="+", type=int, metavar="ID", help="only these objects (default: all)")
    parser.add_argument("--smooth", type=int, default=0, metavar="N", help="Laplacian smoothing iterations (default 0)")
    parser.add_argument("--simplify", type=float, default=0.0, metavar="F",
                        help="remove this fraction of each mesh's faces by edge collapses, 0 <= F < 1 (default 0)")
    parser.add_argument("--out", metavar="DIR", help="mesh folder (default: SEG.zarr/meshes, where the viewer looks)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="threads (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.errors import WorkbenchError
    from workbench.meshes import MeshOptions, write_meshes

    try:
        options = MeshOptions(smooth=args.smooth, simplify=args.simplify, workers=args.workers)
    except ValueError as err:
        raise WorkbenchError(str(err)) from None
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(desc="mesh", unit="object", total=total, file=sys.stderr, disable=args.no_progress,
                       dynamic_ncols=True)
        bar.n = done
        bar.refresh()

    try:
        report = write_meshes(args.seg, args.out, ids=args.ids, options=options, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {report.objects} meshes ({report.faces} triangles) to {report.path} in {report.seconds:.1f} s")
    return 0
