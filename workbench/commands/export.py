"""``workbench export``: a trained run as TorchScript, ONNX or a BioImage Model Zoo package."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a trained run as TorchScript, ONNX or a BioImage Model Zoo (bioimage.io) zip"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN_DIR", help="training run directory (config.json, checkpoint.pt)")
    parser.add_argument("--format", required=True, choices=("torchscript", "onnx", "bioimageio"), help="export format")
    parser.add_argument("out", metavar="OUT", help="output file (.pt, .onnx or .zip)")


def run(args: argparse.Namespace) -> int:
    from workbench.training.export import export_run

    path = export_run(args.model, args.format, args.out)
    print(f"exported {args.model} as {args.format} -> {path}")
    return 0
