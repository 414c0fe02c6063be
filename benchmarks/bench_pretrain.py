"""Self-supervised warm-up then fine-tune, against training from scratch, at equal CPU time, from sparse scribbles.

Protocol (the sparse benchmark's, ``sparse_pipeline.py``): train on sections 0-19 from simulated scribbles
(membrane = 1, interior = 2), evaluate on sections 20-29 (pixel error, membrane F1, adapted Rand error of the
seeded watershed, per slice, averaged). Two data sets: ISBI 2012 (30 x 512^2) and the built-in synthetic sample
(``workbench.synthetic.make_sample``, 30 x 512^2, seed 0; membrane = semantic class 1). Per data set and seed,
one warm-up (``workbench.training.pretext``, on sections 0-19, no labels) is shared by every scribble fraction;
for each fraction the warm-started fine-tune (``TrainConfig(init=warm-up run)``) is compared with a from-scratch
run of the same total budget.

The machine is shared, so budgets are CPU time, not wall time: iteration counts are calibrated once (under
``flock /tmp/wb-bench.lock``) from the process CPU seconds (``time.process_time``, every thread) of a
supervised step and of a pretext step, then every run trains a fixed number of iterations:
``scratch = total / sup_step``, ``warm-up = share * total / pretext_step``, ``fine-tune = (1 - share) * total /
sup_step``. The CPU seconds each run really used are recorded beside the figures.

    python benchmarks/bench_pretrain.py --calibrate                  # step costs -> results/pretrain.json
    python benchmarks/bench_pretrain.py --data isbi --seeds 0 --total-cpu-min 2.5
    python benchmarks/bench_pretrain.py --choose                    # masked vs blind-spot at 0.25 % (ISBI)

Results are merged into benchmarks/results/pretrain.json (one entry per data set, seed and fraction).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sparse_pipeline as sp  # noqa: E402

RESULTS = HERE / "results" / "pretrain.json"
FRACTIONS = (0.0025, 0.005, 0.01)
#: the recipe for scribbles on a CPU (bench_sparse.py): the 2D U-Net at half width
ARCH, ARCH_OPTIONS = "unet2d", {"base_channels": 8}


def load_data(name: str):
    """raw (30, 512, 512) and dense labels (1 membrane, 2 interior) of ``isbi`` or ``synthetic``."""
    if name == "isbi":
        return sp.load_isbi()
    from workbench.synthetic import make_sample

    s = make_sample((30, 512, 512), seed=0)
    dense = np.where(s.semantic == 1, sp.MEMBRANE, sp.INTERIOR).astype(np.uint8)
    return np.asarray(s.raw), dense


def scribbles(name: str, dense: np.ndarray, fraction: float, seed: int = 0):
    if name == "isbi":
        return sp.training_labels(dense, fraction, seed)
    from workbench.annotations import simulate_scribbles

    out = np.zeros_like(dense)
    sc, _ = simulate_scribbles(np.where(dense[sp.TRAIN] == sp.MEMBRANE, 0, 255), fraction, seed=seed)
    out[sp.TRAIN] = sc
    return out, float((sc > 0).mean())


def sup_config(iterations: int, seed: int, init: str | None = None):
    from workbench.training import TrainConfig

    return TrainConfig(arch=ARCH, arch_options=dict(ARCH_OPTIONS), iterations=int(iterations), device="cpu",
                       seed=seed, init=init, checkpoint_seconds=1e9)


def cpu_seconds_per_step(raw, labels, pretext: str | None, n: int = 12, skip: int = 3) -> float:
    """Process CPU seconds per training step (batch making included), after ``skip`` steps."""
    from workbench.training import Hook, Trainer
    from workbench.training.pretext import pretext_trainer

    marks = {}

    class Clock(Hook):
        def after_step(self, trainer, step):
            if trainer.iteration in (skip, n):
                marks[trainer.iteration] = time.process_time()

    with tempfile.TemporaryDirectory() as tmp:
        if pretext:
            t = pretext_trainer(raw, tmp, ARCH, pretext=pretext, iterations=n, device="cpu",
                                arch_options=dict(ARCH_OPTIONS), bn_recalibration=False, hooks=[Clock()])
        else:
            cfg = sup_config(n, 0)
            cfg.bn_recalibration = False
            t = Trainer(cfg, raw, labels, tmp, hooks=[Clock()])
        t.run()
    return (marks[n] - marks[skip]) / (n - skip)


def timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its process CPU seconds and its wall seconds."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.process_time() - c0, 1), round(time.perf_counter() - w0, 1)


def score(run_dir: Path, raw, dense) -> dict:
    from workbench.training import load_run

    p = load_run(run_dir, device="cpu").predict(raw[sp.TEST])
    return sp.evaluate(np.ascontiguousarray(p[1]), dense[sp.TEST])


def run_data(name: str, seeds, fractions, calib: dict, total_cpu_min: float, share: float, pretext: str,
             workdir: Path, save=lambda rows: None) -> dict:
    """Every comparison of one data set; returns {key: row} (``save(rows)`` after each one)."""
    from workbench.training import Trainer
    from workbench.training.pretext import pretext_trainer

    raw, dense = load_data(name)
    total = total_cpu_min * 60
    n_scratch = max(1, round(total / calib["sup_cpu_s"]))
    n_warm = max(1, round(share * total / calib[f"pretext_{pretext}_cpu_s"]))
    n_fine = max(1, round((1 - share) * total / calib["sup_cpu_s"]))
    rows = {}
    for seed in seeds:
        warm_dir = workdir / f"{name}-warm-{pretext}-{seed}"
        warm = pretext_trainer(raw[sp.TRAIN], warm_dir, ARCH, pretext=pretext, iterations=n_warm, device="cpu",
                               seed=seed, arch_options=dict(ARCH_OPTIONS), checkpoint_seconds=1e9)
        tr, warm_cpu, warm_wall = timed(warm.run)
        warm_loss = (tr or {}).get("val_loss")
        for fraction in fractions:
            labels, achieved = scribbles(name, dense, fraction)
            res = {"data": name, "seed": seed, "fraction": fraction, "achieved": round(achieved, 5),
                   "pretext": pretext, "load_before": sp.machine_load()}
            scratch_dir = workdir / f"{name}-scratch-{fraction}-{seed}"
            _, cpu, wall = timed(Trainer(sup_config(n_scratch, seed), raw[sp.TRAIN], labels[sp.TRAIN], scratch_dir).run)
            res["scratch"] = {"iterations": n_scratch, "cpu_s": cpu, "wall_s": wall, **score(scratch_dir, raw, dense)}
            fine_dir = workdir / f"{name}-fine-{pretext}-{fraction}-{seed}"
            _, cpu, wall = timed(Trainer(sup_config(n_fine, seed, init=str(warm_dir)), raw[sp.TRAIN],
                                         labels[sp.TRAIN], fine_dir).run)
            res["warm_started"] = {"warmup_iterations": n_warm, "warmup_cpu_s": warm_cpu, "warmup_wall_s": warm_wall,
                                   "warmup_final_val_loss": warm_loss, "iterations": n_fine, "cpu_s": cpu,
                                   "wall_s": wall, **score(fine_dir, raw, dense)}
            a, b = res["scratch"]["ws_are"], res["warm_started"]["ws_are"]
            res["ws_are_change"] = round((b - a) / a, 4) if a else None
            res["load_after"] = sp.machine_load()
            res.update(total_cpu_min=total_cpu_min, share=share, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            print(json.dumps(res), flush=True)
            rows[f"{name}-{pretext}-{fraction:g}-seed{seed}"] = res
            save(rows)
    return rows


def run_control(name: str, seeds, fractions, calib: dict, total_cpu_min: float, share: float, workdir: Path,
                save=lambda rows: None) -> dict:
    """From scratch for only the fine-tune's iterations: what the warm-up adds over training less."""
    from workbench.training import Trainer

    raw, dense = load_data(name)
    n_fine = max(1, round((1 - share) * total_cpu_min * 60 / calib["sup_cpu_s"]))
    rows = {}
    for seed in seeds:
        for fraction in fractions:
            labels, achieved = scribbles(name, dense, fraction)
            d = workdir / f"{name}-control-{fraction}-{seed}"
            _, cpu, wall = timed(Trainer(sup_config(n_fine, seed), raw[sp.TRAIN], labels[sp.TRAIN], d).run)
            res = {"data": name, "seed": seed, "fraction": fraction, "achieved": round(achieved, 5),
                   "scratch_fine_tune_iterations": {"iterations": n_fine, "cpu_s": cpu, "wall_s": wall,
                                                    **score(d, raw, dense)},
                   "total_cpu_min": total_cpu_min, "share": share, "load": sp.machine_load(),
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            print(json.dumps(res), flush=True)
            rows[f"{name}-control-{fraction:g}-seed{seed}"] = res
            save(rows)
    return rows


def _merge(update: dict, out: Path) -> None:
    results = json.loads(out.read_text()) if out.exists() else {}
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(results.get(k), dict):
            results[k].update(v)
        else:
            results[k] = v
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)


