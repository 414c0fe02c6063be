"""The GPU path measured on CUDA: conv ceilings, training and prediction throughput per precision.

On a machine with CUDA, for every precision the GPU has (fp32; bf16 on Ampere and later; fp16 with a
GradScaler in training):
- the 3x3 convolution ceiling (channels_last conv2d 64 -> 64, 8 x 256^2, under the precision's autocast);
- training patches/s of ``unet2d`` (base 16) through the Trainer (data pipeline on, pinned-memory prefetch,
  cuDNN autotuning), batch 16 x 128^2;
- prediction voxels/s of a saved ``unet2d`` run over a synthetic zarr volume through ``predict_volume``,
  one block in flight against the default (two in flight), and, with more than one GPU, a local Dask
  cluster with one worker per GPU (``scheduler="processes"``).

On a machine without CUDA it writes ``{"status": "no GPU", ...}`` and measures nothing.

    python benchmarks/bench_gpu.py [--volume-gb 0.25] [--iterations 30]

Writes ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "gpu.json"


def conv_ceiling(precision: str, repeats: int = 10) -> float:
    """GFLOP/s of a channels_last 3x3 conv2d (64 -> 64, 8 x 256^2) on CUDA under ``precision``'s autocast."""
    import torch

    from workbench.precision import autocast

    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, 64, 256, 256, device="cuda").contiguous(memory_format=torch.channels_last)
    flops = 2 * 8 * 64 * 64 * 9 * 256 * 256
    best = 0.0
    with torch.inference_mode(), autocast("cuda", precision):
        for _ in range(3):
            conv(x)
        for _ in range(repeats):
            torch.cuda.synchronize()
            t = time.perf_counter()
            conv(x)
            torch.cuda.synchronize()
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return round(best, 1)


def train_speed(precision: str, iterations: int) -> dict:
    from bench_train_speed import trainer_speed

    return trainer_speed("unet2d", {"depth": 4, "base_channels": 16}, (1, 128, 128), iterations, batch=16,
                         device="cuda", precision=precision)


def predict_speed(run_dir: Path, vol: Path, out: Path, precision: str, **options) -> dict:
    from workbench.inference import PredictOptions, predict_volume
    from workbench.io import open_volume
    from workbench.training import load_run

    predictor = load_run(run_dir, device="cuda", precision=precision)
    raw = open_volume(vol)
    t0 = time.perf_counter()
    result = predict_volume(predictor, raw, out, PredictOptions(overwrite=True, **options))
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"voxels_per_s": round(raw.size / seconds), "seconds": round(seconds, 2),
            "workers": result.info.get("workers"), "options": {k: str(v) for k, v in options.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--volume-gb", type=float, default=0.25)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    import torch

    from workbench.device import gpu_count

    result = {"what": __doc__.split("\n")[0], "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                           "torch": torch.__version__,
                                                           "cuda": torch.version.cuda},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    gpus = gpu_count()
    if not gpus:
        result.update(status="no GPU", measured=False,
                      reason="torch.cuda.is_available() is False on this machine: nothing was measured on a GPU")
    else:
        from bench_predict import make_run, make_volume

        from workbench.precision import bf16_supported

        precisions = ["fp32", *(["bf16"] if bf16_supported("cuda") else []), "fp16"]
        result.update(status="measured", measured=True, gpus=[torch.cuda.get_device_name(i) for i in range(gpus)],
                      precisions={})
        tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
        try:
            run_dir = tmp / "run"
            make_run(run_dir)
            vol = tmp / "vol.zarr"
            shape = make_volume(vol, args.volume_gb, seed=0, yx=2048)
            result["volume_shape"] = list(shape)
            for prec in precisions:
                entry = result["precisions"][prec] = {"conv3x3_ceiling_gflops": conv_ceiling(prec)}
                entry["training"] = train_speed(prec, args.iterations)
                entry["prediction_one_block_in_flight"] = predict_speed(run_dir, vol, tmp / "o.zarr", prec, workers=1)
                entry["prediction_default"] = predict_speed(run_dir, vol, tmp / "o.zarr", prec)
                if gpus > 1:
                    entry["prediction_dask_one_worker_per_gpu"] = predict_speed(run_dir, vol, tmp / "o.zarr", prec,
                                                                               scheduler="processes")
                print(json.dumps({prec: entry}), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
