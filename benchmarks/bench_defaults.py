"""Right by default: ``workbench train`` with no options (the recipe chosen from the labels), on a task the
defaults were tuned on and on one they were not.

Tasks (each run trains with the CLI as a user would: ``workbench train --raw R --labels L --arch unet2d
--minutes M --out RUN``, nothing else; then the run's predictor with what the run recommends):
- ``isbi``: ISBI 2012 membranes (the tuning set of the defaults), simulated scribbles over 1 % of sections
  0-19; the protocol of ``sparse_pipeline.py`` on sections 20-29 (seeded watershed, adapted Rand error).
  Target: ARE <= 0.05 (dense labels: about 0.026).
- ``mito``: mitochondria of the synthetic sample (seed 11, with artifacts; not tuned on), 32 x 512 x 512,
  class 2 = mitochondrion, class 1 = everything else; simulated scribbles over 1 % of sections 0-19 (half on
  mitochondria, as annotators over-draw a rare class) or dense labels on 0-19; mitochondrion IoU of the argmax
  on sections 20-31. Target: sparse >= 90 % of the dense model's IoU in the same minutes.

For every trained model the benchmark also scores what the defaults did not choose (calibration off / the
other test-time-augmentation setting), from the same weights, so each choice is measured.

    python benchmarks/bench_defaults.py                      # isbi seeds 0-2, mito sparse 0-1 and dense 0
    python benchmarks/bench_defaults.py --tasks mito --minutes 2 --seeds 0

Results: benchmarks/results/defaults.json (rows appended per run, so a partial run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sparse_pipeline as sp  # noqa: E402

RESULTS = HERE / "results" / "defaults.json"
MITO_SHAPE, MITO_SEED, MITO_TRAIN, MITO_TEST = (32, 512, 512), 11, slice(0, 20), slice(20, 32)


def mito_data():
    """raw uint8 and dense labels (1 other, 2 mitochondrion) of the synthetic sample with artifacts."""
    from workbench.synthetic import make_sample

    s = make_sample(MITO_SHAPE, seed=MITO_SEED, artifacts=True)
    return s.raw, np.where(s.semantic == 2, 2, 1).astype(np.uint8)


def mito_labels(dense: np.ndarray, fraction: float | None, seed: int) -> np.ndarray:
    """Dense labels on the training sections, or scribbles over ``fraction`` of them (half on mitochondria)."""
    from workbench.annotations import simulate_scribbles

    out = np.zeros_like(dense)
    if fraction is None:
        out[MITO_TRAIN] = dense[MITO_TRAIN]
        return out
    sc, _ = simulate_scribbles(np.where(dense[MITO_TRAIN] == 2, 0, 255), fraction, seed=seed)
    out[MITO_TRAIN] = np.where(sc == 1, 2, np.where(sc == 2, 1, 0))  # the simulator's "membrane" is the mito
    return out


def iou(pred: np.ndarray, truth: np.ndarray, cls: int = 2) -> float:
    a, b = pred == cls, truth == cls
    return float((a & b).sum() / max(1, (a | b).sum()))


def train_cli(raw, labels, run: Path, minutes: float, seed: int, extra: tuple[str, ...] = ()) -> tuple[str, float]:
    """``workbench train`` with no options but the data, the architecture and the time (and ``extra`` arguments,
    for exploring a change of the defaults); (stderr+stdout, seconds)."""
    import tifffile

    run.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(run.parent / "raw.tif", raw, metadata={"axes": "ZYX"})
    tifffile.imwrite(run.parent / "labels.tif", labels, metadata={"axes": "ZYX"})
    cmd = [sys.executable, "-m", "workbench", "train", "--raw", str(run.parent / "raw.tif"), "--labels",
           str(run.parent / "labels.tif"), "--arch", "unet2d", "--minutes", str(minutes), "--out", str(run),
           "--seed", str(seed), "--no-progress", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return (done.stderr + done.stdout).strip(), time.perf_counter() - t0


def variants(run: Path, raw: np.ndarray):
    """Probabilities of the run's model as its defaults give them, and with each default flipped."""
    from workbench.inference import predict_array
    from workbench.training import load_run

    p = load_run(run, device="cpu")
    tta = bool(p.recommended_tta)
    out = {"defaults": predict_array(p, raw, tta=tta), f"tta_{'off' if tta else 'on'}": predict_array(p, raw, tta=not tta)}
    if p._bias is not None:
        bias, p._bias = p._bias, None
        out["calibration_off"] = predict_array(p, raw, tta=tta)
        p._bias = bias
    info = {"recommended_tta": p.recommended_tta, "calibration": None if p.calibration is None else p.calibration.to_dict(),
            "iteration": p.iteration, "arch_options": p.config.arch_options}
    return out, info


