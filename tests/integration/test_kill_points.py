"""Crash-resume: a child process annotates, saves the project, writes checkpoints and segmentations and is
killed with SIGKILL at a random moment, over and over; after every kill the project must open and every
write the child acknowledged (an ``ACK`` line printed after the call returned) must be there.

Run as a script (``python test_kill_points.py child MODE ROOT``) it is the child; the benchmark
``benchmarks/bench_robustness.py`` runs :func:`kill_loop` with more kill points.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

SHAPE = (6, 48, 48)  # the project volume
CELL = 8  # each operation fills its own CELL x CELL box of one slice, so every acknowledgement is checkable
MODES = ("annotate", "checkpoint", "segment", "mesh")


# ---------------------------------------------------------------------------------------------- the child
def _box(k: int) -> tuple[list[int], list[int]]:
    per_slice = (SHAPE[1] // CELL) * (SHAPE[2] // CELL)
    z, cell = (k // per_slice) % SHAPE[0], k % per_slice
    y, x = (cell // (SHAPE[2] // CELL)) * CELL, (cell % (SHAPE[2] // CELL)) * CELL
    return [z, y, x], [z + 1, y + CELL, x + CELL]


def _ack(*words) -> None:
    """One acknowledgement line, written in one call (``print`` of several arguments writes each apart, and a
    kill between two writes would leave half a line)."""
    sys.stdout.write(" ".join(["ACK", *map(str, words)]) + "\n")
    sys.stdout.flush()


def _child_annotate(root: Path) -> None:
    """Fill boxes (journal appends + undo patches), undo some, import whole volumes, set the project state."""
    from workbench.project import Project

    project = Project.open(root)
    store = project.annotations
    rng = random.Random(os.getpid())
    print("READY", flush=True)
    while True:
        k = store._shared.next_id  # the next operation's id: one box per id
        r = rng.random()
        if r < 0.1 and store.can_undo():
            edit = store.undo()
            _ack("undo", edit.op_id, json.dumps(store.history()[-1]["undoes"]))
        elif r < 0.13:  # a whole-volume edit (a snapshot and two renames)
            labels = store.read()
            edit = store.import_labels(labels)
            _ack("import", edit.op_id)
        elif r < 0.25:
            project.state["counter"] = k
            _ack("state", k)
        else:
            label = 1 + k % 2
            start, stop = _box(k)
            edit = store.fill_box(start, stop, label)
            _ack("fill", edit.op_id, label)


def _child_checkpoint(root: Path) -> None:
    """Write checkpoints, the run config and metrics lines as a training run does."""
    import torch

    from workbench.training.checkpoint import load_checkpoint, save_checkpoint
    from workbench.training.config import TrainConfig

    run = root / "run"
    run.mkdir(exist_ok=True)
    start = 0
    if (run / "checkpoint.pt").exists():
        start = int(load_checkpoint(run / "checkpoint.pt")["iteration"]) + 1
    print("READY", flush=True)
    weights = torch.randn(64, 256)
    for it in range(start, start + 100000):
        TrainConfig(arch="unet2d", iterations=it + 1).save(run / "config.json")
        _ack("config", it + 1)
        save_checkpoint({"iteration": it, "weights": weights + it, "arch": "unet2d"}, run / "checkpoint.pt")
        _ack("checkpoint", it)


def _child_segment(root: Path) -> None:
    """Write the segmentation of a stored prediction again and again (``overwrite``)."""
    from workbench.segmentation import SegmentOptions, segment_prediction

    options = SegmentOptions(overwrite=True, threshold=0.5)
    segment_prediction(root / "pred.zarr", root / "warm.zarr", options)  # the lazy imports, before the kills
    print("READY", flush=True)
    n = 0
    while True:
        segment_prediction(root / "pred.zarr", root / "seg.zarr", options)
        _ack("segment", n)
        n += 1


def _child_mesh(root: Path) -> None:
    """Write the meshes of a stored segmentation again and again into one mesh folder (rewrites)."""
    from workbench.meshes import write_meshes

    write_meshes(root / "seg.zarr", root / "warm")  # the lazy imports, before the kills
    print("READY", flush=True)
    n = 0
    while True:
        write_meshes(root / "seg.zarr", root / "meshes")
        _ack("mesh", n)
        n += 1


def child(mode: str, root: str) -> None:
    {"annotate": _child_annotate, "checkpoint": _child_checkpoint, "segment": _child_segment,
     "mesh": _child_mesh}[mode](Path(root))


# ---------------------------------------------------------------------------------------------- the parent
@dataclass
class KillLoop:
    """What a kill loop saw: kill points tried, acknowledgements checked, losses found (with what was lost)."""

    kills: int = 0
    acks: int = 0
    losses: list[str] = field(default_factory=list)


def make_setup(root: Path, mode: str) -> None:
    """The project (annotate), nothing (checkpoint) or a small stored prediction (segment) the child needs."""
    if mode == "annotate":
        from workbench.project import Project

        Project.create(root, np.zeros(SHAPE, dtype=np.uint8))
    elif mode == "checkpoint":
        root.mkdir(parents=True)
    elif mode == "mesh":
        import zarr

        from workbench.meshes import write_meshes

        root.mkdir(parents=True)
        seg = np.zeros((8, 64, 64), np.uint32)
        for k in range(12):  # 12 boxes of different sizes
            y, x = 4 + (k // 4) * 20, 4 + (k % 4) * 15
            seg[1:7 - k % 3, y:y + 6 + k % 5, x:x + 5 + k % 4] = k + 1
        zarr.save_array(str(root / "seg.zarr"), seg)
        write_meshes(root / "seg.zarr", root / "reference")
    else:
        from workbench.inference import PredictOptions, predict_volume

        class Smooth:
            out_channels = 1

            def predict(self, block):
                return (block[None].astype(np.float32) / 255.0)

        root.mkdir(parents=True)
        raw = np.random.default_rng(0).integers(0, 255, (4, 96, 96), dtype=np.uint8)
        predict_volume(Smooth(), raw, root / "pred.zarr", PredictOptions(block_shape=(4, 96, 96)))


def _check_annotate(root: Path, acks: list[list[str]], loop: KillLoop) -> None:
    import workbench.annotations.store as store_mod
    from workbench.project import Project

    store_mod._SHARED.clear()  # open it as a new process would (recovery runs on the first open)
    project = Project.open(root)
    store = project.annotations
    labels = store.read()
    ids = {rec["id"]: rec for rec in store.history()}
    undone = {rec["undoes"] for rec in ids.values() if rec.get("op") == "undo"}
    undos = [(rec["id"], rec["undoes"]) for rec in ids.values() if rec.get("op") == "undo"]

    def overwritten_by_undo(op: int) -> bool:
        """A later undo of an older edit of the same box (or of a whole-volume import) legitimately took the
        box back: a refill of an already labelled box changes nothing, so it is not on the undo stack and the
        undo reaches the edit that labelled the box first."""
        return any(uid > op and (_box(t) == _box(op) or ids.get(t, {}).get("op") == "import") for uid, t in undos)

    for words in acks:
        kind = words[0]
        if kind == "fill":
            op, label = int(words[1]), int(words[2])
            if op not in ids:
                loop.losses.append(f"fill {op} missing from the journal")
            elif op not in undone and not overwritten_by_undo(op):
                start, stop = _box(op)
                box = labels[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
                if not np.all(box == label):
                    loop.losses.append(f"fill {op}: labels {np.unique(box).tolist()} instead of {label}")
        elif kind in ("undo", "import"):
            if int(words[1]) not in ids:
                loop.losses.append(f"{kind} {words[1]} missing from the journal")
            if kind == "undo":
                target = int(words[2])
                start, stop = _box(target)
                redone = [r for r in ids.values() if r.get("op") == "undo" and r["undoes"] == target]
                box = labels[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
                first_in_box = target < SHAPE[0] * (SHAPE[1] // CELL) * (SHAPE[2] // CELL)
                if redone and first_in_box and ids.get(target, {}).get("op") == "fill_box" and np.any(box):
                    loop.losses.append(f"undo of {target}: the box still holds labels")
        elif kind == "state":
            if int(project.state.get("counter", -1)) < int(words[1]):
                loop.losses.append(f"state counter {project.state.get('counter')} < acknowledged {words[1]}")
        loop.acks += 1


def _check_checkpoint(root: Path, acks: list[list[str]], loop: KillLoop) -> None:
    from workbench.training.checkpoint import load_checkpoint
    from workbench.training.config import TrainConfig

    run = root / "run"
    last_ckpt = max((int(w[1]) for w in acks if w[0] == "checkpoint"), default=None)
    last_config = max((int(w[1]) for w in acks if w[0] == "config"), default=None)
    if last_ckpt is not None:
        state = load_checkpoint(run / "checkpoint.pt")
        if int(state["iteration"]) < last_ckpt:
            loop.losses.append(f"checkpoint at {state['iteration']} < acknowledged {last_ckpt}")
    if last_config is not None and TrainConfig.load(run / "config.json").iterations < last_config:
        loop.losses.append(f"config.json older than acknowledged {last_config}")
    leftovers = [p.name for p in run.glob(".*.tmp")] if run.exists() else []
    if len(leftovers) > 1:  # at most the one write in flight when killed (removed by the next save)
        loop.losses.append(f"temporary files pile up: {leftovers}")
    loop.acks += len(acks)


def _check_segment(root: Path, acks: list[list[str]], loop: KillLoop) -> None:
    import zarr

    seg = root / "seg.zarr"
    if seg.exists():
        info = dict(zarr.open_group(str(seg), mode="r").attrs).get("workbench", {})
        if not info.get("complete"):
            loop.losses.append("an incomplete segmentation under the final name")
        np.asarray(zarr.open_array(str(seg / "0"), mode="r")[:])
    elif acks or loop.acks:
        loop.losses.append("the segmentation vanished after it was acknowledged")
    loop.acks += len(acks)


def _check_mesh(root: Path, acks: list[list[str]], loop: KillLoop) -> None:
    """Once a pass was acknowledged, every object's mesh reads and equals the reference; none is ever wrong."""
    from workbench.meshes import MeshStore

    reference, store = MeshStore(root / "reference"), MeshStore(root / "meshes")
    done = bool(acks) or loop.acks > 0
    if (root / "meshes" / "info").exists() and "@type" not in store.info():
        loop.losses.append("the mesh folder's info is unreadable")
    for oid in reference.ids():
        mesh, want = store.read(oid), reference.read(oid)
        if mesh is None:
            if done:
                loop.losses.append(f"mesh {oid} gone after a pass was acknowledged")
        elif not (np.array_equal(mesh.vertices, want.vertices) and np.array_equal(mesh.faces, want.faces)):
            loop.losses.append(f"mesh {oid} reads but differs from the reference")
    frags = len(list((root / "meshes").glob("*.frag"))) if (root / "meshes").exists() else 0
    if frags > len(reference.ids()) + 1:  # at most the one fragment in flight when killed
        loop.losses.append(f"fragments pile up: {frags} for {len(reference.ids())} objects")
    loop.acks += len(acks)


