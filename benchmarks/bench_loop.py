"""The annotation loop, simulated: rounds of strokes placed by three strategies, a warm retrain after each.

Protocol (ISBI 2012, sparse_pipeline.py): start from scribbles over 0.25 % of sections 0-19 and a 2D U-Net
(width 8) trained for ``--first`` iterations. Then each round the simulated annotator labels ``k`` boxes
(64 x 64 pixels, at most ``--box-fraction`` of each box, the same budget for every strategy) chosen by
- ``suggest``: ``workbench.suggestions.suggest`` with the current model and labels;
- ``random``: boxes centred at random pixels of sections 0-19;
- ``oracle``: the boxes with the most errors of the current model (it knows the truth);
and the model is trained ``--more`` further iterations starting from the previous round's weights
(``TrainConfig.init``, the default cosine schedule: each retrain anneals, as the app's Train does, so every
round is scored at the end of a decay rather than midway at a constant rate). The annotator
(``--annotator``): ``corrections`` (default) works as in the app's correction mode: it looks at the current
prediction inside the box, paints the wrongly predicted regions with the right class (largest first) and
spends what is left of the box's budget on scribbles of the truth; ``scribbles`` only draws scribbles of the
truth (the simulated strokes of ``workbench.annotations``). After every round: the labelled voxels and the
pixel error and watershed adapted Rand error on the held-out sections 20-29. The figure the loop is for: the labelled voxels with which ``suggest``
reaches the ``random`` strategy's final error.

    python benchmarks/bench_loop.py                         # 3 strategies x 4 rounds, ~25 CPU-minutes
    python benchmarks/bench_loop.py --rounds 2 --more 60    # a quick look

Results: benchmarks/results/loop.json and loop.png (error against labelled voxels per strategy).
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

RESULTS = HERE / "results" / "loop.json"
BOX = 64
STRATEGIES = ("suggest", "random", "oracle")


def train(raw, labels, run_dir: Path, iterations: int, seed: int, init: Path | None) -> Path:
    from workbench.training import TrainConfig, Trainer

    cfg = TrainConfig(arch="unet2d", arch_options={"base_channels": 8}, iterations=iterations, device="cpu",
                      seed=seed, init=str(init) if init else None)  # cosine: every retrain anneals, as in the app
    Trainer(cfg, raw[sp.TRAIN], labels[sp.TRAIN], run_dir).run()
    return run_dir


def scribble_boxes(labels, dense, boxes, fraction: float, seed: int) -> int:
    """Draw simulated scribbles of the truth inside each box where nothing is labelled; returns voxels added."""
    from workbench.annotations import simulate_scribbles

    added = 0
    for i, (z, y0, x0) in enumerate(boxes):
        crop = dense[z, y0:y0 + BOX, x0:x0 + BOX]
        new, _ = simulate_scribbles(np.where(crop == sp.MEMBRANE, 0, 255), fraction, seed=seed * 1000 + i)
        target = labels[z, y0:y0 + BOX, x0:x0 + BOX]
        put = (new > 0) & (target == 0)
        target[put] = new[put]
        added += int(put.sum())
    return added


def correct_boxes(labels, dense, wrong, boxes, fraction: float, seed: int) -> int:
    """Paint the wrong regions inside each box with the truth (largest first, up to ``fraction`` of the box),
    then scribbles of the truth with what is left of the budget; returns voxels added."""
    from scipy import ndimage as ndi

    from workbench.annotations import simulate_scribbles

    budget = int(fraction * BOX * BOX)
    added = 0
    for i, (z, y0, x0) in enumerate(boxes):
        target = labels[z, y0:y0 + BOX, x0:x0 + BOX]
        truth = dense[z, y0:y0 + BOX, x0:x0 + BOX]
        regions, n = ndi.label(wrong[z, y0:y0 + BOX, x0:x0 + BOX] & (target == 0))
        left = budget
        for r in np.argsort(-np.bincount(regions.ravel(), minlength=n + 1)[1:]) + 1:
            if left <= 0:
                break
            yy, xx = np.nonzero(regions == r)
            yy, xx = yy[:left], xx[:left]  # a region larger than what is left of the budget: in part
            target[yy, xx] = truth[yy, xx]
            left -= yy.size
        if left > 0:
            new, _ = simulate_scribbles(np.where(truth == sp.MEMBRANE, 0, 255), left / (BOX * BOX),
                                        seed=seed * 1000 + i)
            yy, xx = np.nonzero((new > 0) & (target == 0))
            yy, xx = yy[:left], xx[:left]
            target[yy, xx] = new[yy, xx]
            left -= yy.size
        added += budget - left
    return added


def wrong_pixels(predictor, raw, dense):
    """Where the model's argmax on the training sections differs from the truth (bool, sections 0-19)."""
    from workbench.inference import predict_array

    probs = predict_array(predictor, raw[sp.TRAIN])
    return (np.argmax(probs, axis=0) + 1) != dense[sp.TRAIN]


