"""Training throughput of the Trainer (data pipeline + augmentation included) against a plain PyTorch loop.

Measures, in one run (the machine is shared and its speed drifts, so everything is compared within the run):
- the oneDNN 3x3 convolution ceilings (a large channels_last conv2d) in fp32 and in bf16 (autocast), GFLOP/s;
- ``unet2d`` (4 levels, base 16), batch 4 x 256^2, in fp32 and in bf16 (where the CPU has it natively): a plain
  loop on random tensors vs our Trainer (with and without the background batch thread), patches/s and achieved
  GFLOP/s (FLOPs counted with ``torch.utils.flop_counter``, x3 for forward + backward) against the ceiling of
  the precision used; where the time of a Trainer step goes (waiting for batches vs the step itself);
- ``unet3d`` patches/s through the Trainer;
- torch-em's UNet2d side by side, when ``pip install torch-em`` would not replace our torch.

Writes ``benchmarks/results/train_speed.json``. Run: ``.venv/bin/python benchmarks/bench_train_speed.py``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "train_speed.json"
BATCH, SIZE = 4, 256
UNET2D = {"depth": 4, "base_channels": 16}


def _reexec_with_tuned_malloc() -> None:
    from workbench.tuning import reexec_tuned

    reexec_tuned(sys.argv)


def conv_ceiling(repeats: int = 6, precision: str = "fp32") -> float:
    """GFLOP/s of a large 3x3 channels_last conv2d (64 -> 64 channels, 8 x 256^2), best of ``repeats``, under
    ``precision``'s autocast."""
    import torch

    from workbench.precision import autocast

    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(8, 64, 256, 256).contiguous(memory_format=torch.channels_last)
    flops = 2 * 8 * 64 * 64 * 9 * 256 * 256
    best = 0.0
    with torch.no_grad(), autocast("cpu", precision):
        conv(x)
        for _ in range(repeats):
            t = time.perf_counter()
            conv(x)
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best


def unet_flops_per_forward(arch: str, options: dict, shape) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from workbench.models import build_model

    model = build_model(arch, 1, 2, **options)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(shape))
    return int(counter.get_total_flops())


def plain_loop(iterations: int, warmup: int = 3, precision: str = "fp32") -> float:
    """Patches/s of a bare training loop on random tensors (same architecture, channels_last, AdamW, the
    forward pass under ``precision``'s autocast)."""
    import torch
    import torch.nn.functional as F

    from workbench.models import build_model
    from workbench.precision import autocast

    torch.manual_seed(0)
    model = build_model("unet2d", 1, 2, **UNET2D).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 1, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (BATCH, SIZE, SIZE))
    for i in range(warmup + iterations):
        if i == warmup:
            t0 = time.perf_counter()
        with autocast("cpu", precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return iterations * BATCH / (time.perf_counter() - t0)


def _synthetic(shape=(16, 512, 512), seed=0):
    import numpy as np
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    raw = ndi.gaussian_filter(rng.normal(size=shape), (0, 3, 3))
    raw = ((raw - raw.min()) / (raw.max() - raw.min()) * 255).astype(np.uint8)
    labels = np.zeros(shape, np.uint8)
    for z in range(shape[0]):  # sparse scribbles: a few short lines per class
        for c in (1, 2, 3):
            for _ in range(4):
                y, x = rng.integers(20, shape[1] - 20), rng.integers(20, shape[2] - 60)
                labels[z, y : y + 3, x : x + 40] = c
    return raw, labels


def trainer_speed(arch: str, options: dict, patch, iterations: int, prefetch: int = 2, warmup: int = 3,
                  batch: int = BATCH, device: str = "cpu", precision: str = "fp32") -> dict:
    """Patches/s of our Trainer (sampling, augmentation, targets, masked CE + Dice, logging), and the share of
    the timed steps spent waiting for batches (the data pipeline not keeping up)."""
    from workbench.training import TrainConfig, Trainer

    raw, labels = _synthetic()
    cfg = TrainConfig(arch=arch, arch_options=options, patch_shape=list(patch), batch_size=batch,
                      iterations=warmup + iterations, log_every=1, val_every=10**9, checkpoint_seconds=10**9,
                      prefetch=prefetch, device=device, precision=precision, bn_recalibration=False)
    if hasattr(cfg, "semi_supervised"):  # the same supervised work as the plain loop (no mean-teacher pass)
        cfg.semi_supervised = "none"
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, raw, labels, d)
        trainer.run()
        hist = {r["iteration"]: r for r in trainer.history}
        seconds = hist[warmup + iterations]["elapsed_s"] - hist[warmup]["elapsed_s"]
        total = hist[warmup + iterations]["elapsed_s"]
    waited = float(getattr(trainer, "batch_wait_seconds", 0.0))
    return {"patches_per_s": iterations * batch / seconds, "iterations": iterations, "patch": list(patch),
            "batch": batch, "prefetch": prefetch, "precision": trainer.precision,
            "step_ms": round(1000 * seconds / iterations, 1),
            "batch_wait_fraction_of_run": round(waited / max(total, 1e-9), 3)}


