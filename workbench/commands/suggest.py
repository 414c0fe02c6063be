"""``workbench suggest``: where to scribble next, as a ranked JSON list of boxes."""

from __future__ import annotations

import argparse
import sys

from workbench.inference.uncertainty import DEFAULT_KIND, UncertaintyKind

NAME = "suggest"
HELP = "rank the places where a few new strokes would help the model most (uncertain, away from labels)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN_DIR", help="training run folder")
    parser.add_argument("--raw", required=True, metavar="SRC", help="raw volume: any readable source")
    parser.add_argument("--labels", metavar="SRC", help="the current labels (0 = unlabelled): suggestions avoid them")
    parser.add_argument("--out", required=True, metavar="suggestions.json",
                        help='JSON list of {"z", "y", "x", "box": [z0, y0, x0, z1, y1, x1], "score"}, best first')
    parser.add_argument("--n", type=int, default=10, metavar="N", help="how many suggestions (default 10)")
    parser.add_argument("--box", type=int, metavar="PIXELS",
                        help="side of a box (default: a sixteenth of the slice, 24 to 96 pixels)")
    parser.add_argument("--slices", type=int, default=32, metavar="K",
                        help="examine at most K evenly spaced slices (default 32; one prediction each)")
    parser.add_argument("--uncertainty", choices=UncertaintyKind.values(), default=DEFAULT_KIND.value,
                        help="entropy: one pass (default); disagreement: of the 8 rotated/flipped views (8x slower)")
    parser.add_argument("--channel", type=int, metavar="N", help="channel of a multi-channel raw volume")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", metavar="auto|fp32|bf16",
                        help="forward passes in fp32 (default), bf16 or auto (bf16 where native and measured faster)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.io import open_labels, open_volume
    from workbench.suggestions import SuggestOptions, options_dict, suggest, write_suggestions
    from workbench.training import load_run

    options = SuggestOptions(n=args.n, box=args.box, slices=args.slices, kind=args.uncertainty)
    raw = open_volume(args.raw, channel=args.channel)
    labels = open_labels(args.labels, like=raw) if args.labels else None
    predictor = load_run(args.model, device=args.device, precision=args.precision)
    bar = tqdm(desc="suggest", unit="slice", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True, delay=0.5)
    try:
        found = suggest(predictor, raw, labels, options, progress=bar)
    finally:
        bar.close()
    write_suggestions(found, args.out, model=str(args.model), raw=str(args.raw), labels=args.labels,
                      options=options_dict(options))
    best = f"; best at z={found[0].z} y={found[0].y} x={found[0].x}" if found else ""
    print(f"wrote {args.out} ({len(found)} suggestions{best})")
    return 0
