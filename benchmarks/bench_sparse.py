"""Segmentation from sparse scribbles on ISBI 2012, through the workbench's own Trainer, load_run and predictor.

Protocol (fixed; see sparse_pipeline.py): train on sections 0-19 from simulated scribbles (about 1 % of the
pixels, 3-pixel brush along the skeletons of membranes and of eroded interiors; 1 = membrane, 2 = interior),
CPU, 5 minutes of training each, evaluate on sections 20-29: pixel error, membrane F1, adapted Rand error and
VOI of the cells (seeded watershed on the interior probability, and connected components of p > 0.5),
per slice, averaged; every run also with test-time augmentation (``tta``: the 8 yx rotations/flips
combined by their mean logits, as ``workbench predict --tta``). The Trainer's defaults are used (unet2d: 16 patches of 128^2
per step, the learning rate decaying over the 5 minutes, BatchNorm statistics recomputed on sections 0-19 when
training ends); ``without_bn_recalibration`` evaluates the same weights with the statistics training ended with.
The Trainer is given sections 0-19 only.

    python benchmarks/bench_sparse.py                      # every run below, ~100 minutes
    python benchmarks/bench_sparse.py --only unet2d-narrow-1% --seeds 6   # the scribble recipe: width 8, --tta
    python benchmarks/bench_sparse.py --only mean-teacher-1% forest-1%
    python benchmarks/bench_sparse.py --only unet2d-1% --seeds 3   # means over training seeds 0-2
    python benchmarks/bench_sparse.py --minutes 1          # a quick look (figures not comparable)
    python benchmarks/bench_sparse.py --only unet2d-narrow-1% --recipe swa   # an exploration recipe

Results are merged into benchmarks/results/sparse.json (one entry per run name; other entries are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sparse_pipeline as sp  # noqa: E402
from explore_hooks import RECIPES  # noqa: E402

RESULTS = HERE / "results" / "sparse.json"

#: name -> (architecture, semi_supervised, scribble fraction or None for dense labels[, architecture options])
RUNS = {
    "unet2d-1%": ("unet2d", "none", 0.01),
    # half the width (base 8, workbench train --option base_channels=8): ~4x fewer FLOPs, about twice the steps
    # in 5 min; with test-time augmentation (its "tta" figures; workbench predict --tta) the recipe for scribbles
    "unet2d-narrow-1%": ("unet2d", "none", 0.01, {"base_channels": 8}),
    "unet2d-narrow-dense": ("unet2d", "none", None, {"base_channels": 8}),
    "mean-teacher-1%": ("unet2d", "mean-teacher", 0.01),
    "forest-1%": ("forest", "none", 0.01),
    "unet2d-dense": ("unet2d", "none", None),
    "unet2d-0.25%": ("unet2d", "none", 0.0025),
    "unet2d-0.5%": ("unet2d", "none", 0.005),
    "unet2d-5%": ("unet2d", "none", 0.05),
    "unet2d-narrow-0.25%": ("unet2d", "none", 0.0025, {"base_channels": 8}),
    "unet2d-narrow-0.5%": ("unet2d", "none", 0.005, {"base_channels": 8}),
    "unet2d-narrow-5%": ("unet2d", "none", 0.05, {"base_channels": 8}),
}


@dataclass(frozen=True)
class Request:
    """One training run of the benchmark: a ``RUNS`` name, its minutes, the training seed and a recipe."""

    name: str
    minutes: float
    seed: int = 0
    recipe: str | None = None


def run_one(req: Request, raw, dense, workdir: Path) -> dict:
    """Train the run ``req`` asks for on the training sections and score it on the test sections."""
    from workbench.training import TrainConfig, Trainer, load_run

    name, minutes, seed, recipe = req.name, req.minutes, req.seed, req.recipe
    arch, semi, fraction, *rest = RUNS[name]
    arch_options = rest[0] if rest else {}
    labels, achieved = sp.training_labels(dense, fraction)
    kwargs = {}
    if "semi_supervised" in TrainConfig.__dataclass_fields__:
        kwargs["semi_supervised"] = semi
    elif semi != "none":
        raise SystemExit("this workbench has no TrainConfig.semi_supervised option")
    cfg = TrainConfig(arch=arch, arch_options=dict(arch_options), iterations=None, minutes=minutes, device="cpu",
                      seed=seed, **kwargs)
    run_dir = workdir / f"{name}-{recipe or 'default'}-seed{seed}"
    load_before = sp.machine_load()
    t0 = time.perf_counter()
    # the trainer sees the training sections only (their unlabelled voxels too), never the test sections
    hooks = RECIPES[recipe]() if recipe else []
    trainer = Trainer(cfg, raw[sp.TRAIN], labels[sp.TRAIN], run_dir, hooks=hooks)
    trainer.run()
    train_s = time.perf_counter() - t0
    predictor = load_run(run_dir, device="cpu")
    return {
        "recipe": recipe,
        "architecture": arch,
        "architecture_options": arch_options,
        "semi_supervised": semi,
        "labels": "dense" if fraction is None else f"scribbles {fraction:.2%}",
        "labelled_fraction_of_train_pixels": round(achieved, 5),
        "iterations": int(trainer.iteration),
        "train_s": round(train_s, 1),
        "load_before": load_before,
        **score(predictor, trainer, raw, dense, labels),
        "load_after": sp.machine_load(),
    }


def score(predictor, trainer, raw, dense, labels) -> dict:
    """The protocol's scores of a trained run: plain, with test-time augmentation, with the label-free prior
    correction, and with the BatchNorm statistics training ended with."""
    import numpy as np

    t1 = time.perf_counter()
    probs = predictor.predict(raw[sp.TEST])  # (2, 10, 512, 512): membrane, interior
    predict_s = time.perf_counter() - t1
    p_interior = np.ascontiguousarray(probs[1])
    scores = sp.evaluate(p_interior, dense[sp.TEST])
    # test-time augmentation (workbench predict --tta: the 8 yx rotations/flips, mean logits)
    from workbench.inference import predict_array

    t2 = time.perf_counter()
    probs_tta = predict_array(predictor, raw[sp.TEST], tta=True)
    tta = dict(sp.evaluate(np.ascontiguousarray(probs_tta[1]), dense[sp.TEST]),
               predict_s=round(time.perf_counter() - t2, 1))
    # prior correction (label-free): the class proportions of the unlabelled training voxels, estimated by EM
    # from the model's own posteriors, replace the scribbles' proportions (Saerens et al. 2002)
    from workbench.training.semisupervised import adjust_to_prior, estimate_prior

    lab = labels[sp.TRAIN]
    train_prior = np.bincount(lab[lab > 0].ravel(), minlength=3)[1:3].astype(float)
    train_probs = predictor.predict(raw[sp.TRAIN])
    unl = lab == 0
    prior = estimate_prior(train_probs[:, unl] if unl.any() else train_probs.reshape(2, -1), train_prior)
    adjusted = adjust_to_prior(probs, train_prior, prior)
    corrected = sp.evaluate(np.ascontiguousarray(adjusted[1]), dense[sp.TEST])
    # the same weights with the BatchNorm statistics training ended with (before their recalibration)
    without_recal = None
    if getattr(trainer, "bn_recalibration", None):
        from workbench.training.checkpoint import load_checkpoint

        ck = load_checkpoint(trainer.run_dir / "checkpoint.pt")
        if ck.get("bn_training"):
            predictor.model.load_state_dict(ck["bn_training"], strict=False)
            without_recal = sp.evaluate(np.ascontiguousarray(predictor.predict(raw[sp.TEST])[1]), dense[sp.TEST])
    return {
        "predict_s": round(predict_s, 1),
        **scores,
        "tta": tta,
        "bn_recalibration": getattr(trainer, "bn_recalibration", None),
        "without_bn_recalibration": without_recal,
        "prior_corrected": {"train_prior_membrane": round(float(train_prior[0] / train_prior.sum()), 4),
                            "estimated_prior_membrane": round(float(prior[0]), 4), **corrected},
    }


def mean_over_seeds(rows: list[dict]) -> dict:
    """One entry for runs with several training seeds: numbers (also nested) averaged, the rest from the first,
    with ``seeds`` and the per-seed values and standard deviations of the watershed ARE, plain and with
    test-time augmentation (``ws_are_per_seed``, ``ws_are_sd``, ``tta_ws_are_per_seed``, ``tta_ws_are_sd``)."""
    import numpy as np

    def average(items):
        first = items[0]
        if isinstance(first, dict):
            return {k: average([it[k] for it in items]) for k in first if all(isinstance(it, dict) and k in it
                                                                               for it in items)}
        if isinstance(first, (int, float)) and not isinstance(first, bool) and all(
                isinstance(it, (int, float)) for it in items):
            return round(float(np.mean(items)), 4)
        return first

    out = average(rows)
    out.pop("seed", None)
    out["seeds"] = [r["seed"] for r in rows]
    for prefix, values in (("", [r["ws_are"] for r in rows]),
                           ("tta_", [r["tta"]["ws_are"] for r in rows if r.get("tta")])):
        if len(values) == len(rows):
            out[f"{prefix}ws_are_per_seed"] = values
            out[f"{prefix}ws_are_sd"] = round(float(np.std(values, ddof=1)), 4) if len(rows) > 1 else 0.0
    return out


def _write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2))
    tmp_out.replace(out)


def merge(files, out: Path) -> int:
    results = json.loads(out.read_text()) if out.exists() else {}
    for f in files:
        other = json.loads(Path(f).read_text())
        for key, value in other.items():
            if key == "runs":
                results.setdefault("runs", {}).update(value)
            else:
                results.setdefault(key, value)
    _write(results, out)
    print(f"merged {len(files)} file(s) into {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", default=None, help=f"run names: {', '.join(RUNS)}")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--seeds", type=int, default=1,
                   help="train each run with seeds 0..N-1 (same scribbles) and record the means and the spread")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="train with an exploration recipe (explore_hooks.py); results are named RUN+RECIPE")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--merge", nargs="*", default=None,
                   help="merge the runs of these result files (e.g. from runs made side by side) into --out")
    args = p.parse_args(argv)
    if args.merge is not None:
        return merge(args.merge, Path(args.out))
    sp.reexec_with_tunables()
    import torch

    torch.set_num_threads(2)
    names = args.only or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown run(s) {unknown}; valid: {', '.join(RUNS)}")
    raw, dense = sp.load_isbi()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", {})
    results["protocol"] = sp.__doc__.strip()
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="wb-sparse-") as tmp:
        for name in names:
            rows = []
            seeds = 1 if RUNS[name][0] == "forest" else args.seeds  # the forest's fit is seeded but quick to vary
            for seed in range(seeds):
                print(f"== {name} ({args.minutes:g} min, seed {seed})", flush=True)
                r = run_one(Request(name, args.minutes, seed, args.recipe), raw, dense, Path(tmp))
                r.update(seed=seed, minutes=args.minutes, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                print(json.dumps(r), flush=True)
                rows.append(r)
            key = f"{name}+{args.recipe}" if args.recipe else name
            results["runs"][key] = mean_over_seeds(rows) if len(rows) > 1 else rows[0]
            _write(results, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
