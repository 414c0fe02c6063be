"""Prediction on a real dask.distributed cluster (scheduler + 2 workers on 127.0.0.1, subprocesses).

Checks: the cluster result is bit-identical to the local one; a trained run is loaded on the workers
from its run dir; killing a worker mid-run still gives the identical, complete result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.inference import PredictOptions, open_prediction, predict_volume
from workbench.inference.output import MARKER_DIR, partial_path

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


class SlowConvPredictor:
    """A deterministic two-layer torch conv net that also sleeps per call (so a run lasts a few seconds)."""

    spatial_dims = 2
    out_channels = 2
    channel_names = ["a", "b"]
    halo = (0, 4, 4)

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self._net = None

    def _model(self):
        if self._net is None:
            import torch

            g = torch.Generator().manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                      torch.nn.Conv2d(8, 2, 3, padding=1))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            self._net = net.eval()
        return self._net

    def __getstate__(self):
        return {"delay": self.delay, "_net": None}

    def predict(self, block):
        import torch

        time.sleep(self.delay)
        with torch.inference_mode():
            x = torch.from_numpy(block.astype(np.float32) / 255.0)[:, None]
            return self._model()(x).softmax(1).movedim(1, 0).numpy()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers; yields (address, worker processes)."""
    d = tmp_path_factory.mktemp("dask")
    sched_file = d / "scheduler.json"
    env = dict(os.environ, WORKBENCH_NO_REEXEC="1")
    procs = []

    def start(args):
        p = subprocess.Popen([str(BIN / "dask"), *args], cwd=d, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=open(d / f"log{len(procs)}.txt", "wb"))
        procs.append(p)
        return p

    start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)])
    deadline = time.monotonic() + 30
    while not sched_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sched_file.exists(), "dask scheduler did not start"
    address = json.loads(sched_file.read_text())["address"]
    workers = [
        start(["worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}", "--death-timeout", "60",
               "--local-directory", str(d / f"w{i}")])
        for i in range(2)
    ]
    from distributed import Client

    with Client(address, timeout=20) as client:
        client.wait_for_workers(2, timeout=60)
    try:
        yield address, workers
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def raw_zarr(tmp_path, rng):
    import zarr

    from workbench.io import open_volume

    data = rng.integers(0, 256, size=(6, 96, 96)).astype(np.uint8)
    arr = zarr.create_array(str(tmp_path / "raw.zarr"), shape=data.shape, chunks=(2, 48, 48), dtype="uint8",
                            zarr_format=2)
    arr[...] = data
    return open_volume(tmp_path / "raw.zarr")


def _register_by_value():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_cluster_equals_local_and_survives_a_killed_worker(cluster, raw_zarr, tmp_path):
    address, workers = cluster
    _register_by_value()
    block = (2, 32, 32)
    local = predict_volume(SlowConvPredictor(), raw_zarr, tmp_path / "local.zarr",
                           PredictOptions(block_shape=block))
    remote = predict_volume(SlowConvPredictor(), raw_zarr, tmp_path / "remote.zarr",
                            PredictOptions(block_shape=block, scheduler=address))
    assert remote.complete
    expected = open_prediction(local.path)[...]
    np.testing.assert_array_equal(open_prediction(remote.path)[...], expected)

    # kill one worker (nanny and process) once some blocks are done
    import threading

    out = tmp_path / "killed.zarr"
    markers = partial_path(out) / MARKER_DIR
    killed = threading.Event()

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if markers.is_dir() and len(list(markers.iterdir())) >= 4:
                os.killpg(workers[0].pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    result = predict_volume(SlowConvPredictor(delay=0.15), raw_zarr, out,
                            PredictOptions(block_shape=block, scheduler=address))
    t.join(5)
    assert killed.is_set(), "the worker was not killed during the run"
    assert result.complete and result.blocks_done == result.blocks_total == 27
    np.testing.assert_array_equal(open_prediction(out)[...], expected)


def test_trained_run_is_loaded_on_the_workers(cluster, raw_zarr, tmp_path):
    from workbench.training import AugmentConfig, TrainConfig, Trainer, load_run

    address, workers = cluster
    alive = [w for w in workers if w.poll() is None]
    assert alive, "no worker left"
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 255, (2, 64, 64)).astype(np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[:, 5:10] = 1
    labels[:, 40:45] = 2
    run = tmp_path / "run"
    cfg = TrainConfig(arch="unet2d", arch_options={"depth": 2, "base_channels": 4}, iterations=1, batch_size=1,
                      patch_shape=[1, 64, 64], augment=AugmentConfig.none(), device="cpu", prefetch=0)
    Trainer(cfg, raw, labels, run).run()
    predictor = load_run(run, device="cpu")
    block = (2, 48, 48)
    local = predict_volume(predictor, raw_zarr, tmp_path / "local.zarr", PredictOptions(block_shape=block))
    remote = predict_volume(predictor, raw_zarr, tmp_path / "remote.zarr",
                            PredictOptions(block_shape=block, scheduler=address))
    assert remote.complete
    np.testing.assert_array_equal(open_prediction(remote.path)[...], open_prediction(local.path)[...])
