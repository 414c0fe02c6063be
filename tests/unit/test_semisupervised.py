"""Mean-teacher self-training pieces: pseudo-label masking, the EMA update, the loss and its ramp."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.training.semisupervised import (
    EMATeacher,
    MeanTeacher,
    SemiSupervisedConfig,
    pseudo_label_loss,
    pseudo_labels,
    ramp_weight,
    strong_view,
)


def _probs(values):
    """(1, 2, 1, N) probabilities with class 1 probability ``values``."""
    p1 = torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)
    return torch.cat([1 - p1, p1], dim=1)


def test_pseudo_labels_keep_only_confident_unlabelled_voxels():
    probs = _probs([0.95, 0.5, 0.02, 0.97])
    labelled = torch.tensor([[[False, False, False, True]]])
    cls, mask = pseudo_labels(probs, labelled, threshold=0.9)
    assert cls.tolist() == [[[1, 0, 0, 1]]]
    assert mask.tolist() == [[[True, False, True, False]]]  # 0.5 unsure, the last one is labelled


def test_pseudo_labels_with_one_threshold_per_class():
    probs = _probs([0.7, 0.4, 0.2, 0.97])  # class 1 at 0.7 and 0.97; class 0 at 0.6 and 0.8
    labelled = torch.zeros(1, 1, 4, dtype=torch.bool)
    cls, mask = pseudo_labels(probs, labelled, threshold=(0.55, 0.9))
    assert cls.tolist() == [[[1, 0, 0, 1]]]
    assert mask.tolist() == [[[False, True, True, True]]]


def test_loss_is_zero_with_zero_gradient_when_nothing_is_confident():
    probs = _probs([0.6, 0.4, 0.55])
    labelled = torch.zeros(1, 1, 3, dtype=torch.bool)
    logits = torch.randn(1, 2, 1, 3, requires_grad=True)
    loss, frac = pseudo_label_loss(logits, probs, labelled, threshold=0.9)
    assert float(loss.detach()) == 0.0 and frac == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_loss_ignores_labelled_voxels_and_averages_over_unlabelled():
    probs = _probs([0.99, 0.99, 0.99, 0.5])
    labelled = torch.tensor([[[True, False, False, False]]])
    logits = torch.zeros(1, 2, 1, 4, requires_grad=True)
    loss, frac = pseudo_label_loss(logits, probs, labelled, threshold=0.9)
    # two confident unlabelled voxels of three unlabelled, each with cross-entropy log(2)
    assert frac == pytest.approx(2 / 3)
    assert float(loss.detach()) == pytest.approx(2 * math.log(2) / 3, rel=1e-5)
    loss.backward()
    assert torch.count_nonzero(logits.grad[..., 0]) == 0  # the labelled voxel gets no gradient
    assert torch.count_nonzero(logits.grad[..., 3]) == 0  # nor the unsure one


def test_ema_update_moves_teacher_towards_student():
    student = torch.nn.Conv2d(1, 2, 1)
    teacher = EMATeacher(student, decay=0.9)
    teacher.updates = 10**6  # past the warm-up: the plain decay applies
    before = teacher.model.weight.detach().clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update(student)
    expected = 0.9 * before + 0.1 * student.weight.detach()
    assert torch.allclose(teacher.model.weight, expected, atol=1e-6)
    assert not teacher.model.weight.requires_grad
    assert teacher.model is not student


def test_ema_copies_buffers_and_predicts_probabilities():
    student = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    teacher = EMATeacher(student, decay=0.99)
    student.train()
    student(torch.randn(2, 1, 4, 4) * 5 + 3)  # changes the batch-norm running statistics
    teacher.update(student)
    assert torch.equal(teacher.model[1].running_mean, student[1].running_mean)
    p = teacher.predict(torch.randn(1, 1, 4, 4))
    assert p.shape == (1, 2, 4, 4)
    assert torch.allclose(p.sum(1), torch.ones(1, 4, 4), atol=1e-5)


def test_ema_decay_must_be_below_one():
    with pytest.raises(ValueError):
        EMATeacher(torch.nn.Conv2d(1, 2, 1), decay=1.0)


def test_ramp_weight():
    cfg = SemiSupervisedConfig(weight=2.0, start=0.2, ramp=0.3)
    assert ramp_weight(0.1, cfg) == 0.0
    assert 0 < ramp_weight(0.3, cfg) < 2.0
    assert ramp_weight(0.5, cfg) == pytest.approx(2.0)
    assert ramp_weight(1.0, cfg) == pytest.approx(2.0)


def test_strong_view_keeps_shape_and_changes_values():
    x = torch.rand(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = strong_view(x, g)
    assert y.shape == x.shape and not torch.equal(x, y)


def test_mean_teacher_step_trains_on_pseudo_labels():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 2, 3, padding=1)
    mt = MeanTeacher(model, SemiSupervisedConfig(threshold=0.0, start=0.0, ramp=0.0, weight=1.0))
    x = torch.rand(2, 1, 8, 8)
    labelled = torch.zeros(2, 8, 8, dtype=torch.bool)
    assert float(mt.loss(x, model(mt.student_input(x, 0)), labelled, progress=0.0).detach()) > 0  # threshold 0: all voxels
    assert mt.pseudo_fraction == pytest.approx(1.0)
    early = MeanTeacher(model, SemiSupervisedConfig(start=0.5))
    assert float(early.loss(x, model(x), labelled, progress=0.1).detach()) == 0.0
    with torch.no_grad():
        model.weight.add_(1.0)
    before = mt.model.weight.detach().clone()
    mt.after_step(model)
    assert not torch.equal(before, mt.model.weight)


def test_make_semi_supervised_choices():
    import numpy as np

    from workbench.training.semisupervised import make_semi_supervised

    model = torch.nn.Conv2d(1, 2, 1)
    sparse = np.zeros((1, 8, 8), np.uint8)
    sparse[0, 0, :2] = (1, 2)
    assert isinstance(make_semi_supervised("mean-teacher", model, sparse), MeanTeacher)
    assert make_semi_supervised("none", model, sparse) is None
    assert make_semi_supervised("mean-teacher", model, sparse, activation="sigmoid") is None
    assert make_semi_supervised("mean-teacher", model, np.ones((1, 8, 8), np.uint8)) is None  # dense labels
    mt = make_semi_supervised("mean-teacher", model, sparse, options={"threshold": 0.8})
    assert mt.config.threshold == 0.8
    with pytest.raises(ValueError, match="unknown semi-supervised method"):
        make_semi_supervised("fixmatch-ish", model, sparse)
    with pytest.raises(ValueError, match="unknown semi-supervised option"):
        make_semi_supervised("mean-teacher", model, sparse, options={"tau": 1})


def test_estimate_prior_recovers_class_proportions():
    import numpy as np

    from workbench.training.semisupervised import adjust_to_prior, estimate_prior

    rng = np.random.default_rng(0)
    # a model trained with balanced classes: likelihood ratio from a 1D Gaussian feature, posteriors at 50/50
    y = rng.random(20000) < 0.2  # 20 % class 0 ("membrane")
    f = np.where(y, rng.normal(-1, 1, y.size), rng.normal(1, 1, y.size))
    p0 = 1 / (1 + np.exp(2 * f))  # posterior of class 0 under equal priors
    probs = np.stack([p0, 1 - p0])
    prior = estimate_prior(probs, [0.5, 0.5])
    assert prior[0] == pytest.approx(0.2, abs=0.02) and prior.sum() == pytest.approx(1)
    adj = adjust_to_prior(probs, [0.5, 0.5], prior)
    assert np.allclose(adj.sum(0), 1, atol=1e-5)
    assert adj[0].mean() < probs[0].mean()  # the rarer class loses probability


def test_per_class_thresholds_must_match_the_classes():
    import numpy as np

    from workbench.errors import WorkbenchError
    from workbench.training import TrainConfig
    from workbench.training.semisupervised import make_semi_supervised

    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, 0, :3] = 1
    labels[0, 7, :3] = 2
    model = torch.nn.Conv2d(1, 2, 1)
    assert make_semi_supervised("mean-teacher", model, labels, options={"threshold": [0.6, 0.9]}) is not None
    with pytest.raises(WorkbenchError, match="3 values but the labels have 2 classes"):
        make_semi_supervised("mean-teacher", model, labels, options={"threshold": [0.6, 0.9, 0.9]})
    with pytest.raises(WorkbenchError, match="threshold"):
        TrainConfig(semi_options={"threshold": [0.6, 1.5]}).validate()