def batch_cost_ms(repeats: int = 10) -> dict:
    """Milliseconds to make one batch (sampling, augmentation, targets), in a thread with one torch thread
    as the Trainer's background batch thread does."""
    import threading

    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(_batch_cost_ms(repeats)))
    worker.start()
    worker.join()
    return out


def _batch_cost_ms(repeats: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)

    from workbench.training.augment import augment_batch
    from workbench.training.config import AugmentConfig
    from workbench.training.data import compute_normalisation, normalise
    from workbench.training.sampler import PatchSampler
    from workbench.training.targets import semantic_target

    raw, labels = _synthetic()
    sampler = PatchSampler(normalise(raw, compute_normalisation(raw)), labels, (1, SIZE, SIZE))
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    times = {"sample": [], "augment": [], "target": []}
    for _ in range(repeats):
        t = time.perf_counter()
        r, lab = sampler.sample(rng, BATCH)
        t1 = time.perf_counter()
        r, lab = augment_batch(torch.from_numpy(r), torch.from_numpy(lab), AugmentConfig(), g)
        t2 = time.perf_counter()
        semantic_target(lab)
        t3 = time.perf_counter()
        times["sample"].append(t1 - t)
        times["augment"].append(t2 - t1)
        times["target"].append(t3 - t2)
    return {k: round(1000 * float(np.median(v)), 2) for k, v in times.items()}


def monai_augment_ms(repeats: int = 10) -> dict:
    """The same augmentations with MONAI dictionary transforms (per patch, numpy in), in a one-thread thread."""
    import threading

    out: dict = {}

    def work():
        import numpy as np
        import torch

        torch.set_num_threads(1)
        try:
            from monai.transforms import (
                Compose,
                Rand2DElasticd,
                RandAdjustContrastd,
                RandFlipd,
                RandGaussianNoised,
                RandGaussianSmoothd,
                RandRotate90d,
                RandScaleIntensityd,
            )
        except Exception as err:  # MONAI missing or broken: say so
            out["error"] = f"{type(err).__name__}: {err}"
            return
        keys = ["img", "lab"]
        tf = Compose([
            RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys, prob=0.75),
            Rand2DElasticd(keys, spacing=(64, 64), magnitude_range=(1, 4), prob=0.3, mode=("bilinear", "nearest"),
                           padding_mode="reflection"),
            RandAdjustContrastd("img", prob=0.3), RandScaleIntensityd("img", factors=0.25, prob=0.3),
            RandGaussianSmoothd("img", prob=0.2), RandGaussianNoised("img", prob=0.3, std=0.1),
        ])
        tf.set_random_state(0)
        rng = np.random.default_rng(0)
        times = []
        for _ in range(repeats):
            imgs = rng.random((BATCH, 1, SIZE, SIZE), dtype=np.float32)
            labs = (imgs > 0.5).astype(np.int64)
            t = time.perf_counter()
            for b in range(BATCH):
                tf({"img": imgs[b], "lab": labs[b]})
            times.append(time.perf_counter() - t)
        out["augment"] = round(1000 * float(np.median(times)), 2)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    return out


def torch_em_status() -> dict:
    """Whether torch-em installs beside our torch (dry run only)."""
    try:
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "torch-em"],
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"available": False, "reason": f"pip dry run failed: {err}"}
    would = [line for line in res.stdout.splitlines() if line.startswith("Would install")]
    pulled = would[0].split()[2:] if would else []
    other_torch = [p for p in pulled if p.startswith(("torch-", "torchvision-", "nvidia-", "triton-"))]
    if res.returncode != 0:
        return {"available": False, "reason": "pip install --dry-run torch-em failed: " + res.stderr.strip()[-300:]}
    if other_torch:
        return {"available": False,
                "reason": "pip install torch-em would replace torch 2.13 CPU with " + ", ".join(sorted(other_torch)[:6])
                + (" ..." if len(other_torch) > 6 else "") + " (multi-GB CUDA build, and torchvision does not import "
                "beside this CPU torch); not installed, so no side-by-side figure"}
    return {"available": True, "reason": ""}


