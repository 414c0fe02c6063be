"""Right by default: the recipe chosen from the labels, the class-prior calibration, the stroke-wise validation
split and the test-time-augmentation choice (``workbench.training.{recipe,calibration,test_time,sampler}``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tiny_training import TINY_UNET, tiny_training_data
from workbench.cli import main
from workbench.training.calibration import Calibration, choose_mode, logit_bias, proportions
from workbench.training.config import TrainConfig
from workbench.training.recipe import LabelStats, choose_recipe, label_stats
from workbench.training.sampler import split_validation


# -- calibration maths ----------------------------------------------------------------------------------
def test_logit_bias_moves_posteriors_from_the_training_to_the_target_proportions():
    from workbench.training.semisupervised import adjust_to_prior

    train, target = [0.5, 0.5], [0.9, 0.1]
    bias = np.array(logit_bias(train, target))
    assert abs(bias.sum()) < 1e-9 and bias[0] > 0 > bias[1]
    logits = np.random.default_rng(0).normal(size=(2, 50))
    p = np.exp(logits) / np.exp(logits).sum(0)
    q = np.exp(logits + bias[:, None])
    q /= q.sum(0)
    np.testing.assert_allclose(q, adjust_to_prior(p, train, target), rtol=1e-5, atol=1e-6)  # Bayes' rule
    assert logit_bias([0.3, 0.7], [0.3, 0.7]) == pytest.approx([0.0, 0.0])


def test_proportions_are_clipped_and_normalised():
    p = proportions([0, 10, 30])
    assert p.sum() == pytest.approx(1) and p.min() > 0 and p[2] == pytest.approx(0.75, rel=1e-3)


def test_choose_mode_dense_undoes_sampling_and_sparse_corrects_only_a_rare_class():
    assert choose_mode([0.95, 0.05], [0.7, 0.3], None, dense=True)[0] == "sampling"
    assert choose_mode([0.7, 0.3], [0.7, 0.3], None, dense=True)[0] == "none"
    mode, reason = choose_mode([0.5, 0.5], [0.5, 0.5], [0.95, 0.05], dense=False)
    assert mode == "prior" and "class 2" in reason and "5.0%" in reason
    # membranes: over-represented by the scribbles but not rare in the volume -> left alone
    assert choose_mode([0.5, 0.5], [0.5, 0.5], [0.25, 0.75], dense=False)[0] == "none"
    assert choose_mode([0.5, 0.5], [0.5, 0.5], None, dense=False)[0] == "none"
    # an EM estimate the model's own prediction contradicts (an undertrained model) is not followed
    assert choose_mode([0.5, 0.5], [0.6, 0.4], [0.02, 0.98], dense=False, predicted_share=[0.59, 0.41])[0] == "none"
    assert choose_mode([0.5, 0.5], [0.5, 0.5], [0.95, 0.05], dense=False, predicted_share=[0.9, 0.1])[0] == "prior"


def test_calibration_round_trips_and_ignores_damaged_entries():
    cal = Calibration("prior", [0.5, -0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.8, 0.2], "why")
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal and cal.active()
    assert Calibration.from_dict(None) is None and Calibration.from_dict({"bias": 1, "nonsense": 2}) is not None
    assert Calibration.from_dict({"mode": "none", "unexpected": 1}).active() is False


# -- stroke-wise validation split -----------------------------------------------------------------------
def _strokes(seed: int = 0):
    """Labels (4, 64, 64) with many separate short strokes of classes 1 and 2."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((4, 64, 64), np.uint8)
    for i in range(40):
        z, y, x = rng.integers(4), rng.integers(2, 60), rng.integers(2, 50)
        labels[z, y, x:x + rng.integers(3, 12)] = 1 + i % 2
    return labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_split_never_puts_pixels_of_one_stroke_on_both_sides(seed):
    from scipy import ndimage as ndi

    labels = _strokes(seed)
    train, val = split_validation(labels, val_fraction=0.2, seed=seed)
    assert val is not None and not np.any((train > 0) & (val > 0))
    np.testing.assert_array_equal(np.maximum(train, val), labels)  # nothing lost, nothing invented
    for c in (1, 2):
        comp, n = ndi.label(labels == c)
        for i in range(1, n + 1):
            inside = comp == i
            assert (val[inside] > 0).all() or (val[inside] == 0).all(), f"stroke {i} of class {c} split"


# -- the recipe -----------------------------------------------------------------------------------------
def test_label_stats_counts_share_balance_and_strokes():
    labels = _strokes()
    st = label_stats(labels)
    assert st.sparse and st.labelled_fraction == pytest.approx((labels > 0).mean())
    assert sum(st.class_fractions) == pytest.approx(1) and len(st.strokes) == 2 and min(st.strokes) >= 10


def test_sparse_labels_get_the_narrow_unet_and_keep_every_stroke_for_training():
    cfg = TrainConfig(arch="unet2d")
    recipe = choose_recipe(cfg, LabelStats(0.01, [0.5, 0.5], [40, 35], (20, 512, 512)))
    recipe.apply(cfg)
    assert cfg.arch_options == {"base_channels": 8} and cfg.val_fraction == 0 and not cfg.val_slices
    line = recipe.summary()
    assert line.startswith("recipe: sparse labels (1.00% of the voxels): half-width") and "\n" not in line


