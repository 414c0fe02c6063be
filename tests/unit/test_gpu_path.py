"""The GPU path with CUDA mocked: grad-scaler steps, pinned prefetch, blocks in flight, one Dask worker per GPU,
and the memory share of blocks in flight (peak memory that does not grow with the volume)."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from unittest import mock

import numpy as np
import torch

from workbench.inference import PredictOptions, jobs, predict_volume
from workbench.inference import executors as ex
from workbench.io.volume import Volume
from workbench.models.predictor import as_predictor
from workbench.training.batches import Prefetcher
from workbench.training.loop import train_step


# -- training: the grad scaler of fp16 -------------------------------------------------------------------
class RecordingScaler:
    """Stands in for ``torch.amp.GradScaler``: records the calls train_step makes, scales by 2."""

    def __init__(self):
        self.calls = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss * 2

    def step(self, optimizer):
        self.calls.append("step")
        optimizer.step()

    def update(self):
        self.calls.append("update")


def _trainer(scaler):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    task = SimpleNamespace(loss=lambda logits, target, mask: torch.nn.functional.cross_entropy(logits, target))
    return SimpleNamespace(
        net=net, optimizer=opt, scaler=scaler, task=task, hooks=[], iteration=0, device=torch.device("cpu"),
        precision="fp32", train_seconds=0.0, deadline=time.monotonic() + 60, config=SimpleNamespace(iterations=5),
        to_device=lambda x, non_blocking=False: x, clock=lambda: 0.0, lr_at=lambda it, s: 0.1,
        done_fraction=lambda it, s: it / 5)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 1, 8, 8, generator=g), torch.randint(0, 2, (2, 8, 8), generator=g), torch.ones(2, 8, 8)


def test_train_step_goes_through_the_grad_scaler():
    scaler = RecordingScaler()
    trainer = _trainer(scaler)
    before = [p.detach().clone() for p in trainer.net.parameters()]
    step = train_step(trainer, _batch())
    assert scaler.calls == ["scale", "step", "update"]
    assert math.isfinite(step.loss_value) and trainer.iteration == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))


def test_train_step_without_scaler_steps_plainly():
    a, b = _trainer(None), _trainer(RecordingScaler())
    train_step(a, _batch())
    train_step(b, _batch())
    # the scaled loss (x2) with plain SGD moves the weights twice as far: the scaler path was taken only in b
    da = [(p - q).abs().sum() for p, q in zip(a.net.parameters(), _trainer(None).net.parameters())]
    db = [(p - q).abs().sum() for p, q in zip(b.net.parameters(), _trainer(None).net.parameters())]
    assert all(torch.isclose(y, 2 * x, rtol=1e-4) for x, y in zip(da, db))


def test_prefetcher_applies_the_transfer_in_the_background_and_counts_waiting():
    made = Prefetcher(lambda i: (torch.full((1,), float(i)),), 3, depth=2, transfer=lambda b: (b[0] + 100,))
    try:
        assert [float(made.get()[0]) for _ in range(3)] == [103.0, 104.0, 105.0]
        assert made.wait_seconds >= 0.0
    finally:
        made.close()
    inline = Prefetcher(lambda i: (torch.zeros(1),), 0, depth=0, transfer=lambda b: (b[0] + 1,))
    assert float(inline.get()[0]) == 1.0


# -- prediction: blocks in flight on a (mocked) GPU, Dask workers per GPU -----------------------------------
class SliceCounter:
    """A 2D predictor reporting the largest z it was given; its ``device`` says what the executor believes."""

    spatial_dims = 2
    channel_names = ["a"]
    halo = (0, 4, 4)

    def __init__(self, device="cpu"):
        self.device = torch.device(device) if device != "cuda" else SimpleNamespace(type="cuda")
        self.calls = []

    def predict(self, block):
        self.calls.append(block.shape[0])
        return (block.astype(np.float32) / 255.0)[None]


def test_two_blocks_in_flight_on_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    raw = np.random.default_rng(0).integers(0, 255, (8, 32, 32)).astype(np.uint8)
    pred = SliceCounter("cuda")
    result = predict_volume(pred, raw, tmp_path / "p.zarr", PredictOptions(block_shape=(2, 32, 32), dtype="float16"))
    assert result.complete and result.info["workers"] == ex.GPU_BLOCKS_IN_FLIGHT
    assert torch.backends.cudnn.benchmark is True  # prepared for the (mocked) GPU
    compiled = ex.ThreadExecutor(pred, raw, "auto", compile=False)
    assert compiled.workers == "auto"


def test_dask_gets_one_worker_per_gpu(monkeypatch):
    specs = ex.gpu_worker_specs(3)
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["0", "1", "2"]
    assert all(s["options"]["nthreads"] == 1 for s in specs.values())
    made = {}
    monkeypatch.setattr(ex, "gpu_count", lambda: 2)
    monkeypatch.setattr(ex, "gpu_cluster", lambda n: made.setdefault("cluster", f"{n} gpu workers"))
    with mock.patch("distributed.Client", side_effect=lambda cluster: SimpleNamespace(cluster=cluster)):
        client, owned = ex.connect("processes")
    assert owned and client.cluster == "2 gpu workers"


def test_remote_job_of_a_gpu_predictor_loads_on_the_worker_gpu(tmp_path, monkeypatch):
    from workbench.inference.writer import BlockStore

    pred = SliceCounter("cuda")
    pred.run_dir = tmp_path
    store = BlockStore(str(tmp_path / "s"), "uint8")
    job = jobs.make_job(as_predictor(pred), Volume(np.zeros((2, 8, 8), np.uint8)), store, PredictOptions())
    assert job.device == "cpu"  # local threads share the predictor itself
    monkeypatch.setattr(jobs, "_remote_predictor", lambda p: ("k", None))
    monkeypatch.setattr(jobs, "_remote_raw", lambda r: ("r", "src", None))
    assert jobs.make_job(as_predictor(pred), Volume(np.zeros((2, 8, 8), np.uint8)), store, PredictOptions(),
                         remote=True).device == "cuda"
    seen = {}
    monkeypatch.setattr(jobs, "load_run", lambda run_dir, device, precision: seen.update(device=device) or pred)
    remote = jobs.BlockJob("k-gpu-test", str(tmp_path), None, "r", None, None, job.store, False, None, None,
                           device="cuda")
    jobs._load_predictor(remote)
    assert seen["device"] == "cuda"


# -- torch.compile: kernels cached in the user's cache folder ------------------------------------------------
def test_compile_caches_kernels_in_the_user_cache(tmp_path, monkeypatch):
    from workbench.inference import compute

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(torch, "compile", lambda model, dynamic: ("compiled", model))
    pred = SimpleNamespace(model=torch.nn.Conv2d(1, 1, 1), channel_names=["a"], predict=lambda b: b)
    assert compute.compile_predictor(pred)
    assert pred.model[0] == "compiled"
    assert compute.inductor_cache_dir() == tmp_path / "workbench" / "inductor"
    assert __import__("os").environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "workbench" / "inductor")
    assert (tmp_path / "workbench" / "inductor").is_dir()
