"""Blockwise prediction throughput and memory: workbench.inference vs the conv ceiling and MONAI.

Writes ``benchmarks/results/predict.json``. A freshly initialised ``unet2d`` (4 levels, base 16) is
saved as a run and loaded through ``load_run`` (the same Predictor path as real use). Synthetic uint8
zarr volumes are made under /tmp and deleted afterwards. Every measured stage runs in its own process so
its peak RSS is its own (sampled every 0.1 s over the whole process tree, dask workers included).

Figures: voxels/s (output voxels), achieved GFLOP/s = voxels/s x forward FLOPs per voxel
(``torch.utils.flop_counter`` on a 256^2 slice), against the oneDNN 3x3 convolution ceiling of the run's
precision (fp32, or bf16 autocast) measured in the same run (channels_last conv2d, 64 -> 64 channels).
The peak-memory series predicts volumes of 16, 64 and 256 sections of 512^2 with the same model and block
shape, each in a fresh process, --memory-repeats times (``memory_series``: the median and every run).

Usage: python benchmarks/bench_predict.py [--sizes-gb 1 4] [--extras-gb 0.25] [--precisions fp32 bf16]
[--memory-sections 16 64 256] [--memory-repeats 3] [--skip-dask] [--skip-compile] [--skip-monai] [--keep-previous]. The size series
runs the local scheduler; the comparisons run on the --extras-gb volume.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "predict.json"
YX = 4096  # slice size of the synthetic volumes


# ------------------------------------------------------------------------------------------------ stages


def _ceiling(precision: str) -> float:
    import torch

    from workbench.precision import autocast

    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 256, 256).contiguous(memory_format=torch.channels_last)
    flops = 2 * 64 * 64 * 9 * 4 * 256 * 256
    best = 0.0
    with torch.inference_mode(), autocast("cpu", precision):
        conv(x)
        for _ in range(6):
            t = time.perf_counter()
            conv(x)
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best


def stage_ceiling(args) -> dict:
    """Best GFLOP/s of a large channels_last 3x3 conv2d (64 -> 64 channels), in fp32 and (where the CPU has
    it natively) under bf16 autocast."""
    import torch

    from workbench.precision import bf16_supported

    out = {"conv3x3_gflops": _ceiling("fp32"), "torch_threads": torch.get_num_threads()}
    if bf16_supported("cpu"):
        out["conv3x3_gflops_bf16"] = _ceiling("bf16")
    return out


def _ceiling_key(precision: str | None) -> str:
    return "conv3x3_gflops" if precision in (None, "fp32") else f"conv3x3_gflops_{precision}"


def stage_predict(args) -> dict:
    """predict_volume on the volume (locally or on a local Dask cluster); block timing from progress."""
    from workbench.inference import PredictOptions, predict_volume
    from workbench.io import open_volume
    from workbench.training import load_run

    predictor = load_run(args.run, device="cpu", precision=args.precision or "fp32")
    raw = open_volume(args.vol)
    stamps = []

    def progress(done, total, stats):
        stamps.append(time.perf_counter())

    out = Path(args.out)
    t0 = time.perf_counter()
    options = PredictOptions(scheduler=args.scheduler, overwrite=True, compile=args.compile,
                             workers=args.workers if args.workers == "auto" else int(args.workers))
    result = predict_volume(predictor, raw, out, options, progress=progress)
    total = time.perf_counter() - t0
    assert result.complete
    n_blocks = result.blocks_total
    vox = raw.size
    # steady state: from the first finished block(s) on (excludes compile/start-up and model loading)
    skip = max(1, n_blocks // 10)
    steady = (vox * (n_blocks - skip) / n_blocks) / (stamps[-1] - stamps[skip - 1]) if n_blocks > skip else None
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": total, "voxels": vox, "voxels_per_s": vox / total, "voxels_per_s_steady": steady,
            "blocks": n_blocks, "block_shape": result.info["block_shape"], "halo": result.info["halo"],
            "workers": result.info.get("workers"), "block_memory_bytes": result.info.get("block_memory_bytes"),
            "block_memory_bound_bytes": result.info.get("block_memory_bound_bytes"),
            "precision": result.info.get("precision", "fp32")}


def stage_monai(args) -> dict:
    """MONAI sliding_window_inference on a sub-volume held in memory (MONAI keeps input and output whole)."""
    import torch
    from monai.inferers import sliding_window_inference

    from workbench.io import open_volume
    from workbench.training import load_run
    from workbench.training.data import normalise

    predictor = load_run(args.run, device="cpu")
    model = predictor.model
    raw = open_volume(args.vol)
    nz = max(1, int(args.monai_gb * 1e9 // (raw.shape[1] * raw.shape[2])))
    block = raw[0:nz]
    t0 = time.perf_counter()
    x = torch.from_numpy(normalise(block, predictor.normalisation))[:, None]  # (z, 1, y, x): slices as batch
    with torch.inference_mode():
        y = sliding_window_inference(x, roi_size=(1024, 1024), sw_batch_size=1, predictor=model, overlap=0.1,
                                     mode="gaussian")
        probs = y.softmax(1)
    total = time.perf_counter() - t0
    return {"seconds": total, "voxels": int(block.size), "voxels_per_s": block.size / total,
            "roi": [1024, 1024], "overlap": 0.1, "mode": "gaussian", "sw_batch_size": 1,
            "output_shape": list(probs.shape)}


STAGES = {"ceiling": stage_ceiling, "predict": stage_predict, "monai": stage_monai}


# ------------------------------------------------------------------------------------------------ driver


def _tree_rss(proc) -> tuple[int, dict[int, int]]:
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, {}
    per = {}
    for p in procs:
        try:
            per[p.pid] = p.memory_info().rss
        except psutil.Error:
            pass
    return per.get(proc.pid, 0), per


def run_stage(name: str, **kw) -> dict:
    """Run a stage in a child process, sampling the RSS of it and its children; returns its JSON + memory."""
    import psutil

    argv = [sys.executable, __file__, "--stage", name]
    for k, v in kw.items():
        if v is None or v is False:
            continue
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    # one compile thread: inductor's compile-worker pool would otherwise count as (and compete with) the run
    from workbench.tuning import GLIBC_TUNABLES

    env = dict(os.environ, GLIBC_TUNABLES=GLIBC_TUNABLES, WORKBENCH_NO_REEXEC="1", TORCHINDUCTOR_COMPILE_THREADS="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    ps = psutil.Process(proc.pid)
    peak_main, peak_children = 0, {}
    stop = threading.Event()

    def sample():
        nonlocal peak_main
        while not stop.is_set():
            main, per = _tree_rss(ps)
            peak_main = max(peak_main, main)
            for pid, rss in per.items():
                if pid != proc.pid:
                    peak_children[pid] = max(peak_children.get(pid, 0), rss)
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"stage {name} failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_gb"] = peak_main / 1e9
    if kw.get("scheduler") == "processes":  # the two dask workers (their nannies are smaller)
        big = sorted(peak_children.values(), reverse=True)[:2]
        result["peak_rss_workers_gb"] = [v / 1e9 for v in big]
    print(f"  {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def make_volume(path: Path, gb: float, seed: int, yx: int = YX, nz: int | None = None) -> tuple[int, int, int]:
    """A uint8 zarr (z, yx, yx) of ~gb GB (z a multiple of 8; or ``nz`` sections): smoothed-noise tiles,
    shifted per slice."""
    import zarr
    from scipy import ndimage as ndi

    nz = nz or max(8, int(round(gb * 1e9 / (yx * yx) / 8)) * 8)
    rng = np.random.default_rng(seed)
    tile = ndi.gaussian_filter(rng.random((1024, 1024), dtype=np.float32), 3, mode="wrap")
    tile = ((tile - tile.min()) / (np.ptp(tile) + 1e-9) * 255).astype(np.uint8)
    plane = np.tile(tile, (-(-yx // 1024), -(-yx // 1024)))[:yx, :yx]
    chunk = min(yx, 1024)
    arr = zarr.create_array(str(path), shape=(nz, yx, yx), chunks=(8, chunk, chunk), dtype="uint8", zarr_format=2)
    for z0 in range(0, nz, 8):
        slab = np.stack([np.roll(plane, (7 * z, 13 * z), axis=(0, 1)) for z in range(z0, z0 + 8)])
        arr[z0:z0 + 8] = slab
    return (nz, yx, yx)


def make_run(run_dir: Path) -> None:
    """A freshly initialised unet2d (defaults: 4 levels, base 16) saved as a run (one training step)."""
    from workbench.training import AugmentConfig, TrainConfig, Trainer

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (2, 128, 128)).astype(np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[:, 5:10] = 1
    labels[:, 40:45] = 2
    cfg = TrainConfig(arch="unet2d", iterations=1, batch_size=1, patch_shape=[1, 128, 128],
                      augment=AugmentConfig.none(), device="cpu", prefetch=0)
    Trainer(cfg, raw, labels, run_dir).run()


def flops_per_voxel(run_dir: Path) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from workbench.training import load_run

    model = load_run(run_dir, device="cpu").model
    x = torch.randn(1, 1, 256, 256)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / (256 * 256)


def _previous_runs(path: Path) -> tuple[list[dict], dict | None]:
    """Runs (each tagged with the start time of the benchmark that measured it) and MONAI entry of ``path``."""
    if not path.exists():
        return [], None
    old = json.loads(path.read_text())
    runs = [dict(r, measured=r.get("measured", old.get("started"))) for r in old.get("runs", [])]
    monai = old.get("monai")
    return runs, (dict(monai, measured=monai.get("measured", old.get("started"))) if monai else None)


def _with_previous(report: dict, previous) -> dict:
    """``report`` plus the previous runs of a configuration and volume size it did not measure again."""
    runs, monai = previous
    measured = {(r["config"], round(r["volume_gb"], 2)) for r in report["runs"]}
    kept = [r for r in runs if (r["config"], round(r["volume_gb"], 2)) not in measured]
    out = dict(report, runs=[dict(r, measured=report["started"]) for r in report["runs"]] + kept)
    if monai and "monai" not in report:
        out["monai"] = monai
    return out


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=sorted(STAGES))
    p.add_argument("--run")
    p.add_argument("--vol")
    p.add_argument("--out")
    p.add_argument("--scheduler")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--precision", default=None, help="(stage argument) fp32 or bf16")
    p.add_argument("--precisions", nargs="*", default=["fp32", "bf16"],
                   help="precisions of the size series and the default-settings comparison")
    p.add_argument("--memory-sections", nargs="*", type=int, default=[16, 64, 256],
                   help="peak-memory series: volumes of N sections of --memory-yx^2 (none: skip it)")
    p.add_argument("--memory-yx", type=int, default=512)
    p.add_argument("--memory-repeats", type=int, default=3, help="runs per size of the peak-memory series (median)")
    p.add_argument("--results", default=str(RESULTS), help="where the JSON goes")
    p.add_argument("--workers", default="auto", help="(stage argument) blocks in flight: N or auto")
    p.add_argument("--sizes-gb", nargs="*", type=float, default=[1.0, 4.0], help="volume sizes of the series (none: skip it)")
    p.add_argument("--monai-gb", type=float, default=0.25, help="(stage argument) MONAI's sub-volume")
    p.add_argument("--extras-gb", type=float, default=0.25,
                   help="volume for the torch.compile, Dask and MONAI comparisons (0: skip them)")
    p.add_argument("--skip-monai", action="store_true")
    p.add_argument("--skip-dask", action="store_true")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--yx", type=int, default=YX, help="slice size of the synthetic volumes (multiple of 1024)")
    p.add_argument("--keep-previous", action="store_true",
                   help="keep the runs of the existing results file that this run does not measure again")
    return p.parse_args()


def _new_report(args) -> dict:
    import platform

    import psutil
    import torch

    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "load_average_start": list(os.getloadavg()), "memory_gb": psutil.virtual_memory().total / 1e9},
        "model": "unet2d (depth 4, base 16), freshly initialised, via workbench.training.load_run",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [],
        "sizes_gb_requested": args.sizes_gb,
    }


def _measure(run_dir: Path, label, vol, shape, stage="predict", **kw) -> dict:
    key = _ceiling_key(kw.get("precision"))
    before = run_stage("ceiling").get(key)
    r = run_stage(stage, run=run_dir, vol=vol, **kw)
    after = run_stage("ceiling").get(key)
    # the machine's speed drifts: compare with the ceiling measured right around the stage
    r.update(config=label, volume_gb=r.get("voxels", float(np.prod(shape))) / 1e9, shape=list(shape),
             ceiling_around_gflops=[before, after])
    return r


def _run_extras(args, tmp: Path, run_dir: Path, report: dict, save) -> None:
    """The comparisons (torch.compile, a Dask cluster, MONAI) on a smaller volume."""
    vol = tmp / "extras.zarr"
    shape = make_volume(vol, args.extras_gb, seed=99, yx=args.yx)
    for prec in args.precisions:
        report["runs"].append(_measure(run_dir, _label("local threads, default (workers auto)", prec), vol, shape,
                                       out=tmp / "out.zarr", precision=prec))
    report["runs"].append(_measure(run_dir, "local threads, 1 block in flight x all torch threads", vol, shape,
                                   out=tmp / "out.zarr", workers=1))
    if not args.skip_compile:
        report["runs"].append(_measure(run_dir, "local threads + torch.compile", vol, shape, out=tmp / "out.zarr",
                                       workers=1, compile=True))
    if not args.skip_dask:
        report["runs"].append(_measure(run_dir, "dask LocalCluster 2 workers x 1 thread", vol, shape,
                                       out=tmp / "out.zarr", scheduler="processes"))
    save()
    if not args.skip_monai:
        report["monai"] = _measure(run_dir, "MONAI sliding_window_inference (in memory)", vol, shape, stage="monai",
                                   monai_gb=args.extras_gb)
        save()
    shutil.rmtree(vol, ignore_errors=True)


def _run_sizes(args, tmp: Path, run_dir: Path, report: dict, save) -> None:
    """The size series with the default settings."""
    for i, gb in enumerate(args.sizes_gb):
        vol = tmp / f"vol{i}.zarr"
        t = time.perf_counter()
        shape = make_volume(vol, gb, seed=i, yx=args.yx)
        print(f"volume {shape} ({np.prod(shape) / 1e9:.2f} GB) made in {time.perf_counter() - t:.0f} s",
              file=sys.stderr, flush=True)
        for prec in args.precisions:
            report["runs"].append(_measure(run_dir, _label("local threads, default (workers auto)", prec), vol,
                                           shape, out=tmp / "out.zarr", precision=prec))
            save()
        shutil.rmtree(vol, ignore_errors=True)


def _label(config: str, precision: str) -> str:
    """A run's configuration name; bf16 runs say so (fp32 keeps the names of earlier results)."""
    return config if precision == "fp32" else f"{config}, {precision}"