def test_the_recipe_leaves_the_smoothness_loss_to_the_user():
    sparse = LabelStats(0.01, [0.5, 0.5], [40, 35], (20, 512, 512))
    assert choose_recipe(TrainConfig(arch="unet2d"), sparse).apply(TrainConfig(arch="unet2d")).crf_weight == 0.0
    cfg = TrainConfig(arch="unet2d", crf_weight=0.5)
    assert choose_recipe(cfg, sparse, {"crf_weight"}).apply(cfg).crf_weight == 0.5


def test_the_recipe_leaves_what_the_user_set_and_dense_labels_alone():
    cfg = TrainConfig(arch="unet2d", arch_options={"depth": 3})
    choose_recipe(cfg, LabelStats(0.01, [0.5, 0.5], [40, 40], (20, 64, 64)), {"arch_options"}).apply(cfg)
    assert cfg.arch_options == {"depth": 3}
    cfg = TrainConfig(arch="unet2d", init="some-run")  # a model to start from keeps its width
    assert "arch_options" not in choose_recipe(cfg, LabelStats(0.01, [0.5, 0.5], [40, 40], (20, 64, 64))).changes
    cfg = TrainConfig(arch="unet2d")
    recipe = choose_recipe(cfg, LabelStats(1.0, [0.96, 0.04], [10_000, 50], (20, 64, 64)))
    recipe.apply(cfg)
    assert cfg.arch_options == {} and "dense labels" in recipe.summary() and "class 2 under 10 %" in recipe.summary()


# -- end to end: the hooks and the CLI ------------------------------------------------------------------
def _train(tmp_path, raw, labels, **kw):
    from workbench.training import Trainer

    cfg = TrainConfig(arch="unet2d", arch_options=dict(TINY_UNET), iterations=4, device="cpu", precision="fp32",
                      batch_size=2, patch_shape=[1, 32, 32], **kw)
    t = Trainer(cfg, raw, labels, tmp_path / "run")
    t.run()
    return t


def test_training_fits_a_calibration_the_predictor_applies(tmp_path):
    from workbench.training import load_run

    raw, labels = tiny_training_data()
    t = _train(tmp_path, raw, labels, calibration="sampling")
    cal = t.calibration
    assert cal.mode == "sampling" and len(cal.bias) == 2 and sum(cal.train_prior) == pytest.approx(1)
    p = load_run(tmp_path / "run", device="cpu")
    assert p.calibration == cal
    probs = p.predict(raw)
    p._bias = None  # the same model without its calibration
    plain = p.predict(raw)
    bias = np.array(cal.bias)[:, None, None, None]
    expected = np.exp(np.log(plain) + bias)
    expected /= expected.sum(0, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=2e-4)


def test_calibration_none_changes_nothing_and_prior_estimates_from_unlabelled_voxels(tmp_path):
    raw, labels = tiny_training_data()
    assert _train(tmp_path / "a", raw, labels, calibration="none").calibration.active() is False
    cal = _train(tmp_path / "b", raw, labels, calibration="prior").calibration
    assert cal.mode == "prior" and cal.data_prior is not None and sum(cal.data_prior) == pytest.approx(1)


def test_a_run_with_validation_records_whether_tta_pays(tmp_path):
    from workbench.training import load_run

    raw, labels = tiny_training_data((3, 64, 64))
    labels[:] = 0
    labels[:, 4:60:6, 4:60] = 1  # many separate strokes: a stroke split is possible
    labels[:, 4:60:6, 30:34] = 2
    t = _train(tmp_path, raw, labels, val_fraction=0.3)
    d = t.prediction_defaults
    assert set(d) == {"tta", "val_ce", "val_ce_tta", "reason"} and d["val_ce"] > 0
    assert d["tta"] == (d["val_ce_tta"] < d["val_ce"] * 0.98)
    assert load_run(tmp_path / "run", device="cpu").recommended_tta is d["tta"]


@pytest.mark.parametrize("dense", [False, True])
def test_without_validation_tta_follows_the_rule_for_sparse_labels(tmp_path, dense):
    from workbench.training import load_run

    raw, labels = tiny_training_data((3, 64, 64))
    if dense:
        labels = np.where(raw > 150, 2, 1).astype(np.uint8)
    t = _train(tmp_path, raw, labels)
    assert t.prediction_defaults["tta"] is (not dense) and "labels" in t.prediction_defaults["reason"]
    assert load_run(tmp_path / "run", device="cpu").recommended_tta is (not dense)


def test_cli_train_says_its_recipe_and_bad_calibration_is_one_line(tmp_path, capsys):
    import tifffile

    raw, labels = tiny_training_data((8, 64, 64))  # 3 % labelled: sparse
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    argv = ["train", "--raw", str(tmp_path / "raw.tif"), "--labels", str(tmp_path / "labels.tif"), "--arch", "unet2d",
            "--out", str(tmp_path / "run"), "--iterations", "2", "--device", "cpu", "--no-progress",
            "--patch", "1", "32", "32", "--batch", "2", "--option", "depth=2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "recipe: dense labels" not in captured.err and "recipe: sparse labels" in captured.err
    assert "-> " in captured.out
    assert main([*argv[:-2], "--calibration", "bayes"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown calibration 'bayes'" in err
