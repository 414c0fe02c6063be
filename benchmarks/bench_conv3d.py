"""The 3D U-Nets' CPU float32 inference with and without the oneDNN route for small 3D convolutions.

PyTorch sends a float32 3D convolution of one sample whose N * C * D * H is at most 20480 to its native
``slow_conv3d``; ``workbench.models.blocks`` routes those to oneDNN in inference. This benchmark times one
forward pass of each registered 3D network on single-sample inputs of the sizes a preview, a thin volume or a
volume's edge block gives (random weights, eval mode, ``torch.inference_mode``), with the route on and off
(the stock ``torch.nn.Conv3d.forward``), interleaved, best of ``--repeats``, at 1 and 2 torch threads, and the
largest difference of the outputs.

    python benchmarks/bench_conv3d.py            # -> benchmarks/results/conv3d_path.json
    python benchmarks/bench_conv3d.py --check-name amd-epyc   # adds the run under "checks" of that file
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "conv3d_path.json"
SHAPES = ((16, 128, 128), (8, 256, 256), (32, 256, 256))


def forward_seconds(model, x, repeats: int) -> tuple[float, float, float]:
    """Best seconds of a forward pass with the route on and off, and the largest output difference."""
    import torch

    from workbench.models.blocks import _conv3d_class

    cls = _conv3d_class()
    routed = cls.forward
    best = {"on": float("inf"), "off": float("inf")}
    out = {}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for mode in ("on", "off"):
                cls.forward = routed if mode == "on" else torch.nn.Conv3d.forward
                try:
                    t0 = time.perf_counter()
                    out[mode] = model(x)
                    if i:  # the first round creates the oneDNN primitives
                        best[mode] = min(best[mode], time.perf_counter() - t0)
                finally:
                    cls.forward = routed
    return best["on"], best["off"], float((out["on"] - out["off"]).abs().max())


def main(argv=None) -> int:
    import torch

    from workbench.models.registry import build_model, list_architectures
    from workbench.precision import cpu_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--check-name", default="",
                        help="keep the file's rows and store this run under checks[NAME] (another machine)")
    args = parser.parse_args(argv)
    archs = [a.name for a in list_architectures() if a.kind == "torch" and a.dims == 3]
    rows = []
    load_before = os.getloadavg()
    for arch in archs:
        model = build_model(arch, in_channels=1, out_channels=2).eval()
        for shape in SHAPES:
            x = torch.randn(1, 1, *shape)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                on, off = forward_seconds(model, x, args.repeats)[:2]
                diff = forward_seconds(model, x, 0)[2]
                row = {"arch": arch, "input": list(shape), "threads": threads, "native_s": round(off, 3),
                       "routed_s": round(on, 3), "speedup": round(off / on, 2), "max_abs_difference": diff}
                rows.append(row)
                print(json.dumps(row), flush=True)
    report = {"what": __doc__.splitlines()[0], "method": __doc__.split("\n\n")[1].replace("\n", " "),
              "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "load_average_start": load_before, "load_average_end": os.getloadavg()},
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.check_name:
        kept = json.loads(out.read_text()) if out.is_file() else {}
        kept.setdefault("checks", {})[args.check_name] = report
        report = kept
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
