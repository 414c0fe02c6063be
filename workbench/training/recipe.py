"""The training recipe chosen from the data: what ``workbench train`` with no options and the app's Train use.

:func:`label_stats` describes the labels (labelled share, class balance, strokes); :func:`choose_recipe` turns
that into changes of a :class:`~workbench.training.config.TrainConfig` that the user did not set, each with the
reason, and :meth:`Recipe.summary` says them in one line. What a rule does was measured
(``benchmarks/bench_defaults.py``, ``benchmarks/results/defaults.json``, tuned on ISBI 2012 and checked on the
synthetic sample's mitochondria, which the rules were not tuned on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.training.config import TrainConfig

#: labels covering less than this share of the voxels are sparse (scribbles, a few boxes)
SPARSE_FRACTION = 0.05
#: the narrow U-Net of the scribble recipe
SPARSE_BASE_CHANNELS = 8


@dataclass
class LabelStats:
    """What the recipe looks at.

    Attributes:
        labelled_fraction: labelled voxels over all voxels.
        class_fractions: per class 1..C, its share of the labelled voxels.
        strokes: per class, its connected components (26-connected in 3D).
        shape: the volume's (z, y, x).
    """

    labelled_fraction: float
    class_fractions: list[float]
    strokes: list[int]
    shape: tuple[int, ...]

    @property
    def sparse(self) -> bool:
        return self.labelled_fraction < SPARSE_FRACTION


def label_stats(labels: np.ndarray, max_strokes_counted: int = 10_000) -> LabelStats:
    """The :class:`LabelStats` of sparse labels (0 unlabelled, 1..C classes).

    ``max_strokes_counted`` stops counting components early on dense labels (counted on the labelled
    slices only, which gives the same answer to the only question asked: are there enough?).
    """
    from scipy import ndimage as ndi

    labels = labels.read() if hasattr(labels, "read") else np.asarray(labels)  # a workbench.io Volume, or an array
    n = int(labels.max()) if labels.size else 0
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    total = max(1, int(counts.sum()))
    strokes = []
    for c in range(1, n + 1):
        if counts[c - 1] == 0:
            strokes.append(0)
            continue
        found = 0
        for z in np.flatnonzero((labels == c).any(axis=(1, 2))):
            found += ndi.label(labels[z] == c)[1]
            if found >= max_strokes_counted:
                break
        strokes.append(int(found))
    return LabelStats(float(counts.sum()) / max(1, labels.size), [float(v) / total for v in counts], strokes,
                      tuple(labels.shape))


@dataclass
class Recipe:
    """Changes to a TrainConfig and why.

    Attributes:
        changes: TrainConfig field -> value (``arch_options`` entries are merged, not replaced).
        reasons: one short clause per decision, in the order made.
    """

    changes: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI and the app."""
        return "recipe: " + ("; ".join(self.reasons) if self.reasons else "the settings given")

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the changes made (in place; returned for chaining)."""
        for key, value in self.changes.items():
            if key == "arch_options":
                config.arch_options = {**config.arch_options, **value}
            else:
                setattr(config, key, value)
        return config


def choose_recipe(config: TrainConfig, stats: LabelStats, explicit: set[str] = frozenset()) -> Recipe:
    """The recipe for ``config`` on labels described by ``stats``; fields named in ``explicit`` are the user's.

    Rules:
    - width: sparse labels and a 2D U-Net -> half width (base 8): twice the steps in the same minutes, and on
      ISBI 2012 from 1 % scribbles a lower error (adapted Rand 0.057 against 0.078 at base 16);
    - no validation split unless asked for: holding out a tenth of the strokes did not do better on ISBI 2012
      from 1 % scribbles (adapted Rand error 0.103 against 0.095, 3 seeds, ``benchmarks/results/defaults.json``)
      and takes labels from a user who drew few; test-time augmentation is then recommended for sparse labels
      by rule (:mod:`workbench.training.test_time`), and by measurement when there is validation;
    - no edge-aware smoothness loss (:mod:`workbench.training.crf_loss`, ``--crf-weight``): in 3-minute runs,
      seeds 0-2 (``benchmarks/results/defaults_crf.json``) weight 1 left ISBI 2012 unchanged (mean adapted Rand
      error 0.117 either way) and the sample's mitochondria better on two seeds and worse on the third (IoU 0.799 /
      0.753 / 0.458 against 0.767 / 0.721 / 0.601), so it stays the user's choice;
    - calibration ``auto``: the class proportions (:mod:`workbench.training.calibration`) are corrected from
      the labels and the volume when training ends.
    """
    recipe = Recipe()
    pct = f"{stats.labelled_fraction:.2%}" if stats.labelled_fraction < 0.1 else f"{stats.labelled_fraction:.0%}"
    if stats.sparse and config.arch == "unet2d" and "base_channels" not in config.arch_options \
            and "arch_options" not in explicit and not config.init:
        recipe.changes["arch_options"] = {"base_channels": SPARSE_BASE_CHANNELS}
        recipe.reasons.append(f"sparse labels ({pct} of the voxels): half-width U-Net (base {SPARSE_BASE_CHANNELS}), "
                              "twice the steps in the same time")
    elif stats.sparse:
        recipe.reasons.append(f"sparse labels ({pct} of the voxels)")
    else:
        recipe.reasons.append(f"dense labels ({pct} of the voxels)")
    rare = [i + 1 for i, f in enumerate(stats.class_fractions) if 0 < f < 0.1]
    if rare and "calibration" not in explicit and config.calibration == "auto":
        recipe.reasons.append(f"class {', '.join(map(str, rare))} under 10 % of the labels: its share is "
                              "calibrated when training ends")
    return recipe
