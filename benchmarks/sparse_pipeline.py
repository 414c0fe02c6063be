"""Shared pieces of the sparse-label benchmark (ISBI 2012): data, scribbles, the instance pipeline and metrics.

Protocol: train on sections 0-19 from simulated scribbles, evaluate on sections 20-29.
- Pixel error and membrane F1 of the semantic map (interior probability p > 0.5 = interior).
- Cells: seeded watershed on p (seeds = connected components of gaussian(p, 1) > 0.9, flooding 1 - p)
  and, as a harsher number, connected components of p > 0.5. Also reported (``ws_merged_*``): the same
  watershed followed by the workbench's merging of weak boundaries (mean membrane probability along a
  contact < 0.5, ``workbench segment --method watershed --merge-threshold 0.5``).
- Adapted Rand error (skimage.metrics.adapted_rand_error) and VOI split/merge
  (skimage.metrics.variation_of_information) against the 2D connected components of the ground-truth
  interior (label 0 = membrane, ignored), computed per slice and averaged over the 10 test slices.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TRAIN = slice(0, 20)
TEST = slice(20, 30)
MEMBRANE, INTERIOR = 1, 2


def reexec_with_tunables() -> None:
    """Re-run this script with glibc malloc tuned (as the workbench CLI does), once."""
    from workbench.tuning import reexec_tuned

    # OpenMP threads that sleep instead of spinning: on a shared 2-core machine a 2-thread training step
    # was 1.6x faster with this (2.7-3.2 s vs 4.5-5.0 s per step under contention)
    reexec_tuned(sys.argv, {"OMP_WAIT_POLICY": "PASSIVE"})


def data_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_DATA_DIR", HERE.parents[1] / "shared" / "data"))


def load_isbi():
    """raw (30, 512, 512) uint8 and dense labels (1 membrane, 2 interior) uint8."""
    import tifffile

    d = data_dir() / "isbi2012"
    raw = tifffile.imread(d / "train-volume.tif")
    gt = tifffile.imread(d / "train-labels.tif")
    dense = np.where(gt > 0, INTERIOR, MEMBRANE).astype(np.uint8)
    return raw, dense


def training_labels(dense: np.ndarray, fraction: float | None, seed: int = 0):
    """Labels for the training sections (0-19) and zeros on the test sections.

    ``fraction`` None means dense labels; else simulated scribbles over about ``fraction`` of the training
    pixels (benchmarks/scribbles.py). Returns (labels uint8 (30, 512, 512), achieved fraction of the train
    pixels)."""
    from scribbles import simulate_scribbles

    out = np.zeros_like(dense)
    if fraction is None:
        out[TRAIN] = dense[TRAIN]
        return out, 1.0
    cache = Path("/tmp/wb_sparse_cache")
    cache.mkdir(exist_ok=True)
    f = cache / f"scribbles_{fraction:g}_{seed}.npy"
    if f.exists():
        sc = np.load(f)
    else:
        sc, _ = simulate_scribbles(np.where(dense[TRAIN] == MEMBRANE, 0, 255), fraction, seed=seed)
        np.save(f, sc)
    out[TRAIN] = sc
    return out, float((sc > 0).mean())


# -- the instance pipeline and the metrics ------------------------------------------------------------------
def watershed_seeds(p: np.ndarray) -> tuple[np.ndarray, int]:
    """The protocol's watershed seeds of one slice's interior probability: connected components of
    gaussian(p, 1) > 0.9; returns (seed labels, number of seeds)."""
    from scipy import ndimage as ndi

    return ndi.label(ndi.gaussian_filter(p.astype(np.float32), 1.0) > 0.9)


def watershed_cells(p: np.ndarray) -> np.ndarray:
    """Seeded watershed of one slice's interior probability (seeds: :func:`watershed_seeds`; flood 1 - p)."""
    from skimage.segmentation import watershed

    return watershed(1.0 - p, markers=watershed_seeds(p)[0])