def _run_memory(args, tmp: Path, run_dir: Path, report: dict, save) -> None:
    """Peak RSS against the volume size: N sections of yx^2, same model and block shape, each a fresh process,
    ``--memory-repeats`` times (the allocator's layout, and so the peak, differs between runs)."""
    series = report["memory_series"] = {"yx": args.memory_yx, "repeats": args.memory_repeats, "runs": []}
    for n in args.memory_sections:
        vol = tmp / f"mem{n}.zarr"
        shape = make_volume(vol, 0, seed=n, yx=args.memory_yx, nz=n)
        peaks, rates = [], []
        for _ in range(args.memory_repeats):
            r = run_stage("predict", run=run_dir, vol=vol, out=tmp / "out.zarr", precision=args.precisions[0])
            peaks.append(round(r["peak_rss_gb"], 3))
            rates.append(round(r["voxels_per_s"]))
        series["runs"].append({"sections": n, "shape": list(shape), "peak_rss_gb": float(np.median(peaks)),
                               "peak_rss_gb_each": peaks, "workers": r["workers"], "block_shape": r["block_shape"],
                               "block_memory_bound_gb": round((r.get("block_memory_bound_bytes") or 0) / 1e9, 3),
                               "voxels_per_s": round(float(np.median(rates))), "precision": r["precision"]})
        shutil.rmtree(vol, ignore_errors=True)
        first = series["runs"][0]["peak_rss_gb"]
        series["peak_rss_vs_smallest"] = [round(x["peak_rss_gb"] / first, 3) for x in series["runs"]]
        save()


