"""The project's VOI, adapted Rand error and CREMI score against python-elf's implementation (to 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.metrics import evaluate

elf_eval = pytest.importorskip("elf.evaluation", reason="python-elf is in the test extra")


def pairs(seed: int):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 7, (3, 24, 24))
    pred = np.where(rng.random(truth.shape) < 0.7, truth * 3 + 1, rng.integers(0, 12, truth.shape))
    return pred, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ignore", [None, 0])
def test_voi_are_cremi_match_elf(seed, ignore):
    pred, truth = pairs(seed)
    r = evaluate(pred, truth, kind="instances", ignore_label=ignore)
    ig = None if ignore is None else [ignore]
    vis, vim, are, cremi = elf_eval.cremi_score(pred, truth, ignore_gt=ig)
    assert r["voi_split"] == pytest.approx(vis, abs=1e-6)
    assert r["voi_merge"] == pytest.approx(vim, abs=1e-6)
    assert r["are_cremi"] == pytest.approx(are, abs=1e-6)
    assert r["cremi"] == pytest.approx(cremi, abs=1e-6)
    assert r["are_cremi"] == pytest.approx(elf_eval.rand_index(pred, truth, ignore_gt=ig)[0], abs=1e-6)
    split, merge = elf_eval.variation_of_information(pred, truth, ignore_gt=ig)
    assert (r["voi_split"], r["voi_merge"]) == pytest.approx((split, merge), abs=1e-6)


def test_are_conventions_differ_only_by_the_self_pairs():
    """``are`` (scikit-image: pairs of distinct voxels) and ``are_cremi`` (elf: every pair) from the same sums."""
    pred, truth = pairs(4)
    r = evaluate(pred, truth, kind="instances")
    n = truth.size
    _, t_counts = np.unique(truth, return_counts=True)
    _, p_counts = np.unique(pred, return_counts=True)
    _, j_counts = np.unique(truth * 100 + pred, return_counts=True)
    sa, sb, sab = (t_counts.astype(float) ** 2).sum(), (p_counts.astype(float) ** 2).sum(), (j_counts.astype(float) ** 2).sum()
    assert r["are"] == pytest.approx(1 - 2 * (sab - n) / (sa - n + sb - n), abs=1e-12)
    assert r["are_cremi"] == pytest.approx(1 - 2 * sab / (sa + sb), abs=1e-12)
    assert r["rand_precision"] == pytest.approx(sab / sb) and r["rand_recall"] == pytest.approx(sab / sa)


def test_perfect_and_merged():
    truth = np.repeat(np.arange(1, 5), 25).reshape(1, 10, 10)
    perfect = evaluate(truth * 7, truth, kind="instances")
    assert perfect["cremi"] == pytest.approx(0, abs=1e-12) and perfect["are_cremi"] == pytest.approx(0, abs=1e-12)
    merged = evaluate(np.ones_like(truth), truth, kind="instances")
    assert merged["rand_recall"] == pytest.approx(1) and merged["rand_precision"] == pytest.approx(0.25)
    assert merged["cremi"] == pytest.approx(np.sqrt(2.0 * 0.6))  # VOI merge 2 bits, ARE 1 - 2*0.25/1.25


def test_evaluate_cli_reports_the_cremi_score(tmp_path, capsys):
    import json

    import tifffile

    from workbench.cli import main

    pred, truth = (np.concatenate([x, x[:2]]) for x in pairs(5))  # 5 sections: not read as channels
    tifffile.imwrite(tmp_path / "pred.tif", pred.astype(np.uint16))
    tifffile.imwrite(tmp_path / "truth.tif", truth.astype(np.uint16))
    assert main(["evaluate", "--pred", str(tmp_path / "pred.tif"), "--truth", str(tmp_path / "truth.tif"),
                 "--kind", "instances", "--ignore-label", "0", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    vis, vim, are, cremi = elf_eval.cremi_score(pred, truth, ignore_gt=[0])
    assert scores["cremi"] == pytest.approx(cremi, abs=1e-6) and scores["are_cremi"] == pytest.approx(are, abs=1e-6)
