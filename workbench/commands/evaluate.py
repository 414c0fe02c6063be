"""``workbench evaluate``: score a segmentation (or prediction) against ground truth."""

from __future__ import annotations

import argparse
import json

NAME = "evaluate"
HELP = "score a prediction or segmentation against ground truth (pixel error, IoU/Dice, Rand, VOI, CREMI, AP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="SRC",
                        help="labels (any readable source) or a prediction from 'workbench predict'")
    parser.add_argument("--truth", required=True, metavar="SRC", help="ground-truth labels")
    parser.add_argument("--kind", choices=("auto", "semantic", "instances", "all"), default="auto",
                        help="which measures (auto: semantic for at most 16 labels, else instances)")
    parser.add_argument("--ignore-label", type=int, action="append", metavar="L",
                        help="truth label not scored (repeatable), e.g. 0 for ISBI membranes")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="for a one-channel prediction: foreground where p > T (default 0.5)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")


def _open_pred(src: str, threshold: float):
    """Labels from a label source, or from a stored prediction (threshold one channel, argmax of several)."""
    from pathlib import Path

    import numpy as np

    from workbench.errors import WorkbenchError
    from workbench.inference.output import from_storage, open_prediction, partial_path, read_info
    from workbench.io import open_labels

    path = Path(src)
    is_prediction = False
    if path.is_dir() or partial_path(path).exists():
        try:
            read_info(path if path.exists() else partial_path(path))
            is_prediction = True
        except WorkbenchError:
            is_prediction = False
    if not is_prediction:
        return open_labels(src)
    info = read_info(path)
    arr = open_prediction(path)  # refuses incomplete predictions
    if arr.shape[0] == 1:
        return (from_storage(np.asarray(arr[0])) > threshold).astype(np.uint8)
    if arr.shape[0] > 16:
        raise WorkbenchError(f"prediction has {arr.shape[0]} channels; segment it first ('workbench segment')", path)
    classes = np.argmax(np.asarray(arr), axis=0).astype(np.uint8)
    # a semantic model's channel c is class c + 1 (labels 1..K; 0 = unlabelled is never predicted)
    return classes + 1 if info.get("target") == "semantic" else classes


def run(args: argparse.Namespace) -> int:
    from workbench.errors import WorkbenchError
    from workbench.io import open_labels
    from workbench.metrics import evaluate

    truth = open_labels(args.truth)
    pred = _open_pred(args.pred, args.threshold)
    if tuple(pred.shape) != tuple(truth.shape):
        raise WorkbenchError(f"has shape {tuple(pred.shape)} but the truth {args.truth} has {tuple(truth.shape)}",
                             args.pred)
    scores = evaluate(pred, truth, kind=args.kind, ignore_label=args.ignore_label)
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    for key, value in scores.items():
        if key == "classes":
            for c, v in value.items():
                print(f"class {c}: IoU {v['iou']:.4f}  Dice {v['dice']:.4f}")
        elif isinstance(value, float):
            print(f"{key}: {value:.4f}")
        else:
            print(f"{key}: {value}")
    return 0
