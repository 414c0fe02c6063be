"""Pick the compute device (CUDA, then Apple MPS, then CPU) and prepare it: cuDNN autotuning, pinned batches."""

from __future__ import annotations

from workbench.errors import WorkbenchError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preference: str = "auto"):
    """Return a ``torch.device`` for ``preference`` (auto|cpu|cuda|mps).

    Raises:
        WorkbenchError: an unknown name, or a device asked for that this machine does not have.
    """
    import torch

    pref = (preference or "auto").lower()
    if pref not in DEVICE_CHOICES and not pref.startswith("cuda:"):
        raise WorkbenchError(f"unknown device {preference!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    if pref == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise WorkbenchError("device 'mps' requested but Apple MPS is not available (use --device cpu or auto)")
    return torch.device(pref)


def describe_device(device) -> str:
    """A short human description, e.g. 'CPU (2 threads)' or 'CUDA: NVIDIA A100'."""
    import torch

    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def prepare_device(device) -> None:
    """Per-process settings for ``device``: on CUDA, cuDNN picks the fastest convolution algorithms for the
    shapes it sees (``cudnn.benchmark``; training patches and prediction tiles keep one shape); elsewhere
    nothing."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.backends.cudnn.benchmark = True


def gpu_count() -> int:
    """CUDA GPUs this process sees (0 without CUDA)."""
    import torch

    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except (AssertionError, RuntimeError):
        return 0


def pin_batch(batch):
    """A batch (tuple of tensors) in page-locked memory, so that ``.to("cuda", non_blocking=True)`` overlaps
    the copy with the GPU's work; tensors already pinned are kept."""
    return tuple(t if t.is_pinned() else t.pin_memory() for t in batch)