def main() -> int:
    _reexec_with_tuned_malloc()
    import torch

    import workbench

    its = int(os.environ.get("BENCH_ITERATIONS", 30))
    result = {
        "what": "training throughput, batch 4 x 256^2, unet2d depth 4 base 16; our Trainer vs plain loop",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                    "load_average_at_start": list(os.getloadavg())},
        "workbench": workbench.__version__,
    }
    flops_fwd = unet_flops_per_forward("unet2d", UNET2D, (BATCH, 1, SIZE, SIZE))
    result["unet2d_flops_per_forward"] = flops_fwd
    result["unet2d_kflop_per_pixel_forward"] = round(flops_fwd / (BATCH * SIZE * SIZE) / 1e3, 1)
    from workbench.precision import bf16_supported

    precisions = ["fp32", *(["bf16"] if bf16_supported("cpu") else [])]
    result["machine"]["bf16_native"] = bf16_supported("cpu")
    per_patch_flops = 3 * flops_fwd / BATCH
    runs = {p: {"ceiling": [], "plain": [], "ours": [], "ours_no_prefetch": [], "ours_detail": []} for p in precisions}
    for _ in range(int(os.environ.get("BENCH_ROUNDS", 3))):  # interleaved so drift hits all alike; best of each
        for prec in precisions:
            r = runs[prec]
            r["ceiling"].append(conv_ceiling(precision=prec))
            r["plain"].append(plain_loop(its, precision=prec))
            detail = trainer_speed("unet2d", UNET2D, (1, SIZE, SIZE), its, precision=prec)
            r["ours"].append(detail["patches_per_s"])
            r["ours_detail"].append(detail)
            r["ours_no_prefetch"].append(trainer_speed("unet2d", UNET2D, (1, SIZE, SIZE), its, prefetch=0,
                                                       precision=prec)["patches_per_s"])
    for prec in precisions:
        r = runs[prec]
        best = {k: max(v) for k, v in r.items() if k != "ours_detail"}
        fastest = max(r["ours_detail"], key=lambda d: d["patches_per_s"])
        entry = {
            "conv_ceiling_gflops": round(best["ceiling"], 1),
            "plain_loop_patches_per_s": round(best["plain"], 2),
            "trainer_patches_per_s": round(best["ours"], 2),
            "trainer_without_background_batches_patches_per_s": round(best["ours_no_prefetch"], 2),
            "trainer_vs_plain": round(best["ours"] / best["plain"], 3),
            "background_batches_speedup": round(best["ours"] / best["ours_no_prefetch"], 3),
            "trainer_gflops": round(best["ours"] * per_patch_flops / 1e9, 1),
            "plain_gflops": round(best["plain"] * per_patch_flops / 1e9, 1),
            "trainer_fraction_of_conv_ceiling": round(best["ours"] * per_patch_flops / 1e9 / best["ceiling"], 3),
            "plain_fraction_of_conv_ceiling": round(best["plain"] * per_patch_flops / 1e9 / best["ceiling"], 3),
            "fastest_trainer_run": {k: fastest[k] for k in ("step_ms", "batch_wait_fraction_of_run")},
            "all_runs": {k: [round(x, 2) for x in v] for k, v in r.items() if k != "ours_detail"},
        }
        if prec == "fp32":
            result["conv_ceiling_gflops"] = entry["conv_ceiling_gflops"]
            result["unet2d"] = dict(entry, targets={"trainer_vs_plain": ">= 0.90", "fraction_of_conv_ceiling": ">= 0.50"})
        else:
            result[f"unet2d_{prec}"] = dict(entry, targets={"fraction_of_conv_ceiling": ">= 0.40 (of the bf16 ceiling)"})
            result[f"{prec}_speedup_trainer"] = round(best["ours"] / max(runs["fp32"]["ours"]), 3)
    result["batch_making_ms"] = batch_cost_ms()
    result["augmentation_ms_per_batch"] = {"ours_torch_on_batch": result["batch_making_ms"]["augment"],
                                           "monai_per_patch": monai_augment_ms().get("augment")}
    patch3d = (16, 96, 96)
    u3 = trainer_speed("unet3d", {"depth": 4, "base_channels": 16}, patch3d, max(5, its // 3))
    f3 = unet_flops_per_forward("unet3d", {"depth": 4, "base_channels": 16}, (BATCH, 1, *patch3d))
    u3["gflops"] = round(u3["patches_per_s"] * 3 * f3 / BATCH / 1e9, 1)
    u3["patches_per_s"] = round(u3["patches_per_s"], 2)
    result["unet3d"] = u3
    result["torch_em"] = torch_em_status()
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
