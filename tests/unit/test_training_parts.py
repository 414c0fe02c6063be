"""Targets, masked losses, patch sampling, validation split and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.training.augment import augment_batch
from workbench.training.config import AugmentConfig
from workbench.training.losses import masked_bce_dice, masked_ce_dice
from workbench.training.sampler import PatchSampler, split_validation
from workbench.training.targets import IGNORE_INDEX, affinity_target, boundary_target, semantic_target
from workbench.training.task import Task


def test_semantic_target_maps_classes_and_ignores_unlabelled():
    labels = torch.tensor([[[[0, 1, 2, 3]]]])
    target, mask = semantic_target(labels)
    assert target.tolist() == [[[[IGNORE_INDEX, 0, 1, 2]]]]
    assert mask.tolist() == [[[[0.0, 1.0, 1.0, 1.0]]]]


def test_boundary_target_on_two_touching_objects():
    lab = torch.tensor([[[[1, 1, 2, 2, 0]]]])
    target, mask = boundary_target(lab)
    assert target.tolist() == [[[[0, 1, 1, 1, IGNORE_INDEX]]]]  # 2 at x=3 touches 0: boundary
    assert mask.tolist() == [[[[1, 1, 1, 1, 0]]]]


def test_affinity_target_nearest_and_long_range():
    lab = torch.tensor([[[[1, 1, 2, 0, 2]]]])  # (B=1, Z=1, Y=1, X=5)
    aff, mask = affinity_target(lab, [[0, 0, -1], [0, 0, 2], [-1, 0, 0]])
    # offset -1 in x: pairs (x, x-1)
    assert aff[0, 0, 0, 0].tolist() == [0, 1, 0, 0, 0]
    assert mask[0, 0, 0, 0].tolist() == [0, 1, 1, 0, 0]
    # offset +2 in x: pairs (x, x+2)
    assert aff[0, 1, 0, 0].tolist() == [0, 0, 1, 0, 0]
    assert mask[0, 1, 0, 0].tolist() == [1, 0, 1, 0, 0]
    # z offset on a single slice: nothing valid
    assert mask[0, 2].sum() == 0


def test_task_for_2d_drops_z_offsets():
    task = Task.for_config("affinities", [], 2, [[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    assert task.offsets == [[0, -1, 0], [0, 0, -1]] and task.activation == "sigmoid"


def test_losses_give_unlabelled_voxels_exactly_zero_gradient():
    torch.manual_seed(0)
    labels = torch.zeros(2, 1, 6, 6, dtype=torch.long)
    labels[:, 0, 1:3, 1:4] = 1
    labels[:, 0, 4, :] = 2
    # semantic: softmax CE + Dice
    target, _ = semantic_target(labels)
    logits = torch.randn(2, 3, 6, 6, requires_grad=True)
    loss = masked_ce_dice(logits, target[:, 0])
    loss.backward()
    unlabelled = (labels[:, 0] == 0).unsqueeze(1).expand_as(logits)
    assert torch.count_nonzero(logits.grad[unlabelled]) == 0
    assert torch.count_nonzero(logits.grad[~unlabelled]) > 0
    # changing outputs where unlabelled leaves the loss unchanged
    changed = logits.detach().clone()
    changed[unlabelled] = 100.0
    assert masked_ce_dice(changed, target[:, 0]).item() == pytest.approx(loss.item(), abs=1e-6)
    # affinities: BCE + Dice with a mask
    aff, mask = affinity_target(labels, [[0, 0, -1], [0, -1, 0]])
    logits = torch.randn(aff[:, :, 0].shape, requires_grad=True)
    masked_bce_dice(logits, aff[:, :, 0], mask[:, :, 0]).backward()
    assert torch.count_nonzero(logits.grad[mask[:, :, 0] == 0]) == 0
    assert torch.count_nonzero(logits.grad[mask[:, :, 0] > 0]) > 0


def test_loss_is_small_for_a_perfect_prediction():
    target = torch.tensor([[[IGNORE_INDEX, 0, 1, 1]]])
    logits = torch.full((1, 2, 1, 4), -20.0)
    logits[0, 0, 0, 1] = logits[0, 1, 0, 2] = logits[0, 1, 0, 3] = 20.0
    assert masked_ce_dice(logits, target).item() < 1e-3


def _sparse(shape=(4, 40, 50)):
    labels = np.zeros(shape, np.uint8)
    labels[1, 5:8, 5:30] = 1  # a long stroke: many voxels
    labels[2, 30, 40] = 2  # a single voxel of class 2
    labels[3, 20:22, 10:12] = 3
    return labels


def test_sampler_returns_patches_with_labels_and_balances_classes(rng):
    labels = _sparse()
    raw = rng.random(labels.shape, dtype=np.float32)
    sampler = PatchSampler(raw, labels, (1, 16, 16))
    counts = {1: 0, 2: 0, 3: 0}
    for _ in range(300):
        r, lab = sampler.sample(rng, 1)
        assert r.shape == (1, 1, 16, 16) and lab.any()
        start = sampler.patch_start(rng)
        assert all(0 <= s <= v - p for s, v, p in zip(start, labels.shape, (1, 16, 16)))
        for c in counts:
            counts[c] += int((lab == c).any())
    # class 2 has 1 voxel, class 1 has 75: balanced sampling still shows each in about a third of the patches
    assert all(60 < n < 160 for n in counts.values()), counts


def test_sampler_raw_and_labels_aligned(rng):
    labels = _sparse()
    raw = labels.astype(np.float32) * 10 + 0.5
    sampler = PatchSampler(raw, labels, (2, 8, 8))
    r, lab = sampler.sample(rng, 16)
    np.testing.assert_array_equal(r, lab * 10 + 0.5)


def test_sampler_pads_when_patch_is_larger_than_volume(rng):
    labels = np.zeros((1, 10, 12), np.uint8)
    labels[0, 3, 4] = 1
    raw = rng.random(labels.shape, dtype=np.float32)
    sampler = PatchSampler(raw, labels, (3, 16, 16))
    r, lab = sampler.sample(rng, 2)
    assert r.shape == (2, 3, 16, 16) and (lab == 1).sum() == 2


def test_sampler_without_labels_is_an_error(rng):
    with pytest.raises(WorkbenchError, match="no labelled voxel"):
        PatchSampler(np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.uint8), (1, 8, 8))


def test_split_by_slices_and_by_strokes():
    labels = _sparse()
    train, val = split_validation(labels, val_slices=[3])
    assert not train[3].any() and (val[3] == labels[3]).all() and not val[:3].any()
    assert (train[:3] == labels[:3]).all()
    strokes = np.zeros((1, 30, 30), np.uint8)
    for i in range(5):
        strokes[0, 2 + 5 * i, 2:20] = 1
        strokes[0, 3 + 5 * i, 22:28] = 2
    train, val = split_validation(strokes, val_fraction=0.4, seed=1)
    assert val is not None and not np.any((train > 0) & (val > 0))
    assert ((train > 0) | (val > 0)).sum() == (strokes > 0).sum()
    for c in (1, 2):  # 2 of 5 strokes of each class held out
        assert (val == c).sum() == 2 * (strokes[0, 2] == c).sum() or (val == c).sum() == 2 * (strokes[0, 3] == c).sum()
    with pytest.raises(WorkbenchError, match="outside the volume"):
        split_validation(labels, val_slices=[9])


@pytest.mark.parametrize("z", [1, 4])
def test_augmentation_keeps_raw_and_labels_aligned(z):
    """Raw equals a function of the labels before augmentation; geometry must keep it so (intensity off)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(4, z, 24, 24, dtype=torch.long)
    labels[:, :, 4:12, 6:18] = 1
    labels[:, :, 14:20, 3:9] = 2
    raw = labels.float() * 10
    cfg = AugmentConfig(flips=True, rotate90=True, elastic=1.0, elastic_strength=3.0, gamma=0, contrast=0,
                        noise=0, blur=0, missing_section=0, misalignment=1.0)
    r, lab = augment_batch(raw, labels, cfg, g)
    assert r.shape == raw.shape and lab.dtype == torch.long
    assert set(lab.unique().tolist()) <= {0, 1, 2}
    # labels were warped by nearest neighbour, raw bilinearly: within half a step of each other, except in
    # the strip uncovered by a misalignment shift (labels 0 there)
    agree = (r - lab.float() * 10).abs() <= 5.0 + 1e-4
    assert agree.float().mean() > 0.97
    exact = (r - lab.float() * 10).abs() < 1e-3
    assert exact.float().mean() > 0.8
    assert not torch.equal(lab, labels)  # something happened
    # intensity augmentation changes raw only
    cfg2 = AugmentConfig(flips=False, rotate90=False, elastic=0, gamma=1, contrast=1, noise=1, blur=1,
                         missing_section=1.0 if z > 1 else 0, misalignment=0)
    r2, lab2 = augment_batch(raw, labels, cfg2, torch.Generator().manual_seed(1))
    assert torch.equal(lab2, labels) and not torch.equal(r2, raw)


