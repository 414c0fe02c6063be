"""Self-supervised warm-up: the pretext corruptions and targets, the warm-up run, and a fine-tune from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_training import TINY_UNET, tiny_training_data

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.training import TrainConfig, Trainer
from workbench.training.pretext import (
    PretextConfig,
    PretextTask,
    blind_spots,
    is_pretext_run,
    masked_blocks,
    pretext_trainer,
    pretrain,
)

TINY = dict(arch_options=dict(TINY_UNET), batch_size=2, patch_shape=[1, 16, 16], log_every=1, val_every=2,
            checkpoint_seconds=3600, warmup=2, device="cpu")


def _data(shape=(3, 32, 36), seed=0, classes=2):
    return tiny_training_data(shape, seed, classes)


def _batch(shape=(2, 1, 40, 48)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(1))


# -- corruptions and targets (unit) -----------------------------------------------------------------------------
def test_masked_blocks_hide_whole_blocks_at_the_ratio_and_fill_them_with_the_patch_mean():
    raw = _batch((4, 1, 64, 64))
    inp, target, mask = masked_blocks(raw, 0.5, 8, torch.Generator().manual_seed(0))
    assert torch.equal(target, raw)
    hidden = mask.bool()
    assert 0.35 < hidden.float().mean() < 0.65
    blocks = hidden.reshape(4, 1, 8, 8, 8, 8)  # every 8 x 8 block is hidden entirely or not at all
    assert torch.all(blocks.all(dim=(3, 5)) | ~blocks.any(dim=(3, 5)))
    mean = raw.mean(dim=(1, 2, 3), keepdim=True).expand_as(raw)
    assert torch.equal(inp[hidden], mean[hidden]) and torch.equal(inp[~hidden], raw[~hidden])


def test_blind_spots_swap_chosen_voxels_for_a_near_neighbour_and_nothing_else():
    raw = _batch((2, 1, 40, 48))
    radius = 2
    inp, target, mask = blind_spots(raw, 0.05, radius, torch.Generator().manual_seed(0))
    chosen = mask.bool()
    assert torch.equal(target, raw) and torch.equal(inp[~chosen], raw[~chosen])
    assert 0.02 < chosen.float().mean() < 0.08
    for b, z, y, x in chosen.nonzero().tolist()[:200]:  # the value comes from within the radius, never itself
        window = raw[b, z, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        assert (window == inp[b, z, y, x]).any()
        assert inp[b, z, y, x] != raw[b, z, y, x]  # random floats: another voxel has another value


def test_corruptions_are_reproducible_from_the_generator():
    raw = _batch()
    a = blind_spots(raw, 0.1, 2, torch.Generator().manual_seed(3))
    b = blind_spots(raw, 0.1, 2, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_pretext_loss_looks_only_at_the_hidden_voxels():
    task = PretextTask()
    target = torch.zeros(1, 1, 4, 4)
    mask = torch.zeros_like(target)
    mask[..., 0, 0] = 1
    logits = torch.full_like(target, 5.0)
    logits[..., 0, 0] = 2.0
    assert float(task.loss(logits, target, mask)) == pytest.approx(4.0)  # only the one masked voxel: 2 ** 2
    assert task.out_channels == 1


def test_pretext_options_are_checked():
    with pytest.raises(WorkbenchError, match="unknown pretext options"):
        PretextConfig.from_dict({"ratio": 0.5})
    with pytest.raises(WorkbenchError, match="pretext task"):
        PretextConfig(task="contrastive")
    with pytest.raises(WorkbenchError, match="mask_ratio"):
        PretextConfig(mask_ratio=1.5)


def test_a_forest_cannot_be_warmed_up(tmp_path):
    raw, _ = _data()
    with pytest.raises(WorkbenchError, match="not a neural network"):
        pretext_trainer(raw, tmp_path / "run", "forest", iterations=2)


# -- the warm-up run and a fine-tune from it (integration, tiny) ------------------------------------------------------
@pytest.mark.parametrize("kind", ["masked", "blind-spot"])
def test_warm_up_then_fine_tune(tmp_path, kind):
    raw, labels = _data()
    warm = tmp_path / "warm"
    trainer = pretrain(raw, warm, "unet2d", pretext=kind, iterations=20, **TINY)
    assert trainer.iteration == 20 and is_pretext_run(warm)
    history = [json.loads(line) for line in (warm / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(h["loss"]) for h in history) and any("val_loss" in h for h in history)
    assert json.loads((warm / "config.json").read_text())["pretext"]["task"] == kind

    fine = Trainer(TrainConfig(arch="unet2d", iterations=4, init=str(warm), val_slices=[2], **TINY), raw, labels,
                   tmp_path / "fine")
    assert "output head re-initialised for 2 channels" in fine.init_weights.note
    fine.run()
    first = json.loads((tmp_path / "fine" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["iteration"] == 0 and "re-initialised" in first["init"] and "val_loss" in first
    # the encoder and decoder are the warm-up's, the head is new
    warm_state = torch.load(warm / "checkpoint.pt", weights_only=True)["model"]
    before = fine.init_weights.weights
    assert not any(k.startswith("head.") for k in before)
    assert all(torch.equal(before[k], warm_state[k]) for k in before)


def test_pretrain_command_and_a_warm_up_is_no_predictor(tmp_path, capsys):
    raw, labels = _data()
    import tifffile

    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    out = tmp_path / "warm"
    assert main(["pretrain", "--raw", str(tmp_path / "raw.tif"), "--arch", "unet2d", "--out", str(out),
                 "--iterations", "3", "--batch", "2", "--patch", "1", "16", "16", "--option", "depth=2",
                 "--option", "base_channels=4", "--device", "cpu", "--no-progress"]) == 0
    assert "fine-tune it: workbench train --init" in capsys.readouterr().out
    code = main(["predict", "--model", str(out), "--raw", str(tmp_path / "raw.tif"), "--out", str(tmp_path / "p.zarr")])
    assert code == 2 and "warm-up run reconstructs the image" in capsys.readouterr().err
    code = main(["export", "--model", str(out), "--format", "torchscript", str(tmp_path / "m.pt")])
    assert code == 2 and "fine-tune it" in capsys.readouterr().err
    code = main(["pretrain", "--raw", str(tmp_path / "raw.tif"), "--arch", "forest", "--out", str(out)])
    assert code == 2 and "nothing to warm up" in capsys.readouterr().err
