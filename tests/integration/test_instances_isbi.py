"""The graph methods on real serial-section EM (ISBI 2012 labels): object counts and the metrics against elf.

The prediction is made from the true neurites of two held-out sections (20-21): their affinities at the
2D training offsets, blurred and with noise, as a weak model would give. Needs ``WORKBENCH_DATA_DIR``
(``isbi2012/train-labels.tif``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from workbench.metrics import evaluate
from workbench.segmentation import segment

pytestmark = pytest.mark.integration

DATA = Path(os.environ.get("WORKBENCH_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
LABELS = DATA / "isbi2012" / "train-labels.tif"
OFFSETS_2D = [[0, -1, 0], [0, 0, -1], [0, -9, 0], [0, 0, -9]]


@pytest.fixture(scope="module")
def isbi():
    import tifffile
    from bioimage_cpp.affinities import compute_affinities
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.segmentation import expand_labels

    if not LABELS.exists():
        pytest.fail(f"ISBI 2012 labels missing at {LABELS} (set WORKBENCH_DATA_DIR)")
    gt = tifffile.imread(LABELS)[20:22]
    truth = np.zeros(gt.shape, np.int64)
    offset = 0
    for z in range(len(gt)):
        lab = label(gt[z] == 255, connectivity=1)
        truth[z] = np.where(lab > 0, lab + offset, 0)
        offset = int(truth[z].max())
    filled = np.stack([expand_labels(t, 10) for t in truth])
    affs, _ = compute_affinities(filled, OFFSETS_2D)
    affs = np.stack([ndi.gaussian_filter(c, (0, 1, 1)) for c in affs])
    affs = np.clip(affs + np.random.default_rng(0).normal(0, 0.25, affs.shape), 0, 1).astype(np.float32)
    return truth, affs


def counts(seg):
    return np.array([len(np.unique(s[s > 0])) for s in seg])


@pytest.mark.parametrize("method", ["multicut", "gasp"])
def test_default_object_count_within_a_factor_of_two(isbi, method):
    truth, affs = isbi
    seg = segment(affs, method, offsets=OFFSETS_2D)
    got, want = counts(seg), counts(truth)
    assert np.all(got >= want / 2) and np.all(got <= want * 2), (got, want)
    assert evaluate(seg, truth, kind="instances", ignore_label=0)["are"] < 0.2


def test_metrics_match_elf_on_real_labels(isbi):
    from elf.evaluation import cremi_score

    truth, affs = isbi
    seg = segment(affs, "gasp", offsets=OFFSETS_2D)
    r = evaluate(seg, truth, kind="instances", ignore_label=0)
    vis, vim, are, cremi = cremi_score(seg, truth, ignore_gt=[0])
    assert (r["voi_split"], r["voi_merge"], r["are_cremi"], r["cremi"]) == pytest.approx((vis, vim, are, cremi), abs=1e-6)


def test_the_cli_default_for_affinities_is_a_graph_method():
    from workbench.segmentation.options import SegmentMethod, default_method

    assert default_method("affinities") == SegmentMethod.GASP
    assert default_method("boundaries") == SegmentMethod.GASP
    assert default_method("semantic") == SegmentMethod.CC
