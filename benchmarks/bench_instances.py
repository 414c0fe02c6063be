"""Instance segmentation methods side by side on ISBI 2012: an affinity model, every ``workbench segment`` method.

Protocol: a 2D U-Net (``unet2d``, the project's own training code, ``target="affinities"`` with the default
2D offsets) is trained on sections 0-19 with dense labels and with 1 % simulated scribbles, each for a
budget of process CPU time (``time.process_time()``, all threads of the training process: ~5 CPU-minutes by
default); the run is saved once and predicted on the held-out sections 20-29; then every segmentation method
(cc, watershed, affinity, mutex-watershed, multicut, gasp) segments that one prediction with its defaults
(plus the mutex watershed, multicut and GASP with ``min_size=50``, which merges their small pieces into
neighbours) and is scored against the true neurites (per-section connected components of the ISBI interior, membrane
= 0 not scored): adapted Rand error, VOI (split, merge), CREMI score, and object counts per section.

Training labels for affinities: every true neurite of a section is one id and every membrane voxel an id of
its own, so every pair touching the membrane is trained as cut (with the membrane unlabelled, the edges
across a membrane would never be trained; with one membrane id, membrane-to-membrane pairs would be
"same object"). Scribbles: the simulated strokes (``workbench.annotations``) with the same ids, only pairs of
labelled voxels trained.

Scribble runs are repeated over ``--seeds`` (the seed draws the strokes and the network's initial weights):
seed 0 is the run ``scribbles``, seed n > 0 the run ``scribbles-seed<n>``. ``summary`` compares, per run, the
best of the new methods (mutex watershed, multicut, GASP) with the best of the earlier ones (cc, watershed,
own agglomeration) on VOI, and says whether the new one wins in every scribble run.

Phases (``--phase``): ``train`` (every run, saved in ``--work``), ``segment`` (predict and segment
everything, write the JSON), or ``all``. Training and prediction are timed, so run them under the shared
lock: ``flock /tmp/wb-bench.lock python benchmarks/bench_instances.py``.

    python benchmarks/bench_instances.py --phase all --cpu-minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import sparse_pipeline as sp  # noqa: E402

RESULTS = HERE / "results" / "instances.json"
FRACTION = 0.01
#: the methods compared, each with the options a user would pass (their defaults otherwise)
METHODS = {
    "cc": {"method": "cc", "channel": 0, "threshold": 0.5, "per_section": True},
    "watershed": {"method": "watershed", "channel": 0, "threshold": 0.5, "per_section": True},
    "affinity": {"method": "affinity"},
    "mutex-watershed": {"method": "mutex-watershed"},
    "multicut": {"method": "multicut"},
    "gasp": {"method": "gasp"},
    # not a default: the mutex watershed's small pieces (membrane voxels) merged into their neighbours
    "mutex-watershed min-size 50": {"method": "mutex-watershed", "min_size": 50},
    # not defaults: the same size filter after multicut and GASP (their small pieces merged into neighbours)
    "multicut min-size 50": {"method": "multicut", "min_size": 50},
    "gasp min-size 50": {"method": "gasp", "min_size": 50},
}
#: the methods the workbench had before the field's agglomerations, and the new ones
EARLIER = ("cc", "watershed", "affinity")
NEW = ("mutex-watershed", "multicut", "gasp")


def cells(gt: np.ndarray) -> np.ndarray:
    """True neurites: per-section connected components of the ISBI interior (255), unique ids, membrane 0."""
    from scipy import ndimage as ndi

    in_section = np.zeros((3, 3, 3), bool)
    in_section[1] = ndi.generate_binary_structure(2, 1)
    return ndi.label(gt == 255, structure=in_section)[0].astype(np.uint32)


def affinity_labels(gt: np.ndarray, fraction: float | None, seed: int = 0) -> tuple[np.ndarray, float]:
    """Training labels for the affinity target (see the module docstring): (labels, labelled fraction)."""
    truth = cells(gt).astype(np.int64)
    if fraction is None:
        labelled = np.ones(gt.shape, bool)
    else:
        from workbench.annotations import simulate_scribbles

        strokes, _ = simulate_scribbles(np.where(gt > 0, 255, 0).astype(np.uint8), fraction, seed=seed)
        labelled = strokes > 0
    # labelled neurite voxels take their neurite's id; every labelled membrane voxel is an id of its own, so
    # a pair touching the membrane is trained as cut (with one membrane id, a membrane-to-membrane pair
    # would be "same object" and the membrane network one object joining everything it touches)
    on_membrane = labelled & (truth == 0)
    unique = int(truth.max()) + 1 + np.cumsum(on_membrane.ravel()).reshape(on_membrane.shape)
    labels = np.where(on_membrane, unique, np.where(labelled, truth, 0))
    return labels.astype(np.uint32), float(labelled.mean())


def train(work: Path, name: str, fraction: float | None, cpu_seconds: float, seed: int = 0) -> dict:
    """Train one affinity run on sections 0-19 until ``cpu_seconds`` of process CPU time are used."""
    import tifffile

    from workbench.training import TrainConfig, Trainer

    d = sp.data_dir() / "isbi2012"
    raw = tifffile.imread(d / "train-volume.tif")[sp.TRAIN]
    gt = tifffile.imread(d / "train-labels.tif")[sp.TRAIN]
    labels, achieved = affinity_labels(gt, fraction, seed)
    cfg = TrainConfig(arch="unet2d", target="affinities", iterations=None, minutes=10 * cpu_seconds / 60,
                      device="cpu", seed=seed)
    run_dir = work / name
    load_before = os.getloadavg()
    c0, t0 = time.process_time(), time.perf_counter()
    trainer = Trainer(cfg, raw, labels, run_dir, should_stop=lambda: time.process_time() - c0 >= cpu_seconds)
    trainer.run()
    info = {
        "run": str(run_dir), "labels": "dense" if fraction is None else f"scribbles {fraction:.0%}",
        "labelled_fraction_of_train_pixels": round(achieved, 5), "seed": seed, "iterations": int(trainer.iteration),
        "budget": f"process CPU time {cpu_seconds:.0f} s (time.process_time, all threads of the training process)",
        "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.perf_counter() - t0, 1),
        "load_before": load_before, "load_after": os.getloadavg(),
    }
    (run_dir / "bench_train.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


def per_section_counts(seg: np.ndarray) -> list[int]:
    """Objects (ids != 0) in each z section."""
    return [int(len(np.unique(s[s > 0]))) for s in seg]


def segment_all(work: Path, name: str, truth: np.ndarray) -> dict:
    """Predict sections 20-29 with the saved run ``name``, segment with every method, score each."""
    import tifffile
    import zarr

    from workbench.inference import PredictOptions, predict_volume
    from workbench.metrics import evaluate
    from workbench.segmentation import SegmentOptions, segment_prediction
    from workbench.training import load_run

    run_dir = work / name
    raw = tifffile.imread(sp.data_dir() / "isbi2012" / "train-volume.tif")[sp.TEST]
    pred = work / f"{name}-pred.zarr"
    t0 = time.perf_counter()
    if not pred.exists():
        predict_volume(load_run(run_dir, device="cpu"), raw, pred, PredictOptions())
    out = {"train": json.loads((run_dir / "bench_train.json").read_text()),
           "predict_s": round(time.perf_counter() - t0, 1), "methods": {}}
    for method, opts in METHODS.items():
        seg_path = work / f"{name}-{method}.zarr"
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            segment_prediction(pred, seg_path, SegmentOptions(**opts, overwrite=True))
        except Exception as err:  # a method that cannot run on this prediction is reported, not hidden
            out["methods"][method] = {"options": opts, "error": f"{type(err).__name__}: {err}"}
            continue
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        seg = zarr.open_array(str(seg_path / "0"), mode="r")[...]
        scores = evaluate(seg, truth, kind="instances", ignore_label=0)
        out["methods"][method] = {
            "options": opts, "segment_wall_s": round(wall, 2), "segment_cpu_s": round(cpu, 2),
            **{k: scores[k] for k in ("are", "are_split", "are_merge", "voi", "voi_split", "voi_merge", "are_cremi",
                                      "rand_precision", "rand_recall", "cremi")},
            "objects_per_section": per_section_counts(seg),
        }
        print(name, method, {k: round(v, 4) for k, v in out["methods"][method].items()
                             if isinstance(v, float)}, flush=True)
    return out


def run_names(kinds: list[str], seeds: list[int]) -> dict[str, tuple[float | None, int]]:
    """Run name -> (labelled fraction or None for dense, seed), for the label kinds and scribble seeds."""
    names: dict[str, tuple[float | None, int]] = {}
    for kind in kinds:
        if kind == "dense":
            names["dense"] = (None, 0)
            continue
        for seed in seeds:
            names["scribbles" if seed == 0 else f"scribbles-seed{seed}"] = (FRACTION, seed)
    return names


def summary(runs: dict) -> dict:
    """Per run, the best new and the best earlier method on VOI; and whether the new one wins every scribble run."""
    rows = {}
    for name, run in runs.items():
        scored = {m: r["voi"] for m, r in run["methods"].items() if "voi" in r}
        new = min((m for m in scored if m in NEW), key=scored.get, default=None)
        old = min((m for m in scored if m in EARLIER), key=scored.get, default=None)
        if new is None or old is None:
            continue
        rows[name] = {"best_new": new, "best_new_voi": round(scored[new], 4), "best_earlier": old,
                      "best_earlier_voi": round(scored[old], 4),
                      "voi_change": round((scored[new] - scored[old]) / scored[old], 4)}
    scribble = [r["voi_change"] for n, r in rows.items() if n.startswith("scribbles")]
    return {"runs": rows, "scribble_runs": len(scribble),
            "new_wins_every_scribble_run": bool(scribble) and all(c < 0 for c in scribble),
            "scribble_voi_change_mean": round(float(np.mean(scribble)), 4) if scribble else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("train", "segment", "all"), default="all")
    ap.add_argument("--cpu-minutes", type=float, default=5.0, help="training budget per run (process CPU minutes)")
    ap.add_argument("--work", default="/tmp/wb-bench-instances", help="folder for the runs and predictions")
    ap.add_argument("--held-lock", action="store_true",
                    help="say in the JSON that this run held the shared benchmark lock (flock /tmp/wb-bench.lock)")
    ap.add_argument("--runs", nargs="+", default=["dense", "scribbles"], choices=("dense", "scribbles"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of the scribble runs (strokes and weights)")
    ap.add_argument("--skip-trained", action="store_true", help="train only the runs not yet in --work")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names = run_names(args.runs, args.seeds)
    if args.phase in ("train", "all"):
        for name, (fraction, seed) in names.items():
            if args.skip_trained and (work / name / "bench_train.json").exists():
                continue
            train(work, name, fraction, args.cpu_minutes * 60, seed=seed)
    if args.phase in ("segment", "all"):
        import tifffile

        truth = cells(tifffile.imread(sp.data_dir() / "isbi2012" / "train-labels.tif")[sp.TEST])
        result = {
            "what": __doc__.splitlines()[0],
            "protocol": "train sections 0-19, evaluate 20-29; truth: per-section connected components of the "
                        "interior, membrane (0) not scored; one saved run per label kind, every method on its "
                        "one prediction",
            "truth_objects_per_section": per_section_counts(truth),
            "notes": "cc and watershed read channel 0 (the affinity to the voxel above in y) as their class / boundary "
                     "map, as a user passing an affinity prediction to them would; an affinity model has no "
                     "boundary channel, so for watershed the cut edges become seeds. affinity, mutex-watershed, "
                     "multicut and gasp read every channel with the offsets recorded in the prediction.",
            "runs": {name: segment_all(work, name, truth) for name in names},
            "timings": "segment_wall_s / segment_cpu_s and predict_s are for orientation only: this run is about "
                       "quality (held_bench_lock: whether it held /tmp/wb-bench.lock)",
            "held_bench_lock": args.held_lock,
            "load_average": os.getloadavg(),
            "cpu_count": os.cpu_count(),
        }
        result["summary"] = summary(result["runs"])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