def test_augmentation_is_reproducible_from_the_generator():
    raw = torch.rand(2, 3, 16, 16)
    labels = (raw > 0.5).long()
    a = augment_batch(raw, labels, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_batch(raw, labels, AugmentConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_volume_tiles_cover_the_volume_with_equal_tiles():
    from workbench.training.batchnorm import volume_tiles

    tiles = volume_tiles((3, 50, 70), (1, 32, 32))
    assert {tuple(s.stop - s.start for s in t) for t in tiles} == {(1, 32, 32)}
    covered = np.zeros((3, 50, 70), bool)
    for t in tiles:
        covered[t] = True
    assert covered.all() and len(tiles) == 3 * 2 * 3
    assert volume_tiles((2, 10, 10), (4, 64, 64)) == [(slice(0, 2), slice(0, 10), slice(0, 10))]  # clipped
    few = volume_tiles((3, 50, 70), (1, 32, 32), max_voxels=4 * 32 * 32, seed=1)
    assert len(few) == 4 and all(t in tiles for t in few) and few == volume_tiles((3, 50, 70), (1, 32, 32), 4 * 32 * 32, 1)


def test_recalibrated_batchnorm_statistics_are_those_of_the_volume():
    from workbench.training.batchnorm import (
        TileSampling,
        batchnorm_buffers,
        has_batchnorm,
        recalibrate_batchnorm,
    )

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    model = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(3))
    volume = np.random.default_rng(0).normal(2.0, 3.0, (4, 16, 16)).astype(np.float32)
    before = batchnorm_buffers(model)
    assert has_batchnorm(model) and set(before) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    info = recalibrate_batchnorm(model, volume, TileSampling((1, 16, 16), 2, batch_size=4), torch.device("cpu"))
    assert info["tiles"] == 4 and info["voxels"] == 4 * 16 * 16
    with torch.no_grad():
        feats = conv(torch.from_numpy(volume)[:, None])
    torch.testing.assert_close(model[1].running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, feats.var((0, 2, 3)), rtol=1e-3, atol=1e-4)
    assert model[1].momentum == 0.1 and not torch.equal(model[1].running_mean, before["1.running_mean"])
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.GroupNorm(1, 2))
    assert not has_batchnorm(plain) and recalibrate_batchnorm(plain, volume, TileSampling((1, 8, 8), 2), "cpu")["tiles"] == 0
