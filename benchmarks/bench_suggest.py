"""Are the suggestions where the errors are? Uncertainty and "scribble here next" on ISBI 2012.

Protocol: a 2D U-Net (width 8) is trained on sections 0-19 from simulated scribbles (about 1 % of the
pixels, sparse_pipeline.py) for a fixed number of iterations (machine-load independent); then for each
uncertainty measure (entropy, disagreement of the 8 TTA views):
- the error map (argmax class != dense truth) over all 30 sections;
- ``workbench suggest``'s top-N boxes given the scribbles (sections 0-19 labelled, 20-29 not), and the
  error rate inside them against the volume's average (the enrichment), also for the top 5 and top 20;
- the same for N random boxes of the same size (the baseline, about 1), and the top 10 at box sides 16, 32, 64;
- the time for uncertainty + ranking of one 1024 x 1024 slice (the ISBI slice tiled 2 x 2), under the
  benchmark lock, fp32 and bf16 when the CPU has it.

    python benchmarks/bench_suggest.py                    # ~6 minutes
    python benchmarks/bench_suggest.py --iterations 200   # a quick look
    python benchmarks/bench_suggest.py --data sample      # the same on a volume the defaults were not tuned on

Results: benchmarks/results/suggest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sparse_pipeline as sp  # noqa: E402

RESULTS = HERE / "results" / "suggest.json"


def load_data(name: str):
    """(raw, dense labels 1 membrane / 2 interior) of ISBI 2012, or of a built-in sample volume with EM artifacts
    at a seed nothing was tuned on (its membranes against everything else, 30 x 512 x 512)."""
    if name == "isbi":
        return sp.load_isbi()
    from workbench.synthetic import make_sample

    s = make_sample((30, 512, 512), seed=7, artifacts=True)
    return s.raw, np.where(s.semantic == 1, sp.MEMBRANE, sp.INTERIOR).astype(np.uint8)


def scribbles(dense, name: str, seed: int):
    """About 1 % scribbles on sections 0-19 (ISBI: the cached benchmark scribbles)."""
    if name == "isbi":
        return sp.training_labels(dense, 0.01, seed=seed)
    from workbench.annotations import simulate_scribbles

    out = np.zeros_like(dense)
    out[sp.TRAIN], _ = simulate_scribbles(np.where(dense[sp.TRAIN] == sp.MEMBRANE, 0, 255), 0.01, seed=seed)
    return out, float((out[sp.TRAIN] > 0).mean())


def train(raw, labels, run_dir: Path, iterations: int, seed: int) -> Path:
    from workbench.training import TrainConfig, Trainer

    cfg = TrainConfig(arch="unet2d", arch_options={"base_channels": 8}, iterations=iterations, device="cpu", seed=seed)
    Trainer(cfg, raw[sp.TRAIN], labels[sp.TRAIN], run_dir).run()
    return run_dir


def random_boxes(shape, side: int, n: int, seed: int):
    from workbench.suggestions import Suggestion

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        z = int(rng.integers(shape[0]))
        y0 = int(rng.integers(shape[1] - side + 1))
        x0 = int(rng.integers(shape[2] - side + 1))
        out.append(Suggestion(z, y0 + side // 2, x0 + side // 2, (z, y0, x0, z + 1, y0 + side, x0 + side), 0.0))
    return out


def measure_kind(predictor, raw, dense, labels, kind: str, n: int) -> dict:
    from workbench.inference.uncertainty import slice_uncertainty
    from workbench.suggestions import SuggestOptions, box_scores, box_side, error_enrichment, rank_boxes

    t0 = time.perf_counter()
    maps, errors = {}, np.zeros(raw.shape, dtype=bool)
    for z in range(raw.shape[0]):
        probs, unc = slice_uncertainty(predictor, raw, z, kind)
        errors[z] = (np.argmax(probs, axis=0) + 1) != dense[z]
        maps[z] = unc
    seconds = time.perf_counter() - t0
    side = box_side(raw.shape[1:], SuggestOptions().box)
    out = {"uncertainty_s_per_slice": round(seconds / raw.shape[0], 3), "box": side,
           "error_rate": round(float(errors.mean()), 4),
           "mean_uncertainty_at_errors": round(float(np.mean([maps[z][errors[z]].mean() for z in maps
                                                             if errors[z].any()])), 4),
           "mean_uncertainty_elsewhere": round(float(np.mean([maps[z][~errors[z]].mean() for z in maps])), 4)}
    out["top10_by_box_side"] = {}
    for other in (16, 32, 64):
        picks = rank_boxes({z: box_scores(maps[z], labels[z], other) for z in maps}, other, 10)
        out["top10_by_box_side"][other] = round(error_enrichment(picks, errors)["enrichment"], 2)
    for top in (5, n, 20):
        scores = {z: box_scores(maps[z], labels[z], side) for z in maps}
        picks = rank_boxes(scores, side, top)
        e = error_enrichment(picks, errors)
        out[f"top{top}"] = {"enrichment": round(e["enrichment"], 2), "error_inside": round(e["inside"], 4),
                            "slices": sorted({p.z for p in picks}),
                            "unlabelled_test_slices": sum(p.z >= sp.TEST.start for p in picks)}
        rnd = [error_enrichment(random_boxes(raw.shape, side, top, seed), errors)["enrichment"] for seed in range(20)]
        out[f"top{top}"]["random_enrichment_mean"] = round(float(np.mean(rnd)), 2)
        out[f"top{top}"]["random_enrichment_p95"] = round(float(np.percentile(rnd, 95)), 2)
    return out


def time_big_slice(predictor, raw, kind: str) -> dict:
    from workbench.inference.uncertainty import slice_uncertainty
    from workbench.suggestions import box_scores, box_side, rank_boxes

    big = np.tile(raw[20:21], (1, 2, 2))  # one 1024 x 1024 slice
    slice_uncertainty(predictor, big, 0, kind)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        _, unc = slice_uncertainty(predictor, big, 0, kind)
        side = box_side(big.shape[1:])
        rank_boxes({0: box_scores(unc, None, side)}, side, 10)
        times.append(time.perf_counter() - t0)
    return {"seconds_1024x1024": round(min(times), 3), "seconds_all": [round(t, 3) for t in times]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--run", help="use this trained run instead of training one")
    parser.add_argument("--data", choices=("isbi", "sample"), default="isbi",
                        help="ISBI 2012 membranes (tuned on), or the built-in sample's classes (not tuned on)")
    parser.add_argument("--out", help="JSON to write (default benchmarks/results/suggest.json, suggest_sample.json)")
    args = parser.parse_args(argv)

    import torch

    from workbench.precision import bf16_supported
    from workbench.training import load_run

    raw, dense = load_data(args.data)
    labels, achieved = scribbles(dense, args.data, args.seed)
    load_before = sp.machine_load()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else train(raw, labels, Path(tmp) / "run", args.iterations, args.seed)
        predictor = load_run(run_dir, device="cpu")
        result = {
            "data": args.data,
            "protocol": "unet2d width 8 trained on sections 0-19 from 1 % scribbles; errors and suggestions over "
                        "all 30 sections (0-19 carry the scribbles, 20-29 no labels)",
            "iterations": args.iterations, "seed": args.seed, "labelled_fraction": round(achieved, 5),
            "kinds": {k: measure_kind(predictor, raw, dense, labels, k, args.n) for k in ("entropy", "disagreement")},
        }
        timing = {}
        for precision in ["fp32"] + (["bf16"] if bf16_supported("cpu") else []):
            p = load_run(run_dir, device="cpu", precision=precision)
            timing[precision] = {k: time_big_slice(p, raw, k) for k in ("entropy", "disagreement")}
        result["timing"] = timing
    result.update(machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                  load_before=load_before, load_after=sp.machine_load())
    out = Path(args.out or (RESULTS if args.data == "isbi" else RESULTS.with_name("suggest_sample.json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sp.reexec_with_tunables()
    raise SystemExit(main())
