"""``workbench train``: train an architecture on sparse labels and write a run directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NAME = "train"
HELP = "train a model on a raw volume and sparse labels (0 = unlabelled) and write a run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, metavar="SRC", help="raw volume (file, folder, file.h5:/dataset, store.zarr/array)")
    parser.add_argument("--labels", required=True, metavar="SRC", help="labels of the same shape: 0 = unlabelled, 1..K = classes (or instance ids)")
    parser.add_argument("--arch", metavar="NAME", help="architecture: unet2d, unet3d, residual-unet3d or forest "
                        "(required unless --init names a model whose architecture is known)")
    parser.add_argument("--init", metavar="SRC",
                        help="start from a model instead of random weights: a run folder (e.g. a workbench pretrain "
                             "warm-up), a BioImage Model Zoo zip, a TorchScript or ONNX export or a checkpoint; an output head "
                             "for another number of classes is re-initialised")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory for config.json, metrics.jsonl, checkpoint.pt")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option, repeatable (e.g. --option base_channels=8 --option depth=3; "
                             "an unknown key lists the valid ones)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--minutes", type=float, metavar="M", help="train for M minutes")
    stop.add_argument("--iterations", type=int, metavar="N", help="train for N iterations (default 500)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (default auto)")
    parser.add_argument("--precision", default="auto", metavar="auto|fp32|bf16",
                        help="forward passes in auto (default: bf16 where native and measured faster, else fp32), bf16 autocast (CPUs "
                             "with AVX512-BF16/AMX, Ampere+ GPUs; weights and losses stay fp32), fp32 or fp16 (CUDA)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--target", default="semantic", choices=("semantic", "boundaries", "affinities"),
                        help="semantic classes, or boundaries / affinities from instance labels")
    parser.add_argument("--patch", nargs=3, type=int, metavar=("Z", "Y", "X"), help="patch shape (default: per architecture)")
    parser.add_argument("--batch", type=int, metavar="N",
                        help="patches per batch (default: the architecture's, 16 for unet2d, 4 for 3D models)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--val-slices", nargs="+", type=int, default=[], metavar="Z", help="hold out these z slices for validation")
    parser.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                        help="hold out this fraction of labelled strokes (connected components) for validation")
    parser.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    parser.add_argument("--no-bn-recalibration", action="store_true",
                        help="keep the BatchNorm statistics of the training patches (by default they are recomputed "
                             "over the whole volume when training ends)")
    parser.add_argument("--calibration", default="auto", metavar="auto|none|sampling|prior",
                        help="correct the class proportions that balanced patch sampling teaches (default auto: "
                             "chosen from the labels; sampling: the labels' proportions; prior: the volume's, "
                             "estimated from the unlabelled voxels)")
    parser.add_argument("--crf-weight", type=float, default=0.0, metavar="W",
                        help="weight of the edge-aware smoothness loss over all voxels of a patch (semantic "
                             "targets): neighbours that look alike are taught the same class (default 0: off)")
    parser.add_argument("--recipe", choices=("auto", "none"), default="auto",
                        help="auto (default): width and validation split chosen from the labels, said in one line; "
                             "none: exactly the settings given")
    parser.add_argument("--semi", choices=("none", "mean-teacher"), default="none",
                        help="learn from the unlabelled voxels of sparse labels too: mean-teacher pseudo-labels "
                             "(default none)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from RUN_DIR/checkpoint.pt (an error when there is none yet)")
    resume.add_argument("--resume-or-start", action="store_true",
                        help="continue from RUN_DIR/checkpoint.pt when it exists, else start a new run (says which)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def parse_options(items: list[str]) -> dict:
    """``["base_channels=8", "norm=group"]`` -> ``{"base_channels": 8, "norm": "group"}`` (numbers parsed).

    Raises:
        WorkbenchError: an item without ``=``.
    """
    from workbench.errors import WorkbenchError

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--option {item!r}: write KEY=VALUE, e.g. base_channels=8")
        for cast in (int, float):
            try:
                out[key.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.errors import WorkbenchError
    from workbench.io import open_labels, open_volume
    from workbench.models import get_architecture
    from workbench.precision import Precision
    from workbench.stopping import StopOnSignals
    from workbench.training import Trainer

    precision = Precision.parse(args.precision)  # unknown: "did you mean", before anything is read
    arch_options = parse_options(args.option)
    if args.init:  # the model's architecture and options unless given: a bad file fails before the data is read
        from workbench.models.imports import open_model

        source = open_model(args.init)
        args.arch = args.arch or source.arch
        if args.arch == source.arch and not args.option:
            arch_options = dict(source.arch_options)
    if not args.arch:
        raise WorkbenchError("--arch is required (the --init model does not say which architecture it is)")
    info = get_architecture(args.arch)  # unknown name: a clear message before anything is read
    info.options(**arch_options)  # unknown option: a clear message listing the valid ones
    if args.batch is not None and args.batch < 1:
        raise WorkbenchError(f"--batch must be positive, got {args.batch}")
    raw = open_volume(args.raw)
    labels = open_labels(args.labels)
    if labels.shape != raw.shape:
        raise WorkbenchError(f"labels shape {labels.shape} differs from raw shape {raw.shape}", args.labels)
    config = _config(args, arch_options, precision)
    config.validate()  # bad values: one line, before the labels are looked at
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before the recipe line: errors stay one line
        raise WorkbenchError("File exists (the run directory must be a folder)", args.out)
    recipe = _apply_recipe(args, config, labels)
    t0 = time.perf_counter()
    resume = True if args.resume else ("if-present" if args.resume_or_start else False)
    try:
        trainer = Trainer(config, raw, labels, args.out, resume=resume)  # bad input fails here, before the bar
    except WorkbenchError as err:  # the labels' checks name no file: it is --labels
        if err.path is None and str(err).startswith("labels"):
            raise WorkbenchError(str(err), args.labels) from None
        raise
    if recipe is not None:
        print(recipe.summary(), file=sys.stderr)
    if args.resume_or_start:
        print(f"resuming from iteration {trainer.start_iteration}" if trainer.resume_state is not None
              else f"no checkpoint in {args.out} yet: starting a new run", file=sys.stderr)
    if trainer.init_weights is not None:
        print(trainer.init_weights.note, file=sys.stderr)
    total = trainer.strategy.total(config)
    bar = tqdm(total=total, initial=trainer.start_iteration, desc=f"train {args.arch}", unit="it",
               disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
    trainer.progress = bar
    with StopOnSignals() as stop:  # kill/Ctrl+C/a closed terminal: stop after this iteration, with a checkpoint
        trainer.should_stop = stop
        try:
            last = trainer.run() or {}
        finally:
            bar.close()
    print(_summary(args, trainer, last, time.perf_counter() - t0))
    if stop.requested:
        print(f"workbench train: stopped by {stop.name} after iteration {trainer.iteration}; the checkpoint is in "
              f"{args.out}: continue with the same command and --resume", file=sys.stderr)
    return stop.exit_code


def _config(args: argparse.Namespace, arch_options: dict, precision):
    """The TrainConfig the command line asks for (before the recipe)."""
    from workbench.training import AugmentConfig, TrainConfig

    return TrainConfig(
        arch_options=arch_options,
        arch=args.arch,
        target=args.target,
        patch_shape=list(args.patch) if args.patch else None,
        batch_size=args.batch,
        iterations=args.iterations if args.iterations is not None else (None if args.minutes else 500),
        minutes=args.minutes,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        val_slices=list(args.val_slices),
        val_fraction=args.val_fraction,
        augment=AugmentConfig.none() if args.no_augment else AugmentConfig(),
        semi_supervised=args.semi,
        bn_recalibration=not args.no_bn_recalibration,
        precision=precision,
        init=args.init,
        calibration=args.calibration,
        crf_weight=args.crf_weight,
    )


def _apply_recipe(args: argparse.Namespace, config, labels):
    """The recipe chosen from ``labels`` applied to ``config`` (None: ``--recipe none`` or a resume, which keeps
    the settings it started with).

    Raises:
        WorkbenchError: the labels label nothing.
    """
    from workbench.errors import WorkbenchError
    from workbench.training.recipe import choose_recipe, label_stats

    resuming = args.resume or (args.resume_or_start and (Path(args.out) / "checkpoint.pt").exists())
    if args.recipe != "auto" or resuming:
        return None
    stats = label_stats(labels)
    if stats.labelled_fraction == 0:
        raise WorkbenchError("labels contain no labelled voxel (0 = unlabelled): annotate something first", args.labels)
    recipe = choose_recipe(config, stats, _explicit(args))
    recipe.apply(config)
    return recipe


def _explicit(args: argparse.Namespace) -> set[str]:
    """The TrainConfig fields the command line set (the recipe leaves them alone)."""
    given = {"arch_options": bool(args.option), "val_slices": bool(args.val_slices),
             "val_fraction": bool(args.val_fraction), "patch_shape": args.patch is not None,
             "batch_size": args.batch is not None, "calibration": args.calibration != "auto"}
    return {k for k, v in given.items() if v}


def _summary(args: argparse.Namespace, trainer, last: dict, seconds: float) -> str:
    """The one line printed when training ends."""
    parts = [f"trained {args.arch} ({trainer.config.target}: {', '.join(trainer.task.channel_names)})",
             f"{trainer.iteration} iterations in {seconds:.1f} s"
             + (f" ({trainer.precision})" if trainer.precision != "fp32" else "")]
    if "loss" in last:
        parts.append(f"loss {last['loss']:.4f}")
    for key in ("val_loss", "val_accuracy", "val_f1", "train_accuracy"):
        if key in last:
            parts.append(f"{key.replace('_', ' ')} {last[key]:.3f}")
    if trainer.bn_recalibration and trainer.bn_recalibration["tiles"]:
        parts.append(f"BatchNorm statistics from {trainer.bn_recalibration['tiles']} tiles of the volume")
    if trainer.calibration is not None and trainer.calibration.mode != "none":
        parts.append(f"calibration {trainer.calibration.mode} ({trainer.calibration.reason})")
    if trainer.prediction_defaults:
        parts.append("test-time augmentation " + ("recommended" if trainer.prediction_defaults["tta"] else "off")
                     + f" ({trainer.prediction_defaults['reason']})")
    parts.append(f"-> {args.out}")
    return "; ".join(parts)
