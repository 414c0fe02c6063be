"""``workbench sample OUT.zarr [--shape Z Y X] [--seed N] [--artifacts]``: the built-in synthetic EM sample."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "sample"
HELP = "write a synthetic serial-section EM volume with ground truth (instances, semantic classes) as OME-Zarr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.synthetic.sample import DEFAULT_SHAPE

    parser.add_argument("out", metavar="OUT.zarr", help="the OME-Zarr folder to create")
    parser.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"), default=list(DEFAULT_SHAPE),
                        help="volume size in voxels (default: " + " ".join(map(str, DEFAULT_SHAPE))
                        + "; voxel size 40 x 8 x 8 nm, a few seconds on a laptop)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed and shape give the same volume")
    parser.add_argument("--artifacts", action="store_true",
                        help="add EM artifacts: missing and misaligned sections, contrast drift")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT.zarr if it exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from workbench.errors import WorkbenchError
    from workbench.synthetic import SampleOptions, generate_sample
    from workbench.synthetic.sample import check_shape

    check_shape(args.shape, args.out)
    if Path(args.out).exists() and not args.overwrite:
        raise WorkbenchError("output already exists; use --overwrite to replace it", args.out)
    t0 = time.perf_counter()
    with tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc="sample", file=sys.stderr,
              disable=args.no_progress, dynamic_ncols=True) as bar:
        out = generate_sample(args.out, shape=tuple(args.shape), seed=args.seed,
                              options=SampleOptions(artifacts=args.artifacts, overwrite=args.overwrite), progress=bar)
    dt = time.perf_counter() - t0
    z, y, x = args.shape
    mb = z * y * x / 1e6
    print(f"wrote {out} ({z} x {y} x {x} voxels, 40 x 8 x 8 nm; raw + labels/instances + labels/semantic) "
          f"in {dt:.1f} s ({mb / max(dt, 1e-9):.1f} MB/s)")
    return 0
