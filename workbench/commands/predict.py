"""``workbench predict``: a trained run applied to a whole volume, block by block, into OME-Zarr."""

from __future__ import annotations

import argparse
import sys

from workbench.inference.uncertainty import UncertaintyKind

NAME = "predict"
HELP = "predict a volume blockwise with a trained run (locally or on a Dask cluster) into OME-Zarr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="SRC",
                        help="training run folder (config.json + checkpoint.pt), BioImage Model Zoo zip, TorchScript "
                             "file or checkpoint")
    parser.add_argument("--raw", required=True, metavar="SRC", help="raw volume: any readable source")
    parser.add_argument("--out", required=True, metavar="OUT.zarr", help="OME-Zarr (c, z, y, x) to write")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="tcp://host:port of a dask.distributed scheduler, or 'processes' for a local "
                             "cluster (default: threads in this process)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time augmentation: combine 8 rotations/flips (mean logits); default: what the "
                             "run's validation recommended (off when it measured none)")
    parser.add_argument("--uncertainty", choices=UncertaintyKind.values(), metavar="|".join(UncertaintyKind.values()),
                        help="also write a per-voxel uncertainty map to OUT.zarr/uncertainty (0-1, same dtype): "
                             "entropy of the probabilities (no extra pass), or disagreement of the 8 views "
                             "(needs --tta); default: none")
    parser.add_argument("--block", nargs=3, type=int, metavar=("Z", "Y", "X"),
                        help="block shape, a whole number of output chunks (default 8 2048 2048 for 2D models, 64 256 256 for 3D)")
    parser.add_argument("--channel", type=int, metavar="N", help="channel of a multi-channel raw volume")
    parser.add_argument("--dtype", choices=("uint8", "float16"), default="uint8",
                        help="storage of probabilities (default uint8 = round(255 p))")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (local runs)")
    parser.add_argument("--precision", default="auto", metavar="auto|fp32|bf16",
                        help="forward passes in auto (default: bf16 where native and measured faster, else fp32), bf16 autocast (CPUs "
                             "with AVX512-BF16/AMX, Ampere+ GPUs), fp32 or fp16 (CUDA); recorded in OUT.zarr; "
                             "a forest: fp32")
    parser.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                        help="blocks in flight with the local scheduler, sharing the cores (default auto: one "
                             "per CPU core as far as memory allows, measured on the first block; 1 on a GPU)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (~20 s or more to compile, then faster on large volumes)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing or interrupted output")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted prediction")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {text!r}")
    return n


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.errors import WorkbenchError
    from workbench.inference import PredictOptions, connect, predict_volume
    from workbench.io import open_volume
    from workbench.precision import Precision
    from workbench.stopping import StopOnSignals
    from workbench.training.imported import load_model

    precision = Precision.parse(args.precision)  # unknown: "did you mean", before anything is loaded
    options = PredictOptions(block_shape=args.block, tta=bool(args.tta), scheduler=args.scheduler, dtype=args.dtype,
                             workers=args.workers, compile=args.compile, overwrite=args.overwrite,
                             resume=args.resume, uncertainty=args.uncertainty)  # checked before anything is loaded
    if not options.local and args.scheduler != "processes":
        client, _ = connect(args.scheduler)  # fail fast, before loading anything
        client.close()
    try:
        raw = open_volume(args.raw, channel=args.channel)
    except WorkbenchError as err:
        if "channels" in str(err) and args.channel is None:
            raise WorkbenchError(f"the model takes 1 channel, the raw volume does not: {err}") from None
        raise
    predictor = load_model(args.model, device=args.device, precision=precision, raw=raw)
    if args.tta is None and getattr(predictor, "recommended_tta", None):
        import dataclasses

        options = dataclasses.replace(options, tta=True)
        print("test-time augmentation on: the run's validation found it pays (--no-tta to skip it)", file=sys.stderr)
    bar = tqdm(desc="predict", unit="block", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True,
               delay=0.5)  # delay: input errors stay one line
    with StopOnSignals() as stop:  # kill/Ctrl+C/a closed terminal: stop at a block boundary, resumable
        try:
            result = predict_volume(predictor, raw, args.out, options, progress=bar, should_stop=stop)
        finally:
            bar.close()
    if stop.requested and not result.complete:
        print(f"workbench predict: stopped by {stop.name} after {result.blocks_done} of {result.blocks_total} "
              f"blocks; {result.path} keeps them: continue with the same command and --resume", file=sys.stderr)
        return stop.exit_code
    print(f"wrote {result.path} ({result.blocks_total} blocks, {result.blocks_computed} computed, "
          f"{result.voxels_per_second / 1e6:.2f} Mvoxel/s"
          + (f", {result.info['workers']} blocks in flight" if "workers" in result.info else "")
          + (f", {result.info['precision']}" if result.info.get("precision", "fp32") != "fp32" else "")
          + (f", uncertainty: {result.info['uncertainty']}" if result.info.get("uncertainty") else "") + ")")
    return 0 if result.complete else 1