def cc_cells(p: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.label(p > 0.5)[0]


def truth_cells(dense2d: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.label(dense2d == INTERIOR)[0]


def _inst_scores(seg, truth):
    from skimage.metrics import adapted_rand_error, variation_of_information

    are = adapted_rand_error(truth, seg)[0]
    # VOI on the pixels the truth labels (membrane ignored, as for ARE)
    keep = truth > 0
    split, merge = variation_of_information(truth[keep], seg[keep])
    return are, split, merge


#: The label-free merge threshold of ``ws_merged_*``: a contact more likely interior than membrane on average.
MERGE_THRESHOLD = 0.5


def evaluate(p_interior: np.ndarray, dense: np.ndarray) -> dict:
    """Metrics of interior probabilities (Z, Y, X) against dense labels of the same slices (per-slice mean)."""
    from workbench.segmentation.watershed import merge_weak_boundaries

    rows = []
    for p, d in zip(p_interior, dense):
        t = truth_cells(d)
        pred_mem = p <= 0.5
        true_mem = d == MEMBRANE
        tp = np.count_nonzero(pred_mem & true_mem)
        fp = np.count_nonzero(pred_mem & ~true_mem)
        fn = np.count_nonzero(~pred_mem & true_mem)
        cells = watershed_cells(p)
        ws = _inst_scores(cells, t)
        cc = _inst_scores(cc_cells(p), t)
        wsm = _inst_scores(merge_weak_boundaries(cells, 1.0 - p, MERGE_THRESHOLD), t)
        rows.append([float((pred_mem != true_mem).mean()), 2 * tp / max(2 * tp + fp + fn, 1), *ws, *cc, *wsm])
    m = np.mean(rows, axis=0)
    keys = ["pixel_error", "f1_membrane", "ws_are", "ws_voi_split", "ws_voi_merge", "cc_are", "cc_voi_split",
            "cc_voi_merge", "ws_merged_are", "ws_merged_voi_split", "ws_merged_voi_merge"]
    return {k: round(float(v), 4) for k, v in zip(keys, m)}


def machine_load() -> float:
    return round(os.getloadavg()[0], 2)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


# -- an exploration training loop (the same pieces as the workbench Trainer, with switches) -------------------
DEFAULT_RECIPE = {
    "base_channels": 16,
    "batch_size": 4,
    "patch": 256,
    "lr": 1e-3,
    "schedule": "cosine",   # cosine (with 20 warm-up steps, as the Trainer) | onecycle
    "loss": "ce_dice",      # ce | ce_dice | ohem (cross-entropy of the hardest ``ohem`` share of labelled pixels)
    "augment": "default",   # basic (flips, rot90) | default (workbench AugmentConfig())
    "swa": None,            # fraction of the run after which the weights are averaged (stochastic weight averaging)
    "cycles": 1,            # cosine restarts (snapshot ensemble members: the model at the end of each cycle)
    "semi": "none",         # none | mean-teacher | self (teacher = the student itself) | entropy
    "threshold": 0.9,
    "semi_weight": 1.0,
    "ema_decay": 0.99,
    "semi_start": 0.15,
    "semi_ramp": 0.15,
    "strong": True,         # student sees stronger intensity augmentation than the teacher
    "balance": "none",      # none | prior (class weights = true prior / scribble prior)
    "ema": 0.0,             # > 0: also keep an exponential moving average of the weights (info["ema_model"])
    "context": 0,           # > 0: 2.5D input, the sections z - context .. z + context as channels
    "self_train": None,     # {"at": [progress, ...], "threshold": 0.95}: confident pseudo-labels of a recalibrated copy
    "ws_pseudo": None,      # {"at": [progress, ...], "cut": 0.5, "interior_erode": 0}: watershed pseudo-labels
    "edge_pseudo": None,    # {"at": [progress, ...], "cut": 0.5, "width": 1}: weak watershed edges become interior
}


def weak_edge_pseudo_labels(p: np.ndarray, scribbles: np.ndarray, cut: float = 0.5, width: int = 1):
    """Pseudo-labels of one slice: the boundaries between watershed cells that agglomeration by mean
    membrane probability (< ``cut``) merges are labelled interior (grown by ``width`` pixels), as splits
    of one cell by organelle outlines usually are; scribbles win."""
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    from workbench.segmentation.watershed import merge_weak_boundaries

    ws = watershed_cells(p)
    if ws.max() < 2:
        return scribbles.copy()
    merged = merge_weak_boundaries(ws, 1.0 - p, cut)
    removed = find_boundaries(ws, mode="thick") & ~find_boundaries(merged, mode="thick")
    if width > 0:
        removed = ndi.binary_dilation(removed, iterations=width) & (merged > 0)
    out = scribbles.copy()
    out[removed & (scribbles == 0)] = INTERIOR
    return out


def watershed_pseudo_labels(p: np.ndarray, scribbles: np.ndarray, cut: float = 0.5, interior_erode: int = 0):
    """Pseudo-labels of one slice from its interior probability ``p`` and its scribbles (0 = unlabelled).

    The slice is segmented with the benchmark's watershed, neighbouring cells whose shared boundary is weak
    (mean membrane probability < ``cut``) are merged, and the boundaries left are labelled membrane (closing
    the gaps of a partly seen membrane); with ``interior_erode`` > 0 the cells eroded by that many pixels
    are labelled interior. Scribbles win where both say something."""
    from scipy import ndimage as ndi
    from skimage import graph
    from skimage.segmentation import find_boundaries

    ws = watershed_cells(p)
    if ws.max() < 2:  # no or one cell: nothing to say
        return scribbles.copy()
    rag = graph.rag_boundary(ws, (1.0 - p).astype(np.float64))
    merged = graph.cut_threshold(ws, rag, cut, in_place=False)
    out = np.zeros_like(scribbles)
    out[find_boundaries(merged, mode="thick")] = MEMBRANE
    if interior_erode > 0:
        dist = ndi.distance_transform_edt(~find_boundaries(merged, mode="inner"))
        out[(dist > interior_erode) & (out == 0)] = INTERIOR
    return np.where(scribbles > 0, scribbles, out)


def recalibrated_train_prob(model, xnorm, raw, norm, context: int = 0) -> np.ndarray:
    """Interior probability of the training sections from a copy of ``model`` whose BatchNorm statistics are
    recomputed on them (2D input; the model itself is left as it is)."""
    import copy

    import torch
    from torch.optim.swa_utils import update_bn

    src = copy.deepcopy(model)
    xt = torch.from_numpy(xnorm[TRAIN])[:, None]
    with torch.no_grad():
        update_bn([xt[i:i + 4].contiguous(memory_format=torch.channels_last) for i in range(0, xt.shape[0], 4)], src)
    return interior_prob(predict_logits(src, raw, norm, context=context)[TRAIN])


def train_explore(raw, labels, recipe: dict, iterations: int | None = None, minutes: float | None = None,
                  seed: int = 0, log=print):
    """Train a 2D U-Net on ``labels`` (0 = unlabelled) with the switches of ``recipe``; returns (model, info)."""
    import torch
    import torch.nn.functional as F

    from workbench.models import build_model
    from workbench.training.augment import _intensity, augment_batch
    from workbench.training.config import AugmentConfig
    from workbench.training.data import compute_normalisation, normalise
    from workbench.training.losses import masked_ce_dice, masked_cross_entropy
    from workbench.training.sampler import PatchSampler
    from workbench.training.semisupervised import (
        EMATeacher,
        SemiSupervisedConfig,
        pseudo_label_loss,
        ramp_weight,
        strong_view,
    )
    from workbench.training.targets import IGNORE_INDEX, semantic_target

    r = dict(DEFAULT_RECIPE, **recipe)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    norm = compute_normalisation(raw)
    xnorm = normalise(raw, norm)
    lab = labels.astype(np.int64)
    sampler = PatchSampler(xnorm, lab, (1, r["patch"], r["patch"]), seed=seed)
    k = int(r["context"])
    model = build_model("unet2d", 1 + 2 * k, 2, base_channels=r["base_channels"]).to(memory_format=torch.channels_last)
    rawpad = np.pad(xnorm, ((k, k), (0, 0), (0, 0)), mode="reflect") if k else None

    def draw(sampler, rng, n):
        if not k:
            return sampler.sample(rng, n)
        ps = r["patch"]
        xs = np.empty((n, 1 + 2 * k, ps, ps), np.float32)
        ys = np.zeros((n, 1 + 2 * k, ps, ps), np.int64)
        for b in range(n):
            z, y, x = sampler.patch_start(rng)
            xs[b] = rawpad[z:z + 1 + 2 * k, y:y + ps, x:x + ps]
            ys[b, k] = sampler.labels[z, y:y + ps, x:x + ps]
        return xs, ys

    def as_input(x):
        return (x if k else x[:, None, 0]).contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=1e-4)
    aug = AugmentConfig(**r.get("aug", {})) if r["augment"] == "default" else \
        AugmentConfig(True, True, 0, 0, 0, 0, 0, 0, 0, 0)
    geo = AugmentConfig(aug.flips, aug.rotate90, aug.elastic, aug.elastic_strength, 0, 0, 0, 0, 0, 0)
    strong = AugmentConfig(False, False, 0, 0, gamma=0.8, contrast=0.8, noise=0.8, blur=0.5)
    semi = SemiSupervisedConfig(r["threshold"], r["semi_weight"], r["ema_decay"], r["semi_start"], r["semi_ramp"])
    teacher = EMATeacher(model, r["ema_decay"]) if r["semi"] == "mean-teacher" else None
    weights = None
    if r["balance"] == "prior":
        sc = np.bincount(lab[lab > 0].ravel(), minlength=3)[1:] / max(1, (lab > 0).sum())
        prior = np.array([0.22, 0.78])
        weights = torch.tensor(prior / np.maximum(sc, 1e-6), dtype=torch.float32)
    snapshots = []
    swa = None
    ema = None
    if r["ema"]:
        ema = copy.deepcopy(model).eval()
        for q in ema.parameters():
            q.requires_grad_(False)
    pseudo_at = sorted((r["ws_pseudo"] or r["self_train"] or r["edge_pseudo"] or {}).get("at", []))
    pseudo_rounds = 0
    total = iterations
    budget = minutes * 60 if minutes else math.inf
    t0 = time.perf_counter()
    it = 0
    hist = []
    while True:
        elapsed = time.perf_counter() - t0
        if (iterations is not None and it >= iterations) or elapsed >= budget:
            break
        progress = it / total if total else elapsed / budget
        if pseudo_rounds < len(pseudo_at) and progress >= pseudo_at[pseudo_rounds]:
            src = ema if ema is not None else model
            new = lab.copy()
            if r["edge_pseudo"]:
                ep = r["edge_pseudo"]
                pint = recalibrated_train_prob(src, xnorm, raw, norm, k)
                for z in range(pint.shape[0]):
                    new[z] = weak_edge_pseudo_labels(pint[z], lab[z], ep.get("cut", 0.5), ep.get("width", 1))
            elif r["self_train"]:
                st = r["self_train"]
                pint = recalibrated_train_prob(src, xnorm, raw, norm, k)
                conf_int, conf_mem = pint > st.get("threshold", 0.95), pint < 1 - st.get("threshold", 0.95)
                unl = lab[TRAIN] == 0
                new[TRAIN][unl & conf_int] = INTERIOR
                new[TRAIN][unl & conf_mem] = MEMBRANE
            else:
                wp = r["ws_pseudo"]
                pint = interior_prob(predict_logits(src, raw, norm, context=k)[TRAIN])
                for z in range(pint.shape[0]):
                    new[z] = watershed_pseudo_labels(pint[z], lab[z], wp.get("cut", 0.5), wp.get("interior_erode", 0))
            model.train()
            sampler = PatchSampler(xnorm, new, (1, r["patch"], r["patch"]), balance=lab, seed=seed + 1 + pseudo_rounds)
            pseudo_rounds += 1
            log({"it": it, "pseudo_round": pseudo_rounds, "labelled": round(float((new[TRAIN] > 0).mean()), 3),
                 "membrane": round(float((new[TRAIN] == MEMBRANE).sum() / max(1, (new[TRAIN] > 0).sum())), 3)},
                flush=True)
        # lr schedule
        if r["schedule"] == "onecycle":
            warm = 0.25
            lr = r["lr"] * (0.1 + 0.9 * progress / warm) if progress < warm else \
                r["lr"] * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm))))
        else:  # cosine, restarted ``cycles`` times (snapshot ensembles keep the model at the end of each cycle)
            cyc = min(1.0, progress) * r["cycles"]
            if int(cyc) > len(snapshots) and int(cyc) < r["cycles"]:
                snapshots.append(copy.deepcopy(model.state_dict()))
            lr = r["lr"] * (it + 1) / 20 if it < 20 else \
                r["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, cyc - int(min(cyc, r["cycles"] - 1))))))
        for gr in opt.param_groups:
            gr["lr"] = lr
        rng = np.random.default_rng([seed, it])
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        xr, yl = draw(sampler, rng, r["batch_size"])
        if r.get("view") == "trainer":  # as the Trainer does: the usual augmentation, then a strong view
            xr, yl = augment_batch(torch.from_numpy(xr), torch.from_numpy(yl), aug, g)
            x_weak = xr
            x_student = strong_view(xr, g) if r["semi"] != "none" else xr
        else:
            xr, yl = augment_batch(torch.from_numpy(xr), torch.from_numpy(yl), geo, g)
            x_weak = xr
            x_student = _intensity(xr.clone(), strong if r["strong"] else aug, g) \
                if (r["semi"] != "none" and r["strong"]) else _intensity(xr.clone(), aug, g)
        target, _ = semantic_target(yl)
        target = target[:, k]
        xs = as_input(x_student)
        logits = model(xs)
        if weights is not None:
            n = (target != IGNORE_INDEX).sum().clamp_min(1)
            sup = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum") / n
        elif r["loss"] == "ce":
            sup = masked_cross_entropy(logits, target)
        elif r["loss"] == "ohem":  # the hardest labelled pixels only (``ohem`` share of them), plus Dice
            from workbench.training.losses import masked_dice

            ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
            lab_ce = ce[target != IGNORE_INDEX]
            kk = max(1, int(r.get("ohem", 0.25) * lab_ce.numel()))
            mask = (target != IGNORE_INDEX).unsqueeze(1).float()
            onehot = F.one_hot(target.clamp_min(0), logits.shape[1]).movedim(-1, 1).float()
            sup = lab_ce.topk(kk).values.mean() + masked_dice(logits.float().softmax(1), onehot, mask)
        else:
            sup = masked_ce_dice(logits, target)
        loss = sup
        frac = 0.0
        w = ramp_weight(progress, semi)
        if r["semi"] in ("mean-teacher", "self") and w > 0:
            xw = as_input(x_weak)
            if teacher is not None:
                tp = teacher.predict(xw)
            else:
                with torch.no_grad():
                    model.eval()
                    tp = model(xw).float().softmax(1)
                    model.train()
            pl, frac = pseudo_label_loss(logits, tp, target != IGNORE_INDEX, r["threshold"])
            loss = loss + w * pl
        elif r["semi"] == "entropy" and w > 0:
            p = logits.float().softmax(1)
            ent = -(p * p.clamp_min(1e-8).log()).sum(1)
            unl = (target == IGNORE_INDEX).float()
            loss = loss + w * 0.1 * (ent * unl).sum() / unl.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if teacher is not None:
            teacher.update(model)
        if ema is not None:
            with torch.no_grad():
                d = r["ema"] if it >= 20 else 0.0
                for qe, qm in zip(ema.parameters(), model.parameters()):
                    qe.mul_(d).add_(qm.detach(), alpha=1 - d)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
        if r["swa"] is not None and progress >= r["swa"]:  # uniform average of the weights from then on
            if swa is None:
                swa, swa_n = copy.deepcopy(model).eval(), 0
            swa_n += 1
            with torch.no_grad():
                for qa, qm in zip(swa.parameters(), model.parameters()):
                    qa.add_(qm.detach() - qa, alpha=1.0 / swa_n)
        it += 1
        if it % 100 == 0:
            hist.append({"it": it, "s": round(time.perf_counter() - t0, 1), "sup": round(float(sup), 4),
                         "loss": round(float(loss), 4), "pl_frac": round(frac, 3)})
            log(hist[-1], flush=True)
    info = {"iterations": it, "train_s": round(time.perf_counter() - t0, 1), "normalisation": norm,
            "history": hist[-3:], "ema_model": ema, "snapshots": snapshots,
            "swa_model": swa}
    final = teacher.model if (teacher is not None and r.get("use_teacher", True)) else model
    return final, info


def predict_logits(model, raw_slices, norm, context: int = 0) -> np.ndarray:
    """Logits (Z, 2, Y, X) of a 2D model on normalised raw slices (with ``context`` sections each side as
    input channels, reflected at the ends)."""
    import torch

    from workbench.training.data import normalise

    model.eval()
    xn = normalise(raw_slices, norm)
    if context:
        pad = np.pad(xn, ((context, context), (0, 0), (0, 0)), mode="reflect")
        xn = np.stack([pad[z:z + 1 + 2 * context] for z in range(xn.shape[0])])
        x = torch.from_numpy(xn).contiguous(memory_format=torch.channels_last)
    else:
        x = torch.from_numpy(xn)[:, None].contiguous(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], 5):
            out.append(model(x[i:i + 5]).float().numpy())
    return np.concatenate(out)


def interior_prob(logits: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Interior probability from 2-class logits, with ``shift`` added to the interior-minus-membrane logit."""
    d = logits[:, 1] - logits[:, 0] + shift
    return (1.0 / (1.0 + np.exp(-d))).astype(np.float32)
