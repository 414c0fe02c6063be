"""``workbench pretrain``: a self-supervised warm-up on the raw volume alone (no labels), fine-tuned later with
``workbench train --init RUN``."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "pretrain"
HELP = "warm a network up on a raw volume without labels (masked-image reconstruction or blind-spot denoising)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, metavar="SRC", help="raw volume (file, folder, file.h5:/dataset, store.zarr/array)")
    parser.add_argument("--arch", required=True, metavar="NAME", help="a network architecture: unet2d, unet3d, residual-unet3d")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory for config.json, metrics.jsonl, checkpoint.pt")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option, repeatable (e.g. --option base_channels=8); fine-tuning uses the same")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--minutes", type=float, metavar="M", help="warm up for M minutes")
    stop.add_argument("--iterations", type=int, metavar="N", help="warm up for N iterations (default 500)")
    parser.add_argument("--pretext", default="masked", choices=("masked", "blind-spot"),
                        help="masked: redraw hidden 8x8 blocks from their context (default); blind-spot: "
                             "Noise2Void, predict single voxels from their neighbours")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (default auto)")
    parser.add_argument("--precision", default="fp32", metavar="auto|fp32|bf16", help="forward passes' precision (default fp32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--patch", nargs=3, type=int, metavar=("Z", "Y", "X"), help="patch shape (default: per architecture)")
    parser.add_argument("--batch", type=int, metavar="N", help="patches per batch (default: the architecture's)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.commands.train import parse_options
    from workbench.errors import WorkbenchError
    from workbench.io import open_volume
    from workbench.models import get_architecture
    from workbench.precision import Precision
    from workbench.training.pretext import pretext_trainer

    precision = Precision.parse(args.precision)
    info = get_architecture(args.arch)
    if not info.is_network:
        raise WorkbenchError(f"architecture {args.arch!r} is not a neural network: there is nothing to warm up")
    options = parse_options(args.option)
    info.options(**options)
    if args.batch is not None and args.batch < 1:
        raise WorkbenchError(f"--batch must be positive, got {args.batch}")
    raw = open_volume(args.raw)
    t0 = time.perf_counter()
    trainer = pretext_trainer(raw, args.out, args.arch, pretext=args.pretext, minutes=args.minutes,
                              iterations=args.iterations, arch_options=options, seed=args.seed, device=args.device,
                              precision=precision, lr=args.lr, batch_size=args.batch,
                              patch_shape=list(args.patch) if args.patch else None, resume=bool(args.resume))
    bar = tqdm(total=trainer.strategy.total(trainer.config), initial=trainer.start_iteration,
               desc=f"pretrain {args.arch}", unit="it", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
    trainer.progress = bar
    try:
        last = trainer.run() or {}
    finally:
        bar.close()
    parts = [f"warmed up {args.arch} ({args.pretext}) on {raw.name or args.raw}",
             f"{trainer.iteration} iterations in {time.perf_counter() - t0:.1f} s"]
    if "val_loss" in last:
        parts.append(f"reconstruction loss {last['val_loss']:.4f}")
    parts.append(f"-> {args.out}; fine-tune it: workbench train --init {args.out} --raw ... --labels ...")
    print("; ".join(parts))
    return 0
