"""``workbench segment``: instances from a stored prediction (blockwise) into an OME-Zarr label image."""

from __future__ import annotations

import argparse
import sys

from workbench.segmentation.options import METHOD_HELP, SegmentMethod

NAME = "segment"
HELP = ("instance segmentation of a prediction: connected components, seeded watershed, affinity agglomeration, "
        "mutex watershed, multicut or GASP")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", metavar="PRED.zarr", help="prediction written by 'workbench predict'")
    parser.add_argument("--out", required=True, metavar="SEG.zarr", help="OME-Zarr label image to write")
    parser.add_argument("--method", choices=("auto", *SegmentMethod.values()), default="auto",
                        help="; ".join(f"{m.value}: {text}" for m, text in METHOD_HELP.items())
                        + " (default auto: gasp for affinity and boundary predictions, cc for class probabilities)")
    parser.add_argument("--channel", type=int, default=0, metavar="N", help="channel to use (default 0)")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="T",
                        help="threshold (default 0.5); multicut/gasp: join fragments where the mean boundary between "
                             "them is below T; unused by mutex-watershed")
    parser.add_argument("--merge-threshold", type=float, default=None, metavar="T",
                        help="watershed: then merge touching objects while the mean boundary between them is "
                             "below T (e.g. 0.5; joins cells split by faint inner outlines)")
    parser.add_argument("--min-size", type=int, default=0, metavar="N", help="remove objects smaller than N voxels")
    parser.add_argument("--block", nargs=3, type=int, metavar=("Z", "Y", "X"),
                        help="block shape (default: the prediction's chunks)")
    parser.add_argument("--per-section", action="store_true",
                        help="segment every z section on its own (serial sections predicted by a 2D model): "
                             "objects never connect across sections")
    parser.add_argument("--halo", nargs=3, type=int, default=(8, 32, 32), metavar=("Z", "Y", "X"),
                        help="context read around each block (default 8 32 32)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="mutex-watershed/multicut/gasp: solve the blocks on Dask ('processes' for a local "
                             "cluster, or tcp://host:port); default: threads of this process (same result)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.errors import WorkbenchError
    from workbench.inference import read_info
    from workbench.segmentation import SegmentOptions, segment_prediction
    from workbench.segmentation.options import default_method

    method = args.method
    if method == "auto":
        try:
            target = read_info(args.pred).get("target")
        except WorkbenchError:
            target = None  # not a prediction: segment_prediction says what is wrong with it
        method = default_method(target)
    options = SegmentOptions(method=method, channel=args.channel, threshold=args.threshold,
                             min_size=args.min_size, block_shape=args.block, per_section=args.per_section,
                             merge_threshold=args.merge_threshold, overwrite=args.overwrite,
                             halo=tuple(args.halo), scheduler=args.scheduler)
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:  # created at the first block, so input errors print one line only
            bar = tqdm(desc="segment", unit="block", total=total, file=sys.stderr, disable=args.no_progress,
                       dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        out = segment_prediction(args.pred, args.out, options, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    chosen = " (chosen from the prediction's target; --method to choose)" if args.method == "auto" else ""
    print(f"wrote {out} (method {method}{chosen})")
    return 0
