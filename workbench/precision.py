"""Numeric precision of the network passes: ``fp32``, ``bf16`` autocast where the hardware has it, ``auto``.

Master weights, optimiser state and losses stay float32 whatever the choice; only the forward pass runs
under ``torch.autocast`` (convolutions and matrix products in bfloat16, BatchNorm, softmax and the losses
in float32). bfloat16 is used only where it is native: CPUs whose oneDNN reports bf16 support (AVX512-BF16
or AMX) and CUDA GPUs that support it (Ampere and later). ``fp16`` (CUDA only) adds a ``GradScaler`` in
training. Prediction outputs are float32 in every case.
"""

from __future__ import annotations

import contextlib
from typing import Any

from workbench.choices import Choice
from workbench.errors import WorkbenchError


class Precision(Choice, what="precision"):
    """``auto`` (bf16 where the device supports it natively, else fp32), ``fp32``, ``bf16`` or ``fp16`` (CUDA)."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


#: what :func:`resolve_precision` returns
RESOLVED = ("fp32", "bf16", "fp16")


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
        return "bf16" if bf16_supported(dev) else "fp32"
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
