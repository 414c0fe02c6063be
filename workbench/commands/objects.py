"""``workbench objects``: the table of a segmentation's objects (size, volume, centroid, class) as CSV."""

from __future__ import annotations

import argparse

NAME = "objects"
HELP = "table of the objects of an instance segmentation (id, class, voxels, volume, centroid, ...) as CSV"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seg", metavar="SEG.zarr", help="instance segmentation (any readable label volume)")
    parser.add_argument("--prediction", metavar="PRED.zarr",
                        help="prediction it was made from: gives each object's class and mean probability")
    parser.add_argument("--out", required=True, metavar="objects.csv", help="CSV file to write")


def run(args: argparse.Namespace) -> int:
    from workbench.objects import object_table

    table = object_table(args.seg, prediction=args.prediction)
    path = table.to_csv(args.out)
    print(f"wrote {len(table)} objects to {path}")
    return 0