def summarise(runs: dict) -> dict:
    """Per data set and fraction, over seeds: mean adapted Rand error from scratch and warm-started, and the
    change (negative: the warm-up helped); also each seed's change."""
    groups: dict[str, list[dict]] = {}
    for row in runs.values():
        if "warm_started" in row:
            groups.setdefault(f"{row['data']} {row['fraction']:g}", []).append(row)
    table = {}
    for key, rows in sorted(groups.items()):
        a = float(np.mean([r["scratch"]["ws_are"] for r in rows]))
        b = float(np.mean([r["warm_started"]["ws_are"] for r in rows]))
        table[key] = {"seeds": [r["seed"] for r in rows], "scratch_ws_are_mean": round(a, 4),
                      "warm_ws_are_mean": round(b, 4), "change_of_mean": round((b - a) / a, 4) if a else None,
                      "change_per_seed": [r["ws_are_change"] for r in rows],
                      "scratch_pixel_error_mean": round(float(np.mean([r["scratch"]["pixel_error"] for r in rows])), 4),
                      "warm_pixel_error_mean": round(float(np.mean([r["warm_started"]["pixel_error"] for r in rows])), 4)}
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calibrate", action="store_true", help="measure the CPU seconds per step (run under flock)")
    p.add_argument("--data", nargs="*", default=["isbi", "synthetic"], choices=("isbi", "synthetic"))
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--fractions", nargs="*", type=float, default=list(FRACTIONS))
    p.add_argument("--total-cpu-min", type=float, default=2.5, help="CPU minutes per comparison (default 2.5)")
    p.add_argument("--share", type=float, default=0.4, help="share of the budget spent on the warm-up")
    p.add_argument("--pretext", default="masked", choices=("masked", "blind-spot"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--control", action="store_true",
                   help="only train from scratch for the fine-tune's iterations (no warm-up): the control")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--merge", nargs="*", default=None,
                   help="merge the runs of these result files (made side by side) into --out")
    p.add_argument("--summarise", action="store_true", help="write the per-fraction table of --out's runs into it")
    args = p.parse_args(argv)
    if args.merge is not None:
        for f in args.merge:
            _merge({"runs": json.loads(Path(f).read_text()).get("runs", {})}, Path(args.out))
        return 0
    if args.summarise:
        out = Path(args.out)
        _merge({"table": summarise(json.loads(out.read_text()).get("runs", {}))}, out)
        print(json.dumps(json.loads(out.read_text())["table"], indent=1))
        return 0
    sp.reexec_with_tunables()
    import torch

    torch.set_num_threads(args.threads)
    import workbench.segmentation.watershed  # everything the scoring needs, imported up front
    import workbench.training.pretext  # noqa: F401

    out = Path(args.out)
    header = {"protocol": __doc__.strip(), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                       "torch": torch.__version__, "threads": args.threads}}
    if args.calibrate:
        raw, dense = sp.load_isbi()
        labels, _ = sp.training_labels(dense, 0.01)
        calib = {"load_before": sp.machine_load(), "threads": args.threads,
                 "sup_cpu_s": round(cpu_seconds_per_step(raw[sp.TRAIN], labels[sp.TRAIN], None), 4)}
        for kind in ("masked", "blind-spot"):
            calib[f"pretext_{kind}_cpu_s"] = round(cpu_seconds_per_step(raw[sp.TRAIN], None, kind), 4)
        calib["load_after"] = sp.machine_load()
        calib["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps(calib), flush=True)
        _merge({**header, "calibration": calib}, out)
        return 0
    results = json.loads(out.read_text()) if out.exists() else {}
    calib = results.get("calibration")
    if not calib:
        p.error("calibrate first: --calibrate")
    with tempfile.TemporaryDirectory(prefix="wb-pretrain-") as tmp:
        for name in args.data:
            if args.control:
                run_control(name, args.seeds, args.fractions, calib, args.total_cpu_min, args.share, Path(tmp),
                            save=lambda rows: _merge({**header, "runs": rows}, out))
                continue
            run_data(name, args.seeds, args.fractions, calib, args.total_cpu_min, args.share, args.pretext,
                     Path(tmp), save=lambda rows: _merge({**header, "runs": rows}, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