def _add_fractions(report: dict) -> None:
    """GFLOP/s of every run and its fraction of the ceiling (the run's maximum and the one around it)."""
    ceilings = {}
    for key in ("conv3x3_gflops", "conv3x3_gflops_bf16"):
        seen = [report[k][key] for k in ("ceiling_start", "ceiling_end") if report.get(k, {}).get(key)]
        if seen:
            ceilings[key] = max(seen)
    fpv = report["flops_per_voxel"]
    for r in [*report["runs"], report.get("monai", {})]:
        if not r:
            continue
        ceiling = ceilings[_ceiling_key(r.get("precision", "fp32"))]
        around = [c for c in (r.get("ceiling_around_gflops") or []) if c]
        local_ceiling = float(np.mean(around or [ceiling]))
        for key in ("voxels_per_s", "voxels_per_s_steady"):
            if r.get(key):
                g = r[key] * fpv / 1e9
                r[key.replace("voxels_per_s", "gflops")] = g
                r[key.replace("voxels_per_s", "fraction_of_run_max_ceiling")] = g / ceiling
                r[key.replace("voxels_per_s", "fraction_of_ceiling_around")] = g / local_ceiling
    report["ceiling_gflops"] = ceilings["conv3x3_gflops"]
    if "conv3x3_gflops_bf16" in ceilings:
        report["ceiling_gflops_bf16"] = ceilings["conv3x3_gflops_bf16"]


def main() -> int:
    args = _parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_", dir="/tmp"))
    report = _new_report(args)
    results = Path(args.results)
    previous = _previous_runs(results) if args.keep_previous else ([], None)

    def save():
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(dict(_with_previous(report, previous), finished=False), indent=2))

    try:
        run_dir = tmp / "run"
        make_run(run_dir)
        report["flops_per_voxel"] = flops_per_voxel(run_dir)
        report["ceiling_start"] = run_stage("ceiling")
        # comparisons (torch.compile, a Dask cluster, MONAI) on a smaller volume, then the size series
        if args.extras_gb:
            _run_extras(args, tmp, run_dir, report, save)
        _run_sizes(args, tmp, run_dir, report, save)
        if args.memory_sections:
            _run_memory(args, tmp, run_dir, report, save)
        report["ceiling_end"] = run_stage("ceiling")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _add_fractions(report)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["finished"] = True
    report = _with_previous(report, previous)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
