"""Does ``torch.compile`` pay? Every registered torch architecture, fp32 and bf16, prediction and training.

Writes ``benchmarks/results/compile.json``. Each measurement runs in its own process (so compile time is
cold: an empty inductor cache in a fresh temporary folder; a second process on the same cache gives the
warm compile time that a cached second run sees):

- prediction: the predictor that ``load_run`` returns for a freshly initialised run of the architecture,
  called on one block of the default plan for a 64 x 512 x 512 volume (block with its halo, the real tiling,
  autocast and memory format); eager and after ``compile_predictor`` (what ``workbench predict --compile``
  does). Per call: first-call seconds (compile), then the steady seconds per block.
- training: one optimiser step (forward under autocast, fp32 cross-entropy with ignored voxels, backward,
  AdamW) on the architecture's default batch and patch, eager and with ``torch.compile(model)``.

End to end, from those: a 5-minute training makes ``(300 - compile) / step_compiled`` steps against
``300 / step_eager``; a 1 Gvoxel prediction takes ``compile + n_blocks x block_compiled`` against
``n_blocks x block_eager`` (compute only: reading and writing are the same with and without compile, so
the end-to-end gain of prediction is at most this; a compiled prediction also keeps one block in flight where
the eager default runs two on one thread each). Gain = eager time / compiled time - 1; compile is a candidate
for a default only where that gain is above 10 %, and becomes one after an end-to-end run confirms it.

End to end (``--end-to-end``, for the rows where compile pays): ``predict_volume`` (the real pipeline:
reading, halos, blending, writing, blocks in flight) on a synthetic uint8 zarr of ``--e2e-shape``, eager with
the default workers against compiled (cold cache, then warm), each in a fresh process; the wall time, and the
steady seconds per block from the progress stamps. From those, the gain at 1 Gvoxel and the smallest number of
blocks at which compile gains more than 10 % (cold cache).

Usage: python benchmarks/bench_compile.py [--archs unet2d ...] [--precisions fp32 bf16] [--seconds 20]
       [--end-to-end [--e2e-shape 64 512 1024] [--only-end-to-end]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compile.json"
VOLUME = (64, 512, 512)  # the plan's volume: its default block is what a prediction call computes
TRAIN_SECONDS = 300.0
PREDICT_VOXELS = 1e9
THRESHOLD = 0.10


def _make_run(arch: str, run_dir: Path) -> None:
    """A freshly initialised run of ``arch`` (one training step on a tiny volume)."""
    from workbench.training import AugmentConfig, TrainConfig, Trainer

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (16, 96, 96)).astype(np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[:, 5:10] = 1
    labels[:, 40:45] = 2
    cfg = TrainConfig(arch=arch, iterations=1, batch_size=1, augment=AugmentConfig.none(), device="cpu",
                      prefetch=0, calibration="none", precision="fp32")
    Trainer(cfg, raw, labels, run_dir).run()


def _timed(fn, seconds: float, least: int = 3) -> tuple[float, int]:
    """Median seconds of ``fn()`` over repeats until ``seconds`` have passed (at least ``least`` calls)."""
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(times) < least or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), len(times)


def stage_predict(args) -> dict:
    """First call and steady seconds of one default block of ``args.arch`` (eager or compiled)."""
    import torch

    from workbench.inference.compute import compile_predictor
    from workbench.inference.planner import plan_blocks
    from workbench.training import load_run

    predictor = load_run(args.run, device="cpu", precision=args.precision)
    plan = plan_blocks(predictor, VOLUME, fixed=True)  # one input shape, eager and compiled alike
    block = plan.blocks()[0]
    shape = block.input.shape
    x = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    if args.compile:
        compile_predictor(predictor)
    t = time.perf_counter()
    predictor.predict(x)
    first = time.perf_counter() - t
    predictor.predict(x)
    steady, calls = _timed(lambda: predictor.predict(x), args.seconds)
    return {"first_call_s": first, "steady_s": steady, "calls": calls, "block_core": list(block.core.shape),
            "block_input": list(shape), "core_voxels": int(np.prod(block.core.shape)),
            "torch_threads": torch.get_num_threads()}


def stage_train(args) -> dict:
    """First step and steady seconds of one training step of ``args.arch`` (eager or compiled)."""
    import torch
    import torch.nn.functional as F

    from workbench.inference.compute import inductor_cache_dir
    from workbench.models.registry import build_model, get_architecture
    from workbench.precision import autocast

    info = get_architecture(args.arch)
    torch.manual_seed(0)
    net = build_model(args.arch, 1, 3)
    fmt = torch.channels_last if info.dims == 2 else torch.channels_last_3d
    net = net.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    patch = tuple(info.default_patch)
    batch = info.default_batch
    shape = (batch, 1, *patch[1:]) if info.dims == 2 else (batch, 1, *patch)
    x = torch.randn(shape).contiguous(memory_format=fmt)
    target = torch.randint(-1, 3, (batch, *shape[2:]))
    if args.compile:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
        step_net = torch.compile(net, dynamic=False)
    else:
        step_net = net

    def step():
        with autocast("cpu", args.precision):
            logits = step_net(x)
        loss = F.cross_entropy(logits.float(), target, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    step()
    steady, calls = _timed(step, args.seconds)
    return {"first_call_s": first, "steady_s": steady, "calls": calls, "batch": [batch, *patch],
            "torch_threads": torch.get_num_threads()}


def stage_volume(args) -> dict:
    """``predict_volume`` of ``args.vol`` with ``args.run`` (eager or compiled): wall and steady block seconds."""
    from workbench.inference import PredictOptions, predict_volume
    from workbench.io import open_volume
    from workbench.training import load_run

    t0 = time.perf_counter()
    predictor = load_run(args.run, device="cpu", precision=args.precision)
    raw = open_volume(args.vol)
    stamps: list[float] = []
    result = predict_volume(predictor, raw, Path(args.out), PredictOptions(overwrite=True, compile=args.compile),
                            progress=lambda done, total, stats: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    n = result.blocks_total
    # steady: the blocks after the first one or two (compile, start-up) until the last
    skip = min(2, n - 1)
    steady = (stamps[-1] - stamps[skip - 1]) / (n - skip) if n > skip >= 1 else None
    return {"wall_s": wall, "blocks": n, "steady_block_s": steady, "first_blocks_s": stamps[skip - 1] - t0,
            "workers": result.info.get("workers"), "block_shape": result.info["block_shape"],
            "voxels": int(raw.size)}


STAGES = {"predict": stage_predict, "train": stage_train, "volume": stage_volume}


def _run(stage: str, arch: str, precision: str, compiled: bool, cache: Path, seconds: float,
         run_dir: Path | None, extra: tuple[str, ...] = ()) -> dict:
    """One stage in a fresh process with the inductor cache at ``cache``; its JSON line."""
    argv = [sys.executable, __file__, "--stage", stage, "--arch", arch, "--precision", precision,
            "--seconds", str(seconds)]
    if run_dir is not None:
        argv += ["--run", str(run_dir)]
    argv += extra
    if compiled:
        argv.append("--compile")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), WORKBENCH_NO_REEXEC="1",
               TORCHINDUCTOR_COMPILE_THREADS="1")
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gains(kind: str, eager: dict, cold: dict, warm: dict) -> dict:
    """End-to-end gain of compile (cold and warm cache) for a 5-minute training or a 1 Gvoxel prediction."""
    def gain(compiled: dict) -> float | None:
        if "error" in compiled or "error" in eager:
            return None
        overhead = max(0.0, compiled["first_call_s"] - compiled["steady_s"])
        if kind == "train":
            steps_eager = TRAIN_SECONDS / eager["steady_s"]
            steps_compiled = max(0.0, TRAIN_SECONDS - overhead) / compiled["steady_s"]
            return round(steps_compiled / steps_eager - 1, 3)
        n_blocks = PREDICT_VOXELS / eager["core_voxels"]
        return round(n_blocks * eager["steady_s"] / (overhead + n_blocks * compiled["steady_s"]) - 1, 3)

    steady = (None if "error" in eager or "error" in cold else round(eager["steady_s"] / cold["steady_s"] - 1, 3))
    return {"steady_gain": steady, "end_to_end_gain_cold_cache": gain(cold), "end_to_end_gain_warm_cache": gain(warm),
            "compile_s_cold": None if "error" in cold else round(cold["first_call_s"] - cold["steady_s"], 1),
            "compile_s_warm": None if "error" in warm else round(warm["first_call_s"] - warm["steady_s"], 1)}


def _min_blocks(eager_block: float, compiled_block: float, overhead: float) -> int | None:
    """Fewest blocks at which ``n x eager_block > 1.1 x (overhead + n x compiled_block)``; None: never."""
    saving = eager_block - (1 + THRESHOLD) * compiled_block
    return None if saving <= 0 else int(np.floor((1 + THRESHOLD) * overhead / saving)) + 1


def _end_to_end(args, pairs: list[tuple[str, str]], tmp: Path) -> list[dict]:
    """``predict_volume`` eager against compiled (cold, warm) for each (arch, precision); see the docstring."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_predict import make_volume

    nz, ny, nx = args.e2e_shape
    vol = tmp / "e2e.zarr"
    make_volume(vol, 0, seed=7, yx=ny, nz=nz)
    if nx != ny:  # make_volume writes square sections: crop a view of the wanted x extent
        import zarr

        src = zarr.open_array(str(vol), mode="r")
        dst = zarr.create_array(str(tmp / "e2e_x.zarr"), shape=(nz, ny, nx), chunks=src.chunks, dtype="uint8",
                                zarr_format=2)
        for z0 in range(0, nz, 8):
            dst[z0:z0 + 8] = np.tile(src[z0:z0 + 8], (1, 1, -(-nx // ny)))[:, :, :nx]
        vol = tmp / "e2e_x.zarr"
    rows = []
    for arch, precision in pairs:
        run_dir = tmp / f"e2e-run-{arch}"
        if not run_dir.exists():
            _make_run(arch, run_dir)
        cache = tmp / f"e2e-cache-{arch}-{precision}"
        extra = ("--vol", str(vol), "--out", str(tmp / "e2e-out.zarr"))
        eager = _run("volume", arch, precision, False, cache, 0, run_dir, extra)
        cold = _run("volume", arch, precision, True, cache, 0, run_dir, extra)
        warm = _run("volume", arch, precision, True, cache, 0, run_dir, extra)
        row = {"arch": arch, "precision": precision, "shape": [nz, ny, nx], "eager": eager,
               "compiled_cold_cache": cold, "compiled_warm_cache": warm}
        e, c = eager.get("steady_block_s"), cold.get("steady_block_s")
        if e and c and "error" not in warm:
            overhead = max(0.0, cold["wall_s"] - eager["wall_s"] * c / e)  # compile + start-up beyond eager's
            n_1g = PREDICT_VOXELS / (eager["voxels"] / eager["blocks"])
            row.update(gain_this_volume_cold=round(eager["wall_s"] / cold["wall_s"] - 1, 3),
                       gain_this_volume_warm=round(eager["wall_s"] / warm["wall_s"] - 1, 3),
                       steady_gain=round(e / c - 1, 3), compile_overhead_s=round(overhead, 1),
                       gain_1_gvoxel_cold=round(n_1g * e / (overhead + n_1g * c) - 1, 3),
                       min_blocks_for_gain_cold=_min_blocks(e, c, overhead))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), flush=True)
    return rows


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=sorted(STAGES))
    p.add_argument("--arch", default=None)
    p.add_argument("--run", default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--archs", nargs="*", default=None, help="default: every registered torch architecture")
    p.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    p.add_argument("--precision", default="fp32", help="(stage argument)")
    p.add_argument("--seconds", type=float, default=20.0, help="steady-state timing per measurement")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--vol", default=None, help="(stage argument)")
    p.add_argument("--out", default=None, help="(stage argument)")
    p.add_argument("--end-to-end", action="store_true", help="also predict a volume end to end where compile pays")
    p.add_argument("--only-end-to-end", action="store_true",
                   help="only the end-to-end runs, for the rows of --results that pay (kept, the rest updated)")
    p.add_argument("--e2e-shape", nargs=3, type=int, default=(64, 512, 1024), metavar=("Z", "Y", "X"))
    return p.parse_args()


def main() -> int:
    args = _parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return 0
    import torch

    from workbench.models.registry import list_architectures
    from workbench.precision import bf16_supported

    out = Path(args.results)
    if args.only_end_to_end:
        report = json.loads(out.read_text())
        pairs = [(r["arch"], r["precision"]) for r in report["results"] if r["pays"] and r["stage"] == "predict"]
        with tempfile.TemporaryDirectory(prefix="wb-bench-compile-") as tmp:
            report["end_to_end"] = _end_to_end(args, pairs, Path(tmp))
        out.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    archs = args.archs or [a.name for a in list_architectures() if a.kind == "torch"]
    precisions = [p for p in args.precisions if p == "fp32" or bf16_supported("cpu")]
    report = {"what": "torch.compile against eager, per architecture and precision, prediction and training",
              "method": __doc__.split("\n\n")[1].replace("\n", " "),
              "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "load_average_start": os.getloadavg()},
              "threshold_gain": THRESHOLD, "results": []}
    with tempfile.TemporaryDirectory(prefix="wb-bench-compile-") as tmp:
        tmp = Path(tmp)
        for arch in archs:
            run_dir = tmp / f"run-{arch}"
            _make_run(arch, run_dir)
            for precision in precisions:
                for stage in ("predict", "train"):
                    cache = tmp / f"cache-{arch}-{precision}-{stage}"
                    rd = run_dir if stage == "predict" else None
                    eager = _run(stage, arch, precision, False, cache, args.seconds, rd)
                    cold = _run(stage, arch, precision, True, cache, args.seconds, rd)
                    warm = _run(stage, arch, precision, True, cache, args.seconds, rd)
                    row = {"arch": arch, "precision": precision, "stage": stage, "eager": eager,
                           "compiled_cold_cache": cold, "compiled_warm_cache": warm, **_gains(stage, eager, cold, warm)}
                    e2e = row["end_to_end_gain_cold_cache"]
                    row["pays"] = e2e is not None and e2e > THRESHOLD
                    report["results"].append(row)
                    print(json.dumps({k: row[k] for k in ("arch", "precision", "stage", "steady_gain",
                                                          "end_to_end_gain_cold_cache", "compile_s_cold",
                                                          "compile_s_warm", "pays")}), flush=True)
                    out.write_text(json.dumps(report, indent=1) + "\n")
        if args.end_to_end:
            pairs = [(r["arch"], r["precision"]) for r in report["results"] if r["pays"] and r["stage"] == "predict"]
            report["end_to_end"] = _end_to_end(args, pairs, tmp)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["pays_anywhere"] = [f"{r['arch']} {r['precision']} {r['stage']}" for r in report["results"] if r["pays"]]
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
