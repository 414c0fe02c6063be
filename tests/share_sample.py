"""A tiny project of the built-in sample with two trained runs (predicted and segmented), for the share's
tests, its benchmark and its screenshot: ``make_sample_project(root)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_UNET = {"depth": 2, "base_channels": 4}


def make_sample_project(root: Path, shape=(6, 96, 96), runs: int = 2, iterations=(3, 6), threshold: float = 0.5,
                        raw=None, truth=None):
    """The sample (seed 0; or ``raw`` with its ``truth``, membrane 1 and interior 2) with every 7th row of its
    truth as annotations and ``runs`` tiny U-Net runs, each predicted (``predictions/<run>``) and segmented
    (``segmentation/<run>``: connected components of the interior class above ``threshold``, one object per
    cell when the membranes are found)."""
    from workbench.inference import PredictOptions, predict_volume
    from workbench.project import Project, ProjectOptions
    from workbench.segmentation import SegmentOptions, segment_prediction
    from workbench.training import TrainConfig, Trainer, load_run

    if raw is None:
        project = Project.create(root, None, ProjectOptions(sample_shape=tuple(shape), seed=0))
    else:
        project = Project.create(root, raw, ProjectOptions(), truth=truth)
    truth = project.truth.read()
    labels = np.zeros_like(truth)
    labels[:, ::7] = truth[:, ::7]
    project.annotations.import_labels(labels)
    for i in range(runs):
        cfg = TrainConfig(arch="unet2d", arch_options=dict(TINY_UNET), classes=[c.name for c in project.classes],
                          iterations=int(iterations[i % len(iterations)]), batch_size=2, patch_shape=[1, 32, 32],
                          log_every=1, val_every=2, checkpoint_seconds=3600, warmup=1, seed=i,
                          calibration="none")  # a few-step model: its raw output keeps objects to share
        run_dir = project.new_run_dir(f"unet{i}")
        Trainer(cfg, project.raw, project.annotations.read(), run_dir).run()
        pred = project.prediction_path(run_dir.name)
        predict_volume(load_run(run_dir), project.raw, pred, PredictOptions(overwrite=True))
        segment_prediction(pred, project.segmentation_path(run_dir.name),
                           SegmentOptions(method="cc", channel=1, threshold=threshold, min_size=20,
                                          overwrite=True))
    return project
