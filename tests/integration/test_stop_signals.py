"""``workbench train`` and ``workbench predict`` stop cleanly on SIGTERM, SIGINT and SIGHUP: at the next
iteration or block boundary, within 10 s, with exit code 128 + the signal's number, a line that says how to
continue, and state that ``--resume`` continues from (no iteration lost or repeated, no block predicted
twice). The real commands run as subprocesses on a tiny synthetic volume.
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
import tifffile

#: A stopped command must be gone this soon after the signal.
DEADLINE_SECONDS = 10.0
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


def _env() -> dict:
    return {**os.environ, "WORKBENCH_NO_REEXEC": "1", "OMP_NUM_THREADS": "1"}


def _workbench(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (code {proc.returncode}) before the signal: {err[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("the command did not get going in time")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen, sig: signal.Signals) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=DEADLINE_SECONDS + 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {DEADLINE_SECONDS + 20:.0f} s after {sig.name}")
    return proc.returncode, err, time.monotonic() - t0


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stop")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    labels = np.zeros_like(raw)
    labels[:, 5:15, 5:40] = 1
    labels[:, 40:50, 10:60] = 2
    tifffile.imwrite(root / "raw.tif", raw, metadata={"axes": "ZYX"})
    tifffile.imwrite(root / "labels.tif", labels, metadata={"axes": "ZYX"})
    return root / "raw.tif", root / "labels.tif"


def _metric_iterations(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_train_stops_with_a_checkpoint_and_resumes(volume, tmp_path, sig):
    raw, labels = volume
    run = tmp_path / "run"
    common = ["train", "--raw", str(raw), "--labels", str(labels), "--out", str(run), "--arch", "unet2d",
              "--option", "base_channels=4", "--option", "depth=2", "--patch", "1", "32", "32", "--batch", "2",
              "--no-progress", "--recipe", "none", "--iterations", "100000"]
    proc = _workbench(*common)
    _wait_for(lambda: len(_metric_iterations(run)) >= 2, proc)
    code, err, seconds = _stop(proc, sig)
    assert code == 128 + int(sig), err
    assert seconds < DEADLINE_SECONDS, f"{sig.name}: stopped after {seconds:.1f} s"
    assert f"stopped by {sig.name}" in err and "--resume" in err, err
    assert "Traceback" not in err, err
    import torch

    stopped_at = int(torch.load(run / "checkpoint.pt", weights_only=False, map_location="cpu")["iteration"])
    assert stopped_at >= 1
    before = _metric_iterations(run)

    resumed = subprocess.run([sys.executable, "-m", "workbench", *common[:-1], "3", "--resume"],
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = _metric_iterations(run)
    assert after[:len(before)] == before
    assert after == sorted(set(after)), "metrics repeat iterations after the resume"
    assert after[-1] == 3 if stopped_at < 3 else after[-1] == before[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_predict_stops_at_a_block_and_resumes(volume, tmp_path, sig):
    raw, labels = volume
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "workbench", "train", "--raw", str(raw), "--labels", str(labels),
                              "--out", str(run), "--arch", "unet2d", "--option", "base_channels=4", "--option",
                              "depth=2", "--patch", "1", "32", "32", "--batch", "2", "--iterations", "2",
                              "--no-progress", "--recipe", "none", "--calibration", "none"],
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert trained.returncode == 0, trained.stderr
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.random.default_rng(1).integers(0, 255, (64, 64, 64), dtype=np.uint8),
                     metadata={"axes": "ZYX"})
    out = tmp_path / "pred.zarr"
    common = ["predict", "--model", str(run), "--raw", str(big), "--out", str(out), "--block", "1", "64", "64",
              "--no-progress", "--no-tta"]
    proc = _workbench(*common)
    partial = Path(str(out) + ".partial")
    markers = partial / "_blocks_done"
    _wait_for(lambda: markers.is_dir() and any(not m.name.endswith(".tmp") for m in markers.iterdir()), proc)
    code, err, seconds = _stop(proc, sig)
    assert code == 128 + int(sig), err
    assert seconds < DEADLINE_SECONDS
    assert f"stopped by {sig.name}" in err and "--resume" in err and "Traceback" not in err, err
    assert partial.exists() and not out.exists()

    resumed = subprocess.run([sys.executable, "-m", "workbench", *common, "--resume"], capture_output=True,
                             text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert out.exists() and not partial.exists()
    computed = int(resumed.stdout.split(" blocks, ")[1].split(" computed")[0])
    assert 0 < computed < 64, resumed.stdout  # the stopped run's blocks were kept
