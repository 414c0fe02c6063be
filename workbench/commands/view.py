"""``workbench view``: Neuroglancer on any readable volumes, served from this machine until Ctrl+C."""

from __future__ import annotations

import argparse
import signal
import sys
import time

NAME = "view"
HELP = "open Neuroglancer on a volume (plus labels, predictions, segmentation); prints the URL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="raw volume: file or folder, file.h5:/dataset, store.zarr/array, ...")
    parser.add_argument("--labels", metavar="SRC", help="sparse labels / class labels (integers, 0 = unlabelled)")
    parser.add_argument("--pred", metavar="SRC",
                        help="class probabilities (one layer per channel; a prediction written with --uncertainty "
                             "also gets a hidden 'uncertainty' heat-map layer)")
    parser.add_argument("--seg", metavar="SRC", help="instance segmentation (integers, 0 = background)")
    parser.add_argument("--suggestions", metavar="FILE.json",
                        help="ranked boxes from `workbench suggest`, shown as box annotations (rank and score)")
    parser.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"), help="voxel size in nm")
    parser.add_argument("--port", type=int, default=0, metavar="P", help="port (default: a free one)")
    parser.add_argument("--host", "--bind", dest="bind", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1: this machine only; any other needs --public)")
    parser.add_argument("--public", action="store_true",
                        help="allow a non-loopback --host: whoever reaches the port and has the URL (its random "
                             "token) sees the data")
    parser.add_argument("--layout", default=None, help="xy, 4panel, xy-3d, ... (default: from the data)")
    parser.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)  # tests: build, print, exit


def open_channels(src: str, like) -> list:
    """The channels of a probability source as Volumes shaped like ``like`` (one volume = one channel)."""
    from workbench.errors import WorkbenchError
    from workbench.io import open_volume

    try:
        vols = [open_volume(src)]
    except WorkbenchError as err:
        if "channels" not in str(err):
            raise
        vols, c = [], 0
        while True:
            try:
                vols.append(open_volume(src, channel=c))
            except WorkbenchError:
                if not vols:
                    raise
                break
            c += 1
    for v in vols:
        check_shape(v, like, "--pred")
    return vols


def check_shape(vol, like, option: str) -> None:
    from workbench.errors import WorkbenchError

    if tuple(vol.shape) != tuple(like.shape):
        raise WorkbenchError(
            f"{option} has shape {tuple(vol.shape)} but the raw volume has shape {tuple(like.shape)}; they must match",
            vol.source or None,
        )


def build_viewer(args: argparse.Namespace):
    """Open every source and build the viewer (port fallback included); returns ``(viewer, messages)``."""
    from workbench.errors import WorkbenchError
    from workbench.io import open_labels, open_volume
    from workbench.ports import port_is_free
    from workbench.suggestions import read_suggestions
    from workbench.viewer.live import WorkbenchViewer

    raw = open_volume(args.src, voxel_size=args.voxel_size)
    labels = open_labels(args.labels, like=raw) if args.labels else None
    seg = open_labels(args.seg, like=raw) if args.seg else None
    for vol, opt in ((labels, "--labels"), (seg, "--seg")):
        if vol is not None:
            check_shape(vol, raw, opt)
    pred = open_channels(args.pred, raw) if args.pred else None
    suggestions = read_suggestions(args.suggestions, raw.shape) if getattr(args, "suggestions", None) else None
    notes = []
    port = int(args.port)
    if not 0 <= port <= 65535:
        raise WorkbenchError(f"--port {port}: a port is 0 (any free one) to 65535")
    if port and not port_is_free(args.bind, port):
        notes.append(f"port {port} is in use; using a free port instead")
        port = 0
    try:
        viewer = WorkbenchViewer(voxel_size=raw.voxel_size, bind=args.bind, port=port, layout=args.layout)
    except OSError as err:
        raise WorkbenchError(f"cannot listen on {args.bind}:{port} ({err})") from err
    viewer.set_raw(raw)
    if labels is not None:
        viewer.set_labels(labels)
    if pred is not None:
        viewer.set_probabilities(pred)
        viewer.set_prediction_uncertainty(args.pred)
    if seg is not None:
        viewer.set_segmentation(seg)
    if suggestions is not None:
        viewer.set_suggestions(suggestions)
    return viewer, notes


def run(args: argparse.Namespace) -> int:
    from workbench.exposure import check_exposure
    from workbench.stopping import STOP_SIGNALS, raise_keyboard_interrupt

    warning = check_exposure(args.bind, None, getattr(args, "public", False), options="--public")
    viewer, notes = build_viewer(args)
    for note in notes:
        print(f"workbench view: {note}", file=sys.stderr)
    print(f"Neuroglancer: {viewer.url()}", flush=True)
    if warning:
        print(f"workbench view: {warning}", file=sys.stderr)
    if args.no_wait:
        return 0
    print("serving until Ctrl+C", file=sys.stderr, flush=True)
    for sig in STOP_SIGNALS:  # the server is a thread of this process: ending it releases the port
        signal.signal(sig, raise_keyboard_interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