CHECKS = {"annotate": _check_annotate, "checkpoint": _check_checkpoint, "segment": _check_segment,
          "mesh": _check_mesh}


def kill_loop(root: Path, mode: str, kills: int, max_delay: float = 0.5, seed: int = 0) -> KillLoop:
    """Start the child ``kills`` times on ``root``, SIGKILL it after a random delay, check after each kill."""
    rng = random.Random(seed)
    loop = KillLoop()
    make_setup(root, mode)
    env = dict(os.environ, WORKBENCH_NO_REEXEC="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, __file__, "child", mode, str(root)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        first = proc.stdout.readline()
        if first.strip() != "READY":
            proc.kill()
            raise RuntimeError(f"child did not start: {first!r} {proc.stderr.read()[-2000:]}")
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        if proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"child ended on its own ({proc.returncode}): {err[-2000:]}")
        complete = out if out.endswith("\n") else out[: out.rfind("\n") + 1]  # a line cut by the kill is no ack
        acks = [line.split()[1:] for line in complete.splitlines() if line.startswith("ACK ")]
        loop.kills += 1
        CHECKS[mode](root, acks, loop)
    return loop


#: kill points per mode in the test (the benchmark runs more) and the longest wait before the kill (s)
TEST_KILLS = {"annotate": (12, 0.4), "checkpoint": (3, 0.4), "segment": (5, 0.5), "mesh": (8, 0.6)}


