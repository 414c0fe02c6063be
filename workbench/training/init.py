"""Start training from a model file (``TrainConfig.init``): a warm-up run, a trained run, a Zoo zip, TorchScript
or a checkpoint (resolved by :func:`workbench.models.imports.open_model`).

:func:`fit_weights` checks that the file's network fits the run (architecture, options, dimensionality, input
channels; one-line errors that say what would fit) and keeps every weight but an output head that predicts
something else (another number of channels, another target, a warm-up's reconstruction): that head is left
to its fresh initialisation, with a note. :class:`InitWeights` loads them when training starts (not when a run
is resumed: its checkpoint has newer weights) and logs the validation scores of the starting model at the
run's first iteration, so a fine-tune from a finished run starts where that run left off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError
from workbench.models.imports import ModelSource, open_model
from workbench.training.hooks import Hook, MeanTeacherHook, Validation

if TYPE_CHECKING:  # pragma: no cover
    from workbench.training.trainer import Trainer


def torchscript_state_dict(source: ModelSource) -> dict:
    """The parameters and buffers of a TorchScript network (a workbench export's ``model.`` prefix removed)."""
    import io

    import torch

    module = torch.jit.load(io.BytesIO(source.torchscript), map_location="cpu")
    sd = dict(module.state_dict())
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd


def _head_prefix(keys: list[str]) -> str:
    """The module of the network's last parameter: its output head (``head`` for the registered U-Nets)."""
    return keys[-1].rsplit(".", 1)[0] + "." if keys else ""


def fit_weights(source: ModelSource, info, arch_options: dict, out_channels: int, channel_names: list[str],
                target: str) -> tuple[dict, str]:
    """The weights of ``source`` to load into ``info``'s network for this run, and a note for the user.

    Raises:
        WorkbenchError: the network does not fit (another architecture, options, dimensionality or number of
            input channels), naming what would fit.
    """
    import torch

    path = source.path
    if source.dims is not None and source.dims != info.dims:
        raise WorkbenchError(f"the model is {source.dims}D ({source.describe()}); {info.name} is {info.dims}D: "
                             f"train with a {source.dims}D architecture"
                             + (f" (--arch {source.arch})" if source.arch else ""), path)
    if source.arch is not None and source.arch != info.name:
        raise WorkbenchError(f"the model is a {source.arch}: train it with --arch {source.arch} (or leave --arch out)",
                             path)
    if source.in_channels != 1:
        raise WorkbenchError(f"the model takes {source.in_channels} input channels; EM raw volumes have 1: start "
                             "from a model with one input channel", path)
    options = info.options(**arch_options)
    if source.arch is not None and source.arch_options and dict(source.arch_options) != options:
        differ = {k: v for k, v in source.arch_options.items() if options.get(k) != v}
        hint = " ".join(f"--option {k}={v}" for k, v in differ.items())
        raise WorkbenchError(f"the model was built with other {info.name} options: train with {hint} (or leave "
                             "--option out)", path)
    weights = source.state_dict if source.state_dict is not None else torchscript_state_dict(source)
    with torch.device("meta"):
        net = info.build(1, out_channels, **options)
    wanted = net.state_dict()
    head = _head_prefix([k for k, _ in net.named_parameters()])
    missing = [k for k in wanted if k not in weights]
    bad_shape = [k for k in wanted if k in weights and tuple(weights[k].shape) != tuple(wanted[k].shape)]
    body_problems = [k for k in missing + bad_shape if not k.startswith(head)]
    if body_problems:
        raise WorkbenchError(f"the model's weights do not fit {info.name} with options {options} "
                             f"({len(body_problems)} tensors differ, e.g. {body_problems[0]!r})", path)
    src_names = list(source.channel_names) or [f"channel {i}" for i in range(source.out_channels or 0)]
    what = "the warm-up's reconstruction" if source.pretext else (
        f"{len(src_names)} channel{'s' if len(src_names) != 1 else ''} ({', '.join(src_names)})")
    reinit = bool(missing or bad_shape or source.pretext or (source.target and source.target != target))
    keep = {k: v for k, v in weights.items() if k in wanted and not (reinit and k.startswith(head))}
    fmt = {"run": "run", "bioimageio": "BioImage Model Zoo package", "torchscript": "TorchScript network",
           "onnx": "ONNX file", "checkpoint": "checkpoint"}[source.format]
    if reinit:
        note = (f"started from the {fmt} {path.name} ({source.iteration} iterations); output head re-initialised "
                f"for {len(channel_names)} channels ({', '.join(channel_names)}): the model predicted {what}")
    else:
        note = f"started from the {fmt} {path.name} ({source.iteration} iterations); all weights kept, output head included"
    return keep, note


class InitWeights(Hook):
    """Loads a model file's weights into the network when training starts (a resumed run keeps its own).

    Attributes:
        source: the :class:`~workbench.models.imports.ModelSource`.
        note: what was kept and what was re-initialised (also in the first metrics record and the checkpoint).
    """

    def __init__(self, source: ModelSource, weights: dict, note: str):
        self.source = source
        self.weights = weights
        self.note = note

    @classmethod
    def for_trainer(cls, trainer: Trainer, src) -> InitWeights:
        """Resolve ``src`` and check it fits ``trainer``'s network and task (one-line errors before training)."""
        if not trainer.info.is_network:
            raise WorkbenchError(f"architecture {trainer.info.name!r} is not a neural network: it cannot start "
                                 "from a model file", src)
        source = open_model(src)
        weights, note = fit_weights(source, trainer.info, trainer.config.arch_options, trainer.task.out_channels,
                                    trainer.task.channel_names, trainer.task.kind)
        return cls(source, weights, note)

    def on_train_start(self, trainer: Trainer) -> None:
        import torch

        if trainer.resume_state is not None:
            return
        with torch.no_grad():
            trainer.net.load_state_dict(self.weights, strict=False)
        for h in trainer.hooks:
            if isinstance(h, MeanTeacherHook):  # the teacher starts as the student
                h.semi.model.load_state_dict(trainer.net.state_dict())
        record = {"iteration": trainer.iteration, "init": self.note}
        validation = next((h for h in trainer.hooks if isinstance(h, Validation)), None)
        if validation is not None and validation.batches:
            record.update(validation.scores(trainer))
        trainer.log(record)

    def on_checkpoint(self, trainer: Trainer, state: dict) -> None:
        state["init"] = {"source": str(self.source.path), "format": self.source.format, "note": self.note}


__all__ = ["InitWeights", "fit_weights", "torchscript_state_dict"]
