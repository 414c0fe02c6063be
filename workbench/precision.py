"""Numeric precision of the network passes: ``fp32``, ``bf16`` autocast where the hardware has it, ``auto``.

Master weights, optimiser state and losses stay float32 whatever the choice; only the forward pass runs
under ``torch.autocast`` (convolutions and matrix products in bfloat16, BatchNorm, softmax and the losses
in float32). bfloat16 is used only where it is native: CPUs whose oneDNN reports bf16 support (AVX512-BF16
or AMX) and CUDA GPUs that support it (Ampere and later). ``fp16`` (CUDA only) adds a ``GradScaler`` in
training. Prediction outputs are float32 in every case.

Native is not the same as faster: with AMX a bf16 convolution runs about 2.5x faster than fp32, but on an
Intel Xeon with AVX512-BF16 and no AMX it ran at 0.6x (135-150 against 240-300 GFLOP/s,
``benchmarks/results/train_speed.json``). So ``auto`` on a CPU measures once: a 3x3 convolution in both
precisions (about a second), cached per CPU model, torch version and thread count in the user's cache folder;
bf16 is chosen only when it is at least :data:`BF16_MIN_SPEEDUP` times faster.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from typing import Any

from workbench.choices import Choice
from workbench.errors import WorkbenchError


class Precision(Choice, what="precision"):
    """``auto`` (bf16 where the device supports it natively and, on a CPU, runs it faster; else fp32), ``fp32``, ``bf16`` or ``fp16`` (CUDA)."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


#: what :func:`resolve_precision` returns
RESOLVED = ("fp32", "bf16", "fp16")
#: ``auto`` picks bf16 on a CPU only where a 3x3 convolution runs at least this much faster in it
BF16_MIN_SPEEDUP = 1.2
#: the speed-ups this process measured or read (by :func:`_cpu_key`)
_SPEEDUPS: dict[str, float] = {}


def _device(device: Any):
    import torch

    if isinstance(device, torch.device):
        return device
    return torch.device(str(device) if device else "cpu")


def bf16_supported(device: Any = "cpu") -> bool:
    """True when ``device`` (a ``torch.device`` or its name; None: the CPU) runs bfloat16 natively.

    CPU: oneDNN is available and reports bf16 support (AVX512-BF16 or AMX); CUDA: ``torch.cuda.is_bf16_supported()``.
    Other devices (MPS): False.
    """
    import torch

    dev = _device(device)
    if dev.type == "cuda":
        try:
            return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        except (AssertionError, RuntimeError):
            return False
    if dev.type == "cpu":
        mkldnn = getattr(torch.backends, "mkldnn", None)
        if mkldnn is None or not mkldnn.is_available():
            return False
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(choice: Any, device: Any = "cpu") -> str:
    """The precision to run on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (``auto``: bf16 where supported).

    Raises:
        WorkbenchError: an unknown choice ("did you mean"), ``bf16`` on a device without native bfloat16,
            ``fp16`` off CUDA.
    """
    choice = Precision.parse(choice if choice is not None else Precision.FP32)
    dev = _device(device)
    if choice == Precision.FP32:
        return "fp32"
    if choice == Precision.AUTO:
        if not bf16_supported(dev):
            return "fp32"
        return "bf16" if dev.type != "cpu" or cpu_bf16_speedup() >= BF16_MIN_SPEEDUP else "fp32"
    if choice == Precision.BF16:
        if not bf16_supported(dev):
            raise WorkbenchError(f"precision bf16 asked for, but the {dev.type} device has no native bfloat16 "
                                 "(CPUs need AVX512-BF16 or AMX, GPUs Ampere or later); use fp32 or auto")
        return "bf16"
    if dev.type != "cuda":
        raise WorkbenchError(f"precision fp16 needs a CUDA GPU (device is {dev.type}); use bf16, auto or fp32")
    return "fp16"


def autocast(device: Any, precision: str):
    """A context manager running torch ops on ``device`` in ``precision`` (a resolved one; fp32: does nothing)."""
    precision = str(precision)
    if precision not in RESOLVED:
        raise ValueError(f"precision must be one of {RESOLVED} (resolve it first), got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(_device(device).type, dtype=dtype)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return model


def _cpu_key() -> str:
    """CPU model, torch version and thread count: what the bf16 speed-up depends on."""
    import torch

    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def measure_cpu_bf16_speedup(repeats: int = 4) -> float:
    """Throughput of a channels_last 64 -> 64 3x3 convolution (2 x 128^2) under bf16 autocast over fp32 (best of
    ``repeats`` each, interleaved)."""
    import torch

    x = torch.randn(2, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last).eval()
    best = {"fp32": float("inf"), "bf16": float("inf")}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for precision in best:
                with autocast("cpu", precision):
                    t0 = time.perf_counter()
                    conv(x)
                    if i:  # the first round creates the oneDNN primitives
                        best[precision] = min(best[precision], time.perf_counter() - t0)
    return best["fp32"] / best["bf16"]


def cpu_bf16_speedup() -> float:
    """The bf16 over fp32 convolution speed-up of this CPU: measured once (:func:`measure_cpu_bf16_speedup`),
    then read from ``precision.json`` in the cache folder (``workbench.config.cache_dir``)."""
    from workbench.atomic import atomic_write_json
    from workbench.config import cache_dir

    key = _cpu_key()
    if key in _SPEEDUPS:
        return _SPEEDUPS[key]
    path = cache_dir() / "precision.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    value = known.get(key)
    if isinstance(value, (int, float)) and value > 0:
        _SPEEDUPS[key] = float(value)
        return float(value)
    speedup = _SPEEDUPS[key] = measure_cpu_bf16_speedup()
    known[key] = round(speedup, 3)
    try:
        os.makedirs(path.parent, exist_ok=True)
        atomic_write_json(path, known)
    except OSError:
        pass  # a read-only cache: measured again next time
    return speedup