def place(strategy: str, predictor, raw, dense, labels, k: int, rng, wrong=None) -> list[tuple[int, int, int]]:
    """Top-left corners (z, y0, x0) of ``k`` boxes on the training sections."""
    train_raw, train_labels = raw[sp.TRAIN], labels[sp.TRAIN]
    nz, ny, nx = train_raw.shape
    if strategy == "random":
        return [(int(rng.integers(nz)), int(rng.integers(ny - BOX)), int(rng.integers(nx - BOX))) for _ in range(k)]
    if strategy == "suggest":
        from workbench.suggestions import SuggestOptions, suggest

        found = suggest(predictor, train_raw, train_labels, SuggestOptions(n=k, box=BOX, slices=nz))
        return [(s.box[0], s.box[1], s.box[2]) for s in found]
    # oracle: the boxes with the most wrong unlabelled pixels (non-overlapping, greedy)
    from workbench.suggestions import box_scores, rank_boxes

    wrong = wrong_pixels(predictor, raw, dense) if wrong is None else wrong
    todo = (wrong & (train_labels == 0)).astype(np.float32)
    scores = {z: box_scores(todo[z], None, BOX) for z in range(nz)}
    return [(s.box[0], s.box[1], s.box[2]) for s in rank_boxes(scores, BOX, k, same_slice_factor=1.0)]


def run_strategy(strategy: str, raw, dense, args, workdir: Path) -> list[dict]:
    from workbench.training import load_run

    labels, _ = sp.training_labels(dense, args.start_fraction, seed=args.seed)
    labels = labels.copy()
    rng = np.random.default_rng(args.seed)
    run = train(raw, labels, workdir / f"{strategy}-0", args.first, args.seed, None)
    rows = []
    for rnd in range(args.rounds + 1):
        predictor = load_run(run, device="cpu")
        probs = predictor.predict(raw[sp.TEST])
        scores = sp.evaluate(np.ascontiguousarray(probs[1]), dense[sp.TEST])
        rows.append({"round": rnd, "labelled_voxels": int((labels[sp.TRAIN] > 0).sum()),
                     "pixel_error": scores["pixel_error"], "ws_are": scores["ws_are"]})
        print(strategy, rows[-1], flush=True)
        if rnd == args.rounds:
            break
        wrong = wrong_pixels(predictor, raw, dense) if args.annotator == "corrections" else None
        boxes = place(strategy, predictor, raw, dense, labels, args.k, rng, wrong)
        if wrong is None:
            scribble_boxes(labels, dense, boxes, args.box_fraction, seed=args.seed + 17 * (rnd + 1))
        else:
            correct_boxes(labels, dense, wrong, boxes, args.box_fraction, seed=args.seed + 17 * (rnd + 1))
        run = train(raw, labels, workdir / f"{strategy}-{rnd + 1}", args.more, args.seed, run)
    return rows


def voxels_to_reach(rows: list[dict], target: float, key: str = "pixel_error") -> int | None:
    """The labelled voxels of the first round whose error is at most ``target`` (None: never)."""
    for r in rows:
        if r[key] <= target:
            return r["labelled_voxels"]
    return None


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, rows in results["strategies"].items():
        v = [r["labelled_voxels"] for r in rows]
        axes[0].plot(v, [r["pixel_error"] for r in rows], "o-", label=name)
        axes[1].plot(v, [r["ws_are"] for r in rows], "o-", label=name)
    for ax, title in zip(axes, ("pixel error (sections 20-29)", "watershed adapted Rand error")):
        ax.set_xlabel("labelled voxels (sections 0-19)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--k", type=int, default=8, help="boxes per round")
    parser.add_argument("--first", type=int, default=300, help="iterations of the first model")
    parser.add_argument("--more", type=int, default=120, help="iterations of each warm retrain")
    parser.add_argument("--start-fraction", type=float, default=0.0025)
    parser.add_argument("--box-fraction", type=float, default=0.08, help="labelled share of a box")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotator", choices=("corrections", "scribbles"), default="corrections")
    parser.add_argument("--only", nargs="*", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    raw, dense = sp.load_isbi()
    t0 = time.perf_counter()
    load_before = sp.machine_load()
    with tempfile.TemporaryDirectory() as tmp:
        strategies = {s: run_strategy(s, raw, dense, args, Path(tmp)) for s in args.only}
    result = {"protocol": __doc__.split("\n\n")[1], "settings": vars(args), "strategies": strategies}
    if "random" in strategies and "suggest" in strategies:
        final = strategies["random"][-1]["pixel_error"]
        need = voxels_to_reach(strategies["suggest"], final)
        result["suggest_voxels_to_reach_random_final"] = need
        result["random_final_voxels"] = strategies["random"][-1]["labelled_voxels"]
        result["ratio"] = None if need is None else round(need / result["random_final_voxels"], 3)
        # the strokes the rounds added (the start's scribbles are the same for every strategy)
        start = strategies["random"][0]["labelled_voxels"]
        added = result["random_final_voxels"] - start
        result["added_ratio"] = None if need is None or not added else round((need - start) / added, 3)
    result.update(seconds=round(time.perf_counter() - t0, 1), machine=platform.processor() or platform.machine(),
                  load_before=load_before, load_after=sp.machine_load())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "strategies"}, indent=1))
    return 0


if __name__ == "__main__":
    sp.reexec_with_tunables()
    raise SystemExit(main())