@pytest.mark.parametrize("mode", MODES)
def test_nothing_acknowledged_is_lost_after_kill_9(tmp_path, mode):
    kills, max_delay = TEST_KILLS[mode]
    loop = kill_loop(tmp_path / "p", mode, kills, max_delay=max_delay, seed=kills)
    assert loop.kills == kills
    assert loop.acks > 0, "the child acknowledged nothing before it was killed"
    assert loop.losses == []


def test_resuming_twice_continues_the_metrics_without_repeating_iterations(tmp_path):
    """Two kills, two resumes: each killed part logged past its checkpoint (a cut line too); the metrics
    then run 1..N once each, the killed parts' extra lines gone."""
    from workbench.training import AugmentConfig, TrainConfig, Trainer

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (2, 32, 32)).astype(np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[:, 2:6] = 1
    labels[:, 20:24] = 2

    def config(n):
        return TrainConfig(arch="unet2d", arch_options={"depth": 2, "base_channels": 4}, iterations=n,
                           batch_size=1, patch_shape=[1, 32, 32], augment=AugmentConfig.none(), device="cpu",
                           prefetch=0, log_every=1, schedule="constant", bn_recalibration=False)

    run = tmp_path / "run"
    metrics = run / "metrics.jsonl"
    Trainer(config(3), raw, labels, run).run()
    for n in (5, 8):
        done = int(json.loads(metrics.read_text().splitlines()[-1])["iteration"])
        with open(metrics, "a") as f:  # what the killed part logged after its last checkpoint
            f.write("".join(json.dumps({"iteration": done + k, "loss": -1.0}) + "\n" for k in (1, 2)))
            f.write(f'{{"iteration": {done + 3}, "lo')
        Trainer(config(n), raw, labels, run, resume=True).run()
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(1, 9))
    assert all(r["loss"] != -1.0 for r in records)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    child(sys.argv[2], sys.argv[3])
