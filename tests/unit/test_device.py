"""Device selection and preparation (``workbench.device``) with CUDA and MPS mocked: no GPU needed."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from workbench.device import describe_device, gpu_count, pick_device, pin_batch, prepare_device
from workbench.errors import WorkbenchError
from workbench.precision import resolve_precision


def _cuda(available: bool, count: int = 1, bf16: bool = True):
    return (mock.patch.object(torch.cuda, "is_available", return_value=available),
            mock.patch.object(torch.cuda, "device_count", return_value=count),
            mock.patch.object(torch.cuda, "is_bf16_supported", return_value=bf16))


def test_auto_prefers_cuda_then_mps_then_cpu():
    a, b, c = _cuda(True)
    with a, b, c:
        assert pick_device("auto") == torch.device("cuda")
        assert pick_device("cuda:1") == torch.device("cuda:1")
    a, b, c = _cuda(False)
    with a, b, c, mock.patch.object(torch.backends.mps, "is_available", return_value=True):
        assert pick_device("auto") == torch.device("mps")
    with a, b, c, mock.patch.object(torch.backends.mps, "is_available", return_value=False):
        assert pick_device(None) == torch.device("cpu")
        assert pick_device("CPU") == torch.device("cpu")


def test_missing_or_unknown_device_is_one_line_error():
    a, b, c = _cuda(False)
    with a, b, c:
        with pytest.raises(WorkbenchError, match="no CUDA GPU"):
            pick_device("cuda")
    with mock.patch.object(torch.backends.mps, "is_available", return_value=False):
        with pytest.raises(WorkbenchError, match="Apple MPS is not available"):
            pick_device("mps")
    with pytest.raises(WorkbenchError, match="unknown device 'tpu'"):
        pick_device("tpu")


def test_gpu_count_and_precision_per_device():
    a, b, c = _cuda(True, count=3, bf16=False)
    with a, b, c:
        assert gpu_count() == 3
        assert resolve_precision("auto", "cuda") == "fp32"  # a pre-Ampere GPU: fp32 unless fp16 is asked for
        assert resolve_precision("fp16", pick_device("auto")) == "fp16"
    a, b, c = _cuda(False, count=3)
    with a, b, c:
        assert gpu_count() == 0


def test_prepare_device_turns_on_cudnn_autotuning_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepare_device(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    prepare_device("cuda:0")
    assert torch.backends.cudnn.benchmark is True


def test_describe_device():
    assert describe_device(torch.device("cpu")).startswith("CPU (")
    assert describe_device(torch.device("mps")) == "Apple MPS"
    with mock.patch.object(torch.cuda, "get_device_name", return_value="Fake A100"):
        assert describe_device(torch.device("cuda")) == "CUDA: Fake A100"


class _FakeTensor:
    def __init__(self, pinned: bool):
        self.pinned = pinned

    def is_pinned(self) -> bool:
        return self.pinned

    def pin_memory(self):
        return _FakeTensor(True)


def test_pin_batch_pins_what_is_not_pinned():
    already = _FakeTensor(True)
    out = pin_batch((_FakeTensor(False), already))
    assert all(t.is_pinned() for t in out)
    assert out[1] is already