def run_isbi(seed: int, minutes: float, tmp: Path, extra: tuple[str, ...] = ()) -> dict:
    raw, dense = sp.load_isbi()
    labels, achieved = sp.training_labels(dense, 0.01, seed=seed)
    log, seconds = train_cli(raw, labels, tmp / f"isbi{seed}" / "run", minutes, seed, extra)
    probs, info = variants(tmp / f"isbi{seed}" / "run", raw[sp.TEST])
    scores = {k: sp.evaluate(np.ascontiguousarray(v[1]), dense[sp.TEST]) for k, v in probs.items()}
    return {"task": "isbi", "labels": f"scribbles {achieved:.2%}", "seed": seed, "minutes": minutes,
            "train_s": round(seconds, 1), "cli": log.splitlines(), **info,
            "ws_are": {k: s["ws_are"] for k, s in scores.items()}, "scores": scores}


def run_mito(seed: int, minutes: float, tmp: Path, fraction: float | None, extra: tuple[str, ...] = ()) -> dict:
    raw, dense = mito_data()
    labels = mito_labels(dense, fraction, seed)
    name = f"mito{'dense' if fraction is None else fraction}{seed}"
    log, seconds = train_cli(raw, labels, tmp / name / "run", minutes, seed, extra)
    probs, info = variants(tmp / name / "run", raw[MITO_TEST])
    truth = dense[MITO_TEST]
    res = {}
    for k, v in probs.items():
        pred = v.argmax(0) + 1
        res[k] = {"iou": round(iou(pred, truth), 4), "predicted_mito": round(float((pred == 2).mean()), 4)}
    return {"task": "mito", "labels": "dense" if fraction is None else f"scribbles {(labels[MITO_TRAIN] > 0).mean():.2%}",
            "seed": seed, "minutes": minutes, "train_s": round(seconds, 1), "cli": log.splitlines(), **info,
            "true_mito": round(float((truth == 2).mean()), 4), "iou": {k: r["iou"] for k, r in res.items()},
            "scores": res}


def summarise(rows: list[dict]) -> dict:
    """Means per task and label kind of the defaults' figure."""
    out: dict = {}
    for r in rows:
        key = f"{r['task']} {r['labels'].split()[0]}"
        val = r["ws_are"]["defaults"] if r["task"] == "isbi" else r["iou"]["defaults"]
        out.setdefault(key, []).append(val)
    summary = {k: {"mean": round(float(np.mean(v)), 4), "values": v} for k, v in out.items()}
    if "mito scribbles" in summary and "mito dense" in summary:
        summary["mito sparse / dense"] = round(summary["mito scribbles"]["mean"] / summary["mito dense"]["mean"], 3)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=["isbi", "mito"], choices=("isbi", "mito"))
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="default: isbi 0 1 2, mito 0 1")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense-label mito reference")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--train-args", default="", help="extra `workbench train` arguments (exploring a change; "
                        "recorded in each row), e.g. '--crf-weight 0.5'")
    args = parser.parse_args(argv)
    extra = tuple(shlex.split(args.train_args))
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("rows", [])
    report["protocol"] = __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for task in args.tasks:
            seeds = args.seeds if args.seeds is not None else ([0, 1, 2] if task == "isbi" else [0, 1])
            for seed in seeds:
                jobs.append((task, seed, 0.01))
            if task == "mito" and not args.no_dense:
                jobs.append((task, seeds[0], None))
        for task, seed, fraction in jobs:
            load = os.getloadavg()[0]
            row = run_isbi(seed, args.minutes, Path(tmp), extra) if task == "isbi" else \
                run_mito(seed, args.minutes, Path(tmp), fraction, extra)
            if extra:
                row["train_args"] = list(extra)
            row.update(load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2),
                       measured=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            report["rows"].append(row)
            report["summary"] = summarise(report["rows"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1) + "\n")
            print(json.dumps({k: row[k] for k in ("task", "labels", "seed", "iteration") if k in row}
                             | {"figure": row.get("ws_are", row.get("iou"))}), flush=True)
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sp.reexec_with_tunables()
    raise SystemExit(main())
