"""Whether test-time augmentation pays for a run, decided on its validation strokes when training ends.

The 8 yx rotations/flips combined by their mean log-probabilities (``workbench.inference.tiling``) cost 8
forward passes. They helped the narrow U-Net trained on ISBI 2012 scribbles (adapted Rand error 0.057 against
0.073 over 6 seeds) and on the synthetic sample's mitochondria from scribbles (IoU +0.04 and +0.05 on 2 seeds),
and did not help the base-16 one on ISBI (0.086 against 0.078). With validation strokes the run measures it:
the validation batches are scored with and without the views (cross-entropy on the held-out strokes, with the
run's calibration) and the views are recommended when they lower it by more than :data:`MIN_GAIN`. Without
validation the rule is the measured one: recommended for sparse labels (under
:data:`workbench.training.recipe.SPARSE_FRACTION` of the voxels), not for dense ones. ``workbench predict`` and
the app follow the recommendation unless told otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.training.hooks import Hook
from workbench.training.targets import IGNORE_INDEX

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.trainer import Trainer

#: relative decrease of the validation cross-entropy the 8 views must bring
MIN_GAIN = 0.02
#: the views: (quarter turns in yx, flip x)
VIEWS = [(k, f) for f in (False, True) for k in range(4)]


def _turn(x, k: int, flip: bool, inverse: bool = False):
    """Rotate/flip the last two axes of a tensor (or undo it)."""
    import torch

    if not inverse:
        x = torch.rot90(x, k, dims=(-2, -1))
        return x.flip(-1) if flip else x
    x = x.flip(-1) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1))


def validation_cross_entropy(trainer: Trainer, batches: list, bias=None, views: bool = False) -> float:
    """Mean cross-entropy of the kept model on ``batches`` (input, target, mask), one view or the 8 combined.

    Patches whose yx sides differ are scored with the one view (a quarter turn would change their shape).
    """
    import torch
    import torch.nn.functional as F

    from workbench.precision import autocast

    model = trainer.model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, t, _ in batches:
            x, t = trainer.to_device(x), t.to(trainer.device)
            square = x.shape[-1] == x.shape[-2]
            turns = VIEWS if views and square else [(0, False)]
            acc = None
            for k, flip in turns:
                with autocast(trainer.device, trainer.precision):
                    logits = model(_turn(x, k, flip).contiguous(memory_format=trainer.memory_format))
                logits = logits.float()
                if bias is not None:
                    logits = logits + bias
                term = _turn(logits.log_softmax(1), k, flip, inverse=True)
                acc = term if acc is None else acc + term
            logp = (acc / len(turns)).log_softmax(1)
            keep = t != IGNORE_INDEX
            total += float(F.nll_loss(logp, t.clamp_min(0), reduction="none")[keep].sum())
            count += int(keep.sum())
    model.train(was_training)
    return total / max(1, count)


class TestTimeChoice(Hook):
    """When training ends (after the calibration), scores the validation batches with and without the 8 views
    (or, without validation, applies the rule for ``labelled_fraction``) and records the recommendation in the
    checkpoint (``prediction_defaults``)."""

    def __init__(self, batches: list, labelled_fraction: float = 1.0):
        self.batches = batches
        self.labelled_fraction = float(labelled_fraction)
        self.result: dict | None = None

    def on_train_end(self, trainer: Trainer) -> None:
        import torch

        from workbench.training.recipe import SPARSE_FRACTION

        if not self.batches:
            sparse = self.labelled_fraction < SPARSE_FRACTION
            self.result = {"tta": sparse, "reason": "sparse labels: the 8 views lowered the error of models trained on "
                           "scribbles" if sparse else "dense labels: one view"}
            trainer.prediction_defaults = self.result
            return
        cal = getattr(trainer, "calibration", None)
        bias = None
        if cal is not None and cal.active():
            shape = (1, -1, *[1] * (self.batches[0][0].ndim - 2))
            bias = torch.tensor(cal.bias, device=trainer.device).view(shape)
        one = validation_cross_entropy(trainer, self.batches, bias)
        eight = validation_cross_entropy(trainer, self.batches, bias, views=True)
        pays = eight < one * (1 - MIN_GAIN)
        self.result = {"tta": bool(pays), "val_ce": round(one, 5), "val_ce_tta": round(eight, 5),
                       "reason": (f"the 8 views lower the validation cross-entropy from {one:.3g} to {eight:.3g}"
                                  if pays else f"the 8 views do not pay on validation ({eight:.3g} against {one:.3g})")}
        trainer.prediction_defaults = self.result

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        if self.result is not None:
            state["prediction_defaults"] = self.result
