"""``TrainConfig``: everything that defines a training run, saved as ``config.json`` in the run dir."""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

from workbench.atomic import atomic_write_json
from workbench.choices import Choice, Device
from workbench.errors import WorkbenchError
from workbench.precision import Precision


class Target(Choice, what="target"):
    """What a network learns to predict from the labels."""

    SEMANTIC = "semantic"  # classes 1..K of sparse labels
    BOUNDARIES = "boundaries"  # interior / boundary of instance labels
    AFFINITIES = "affinities"  # same-object affinities of instance labels at a set of offsets


class Schedule(Choice, what="schedule"):
    """Learning-rate schedule after the warm-up."""

    COSINE = "cosine"
    CONSTANT = "constant"


class SemiSupervised(Choice, what="semi_supervised method"):
    """Learning from the unlabelled voxels of sparse labels."""

    NONE = "none"
    MEAN_TEACHER = "mean-teacher"


TARGETS = tuple(Target.values())
SCHEDULES = tuple(Schedule.values())
#: nearest-neighbour and long-range offsets (z, y, x) for affinities (2D models use the ones with z = 0)
DEFAULT_OFFSETS_3D = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-2, 0, 0], [0, -9, 0], [0, 0, -9]]
DEFAULT_OFFSETS_2D = [[0, -1, 0], [0, 0, -1], [0, -9, 0], [0, 0, -9]]


@dataclass
class AugmentConfig:
    """On-the-fly augmentation; each probability is per patch."""

    flips: bool = True
    rotate90: bool = True
    elastic: float = 0.3  # probability of a smooth elastic deformation
    elastic_strength: float = 4.0  # maximum displacement in pixels
    gamma: float = 0.3
    contrast: float = 0.3
    noise: float = 0.3
    blur: float = 0.2
    missing_section: float = 0.1  # 3D patches only: a slice replaced by its mean
    misalignment: float = 0.1  # 3D patches only: slices from a random z on shifted in y, x

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(False, False, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass
class TrainConfig:
    """A training run, reproducible from this alone (plus the data).

    Attributes:
        arch: registered architecture name; ``arch_options`` overrides its defaults.
        target: ``semantic`` (classes 1..K of sparse labels), ``boundaries`` or ``affinities`` (instance labels).
        classes: class names for ``semantic`` (empty: ``class 1..K`` from the labels).
        patch_shape: (z, y, x) or None for the architecture default clipped to the volume.
        batch_size: patches per step, or None for the architecture default (16 x 128^2 for unet2d).
        iterations / minutes: stop after whichever is reached first (at least one must be set); the
            ``cosine`` schedule decays over whichever is further along, so a time-limited run anneals too.
        val_slices: z indices held out for validation; ``val_fraction``: fraction of labelled connected
            components (strokes) held out instead. Both empty: no validation.
        checkpoint_seconds: checkpoint interval; a checkpoint is always written at the end.
    """

    arch: str = "unet2d"
    arch_options: dict = field(default_factory=dict)
    target: Target = Target.SEMANTIC
    classes: list[str] = field(default_factory=list)
    offsets: list[list[int]] | None = None
    patch_shape: list[int] | None = None
    batch_size: int | None = None  # None: the architecture's default_batch
    iterations: int | None = 500
    minutes: float | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: Schedule = Schedule.COSINE
    warmup: int = 20
    seed: int = 0
    device: Device = Device.AUTO
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_slices: list[int] = field(default_factory=list)
    val_fraction: float = 0.0
    val_every: int = 50
    log_every: int = 10
    checkpoint_seconds: float = 60.0
    prefetch: int = 2
    normalize_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    # learning from the unlabelled voxels of sparse labels (workbench/training/semisupervised.py):
    # "none" (default) or "mean-teacher"; semi_options override SemiSupervisedConfig fields (see
    # benchmarks/results/sparse.json: on ISBI scribbles the teacher closes gaps in membranes but over-predicts them)
    semi_supervised: SemiSupervised = SemiSupervised.NONE
    semi_options: dict = field(default_factory=dict)
    # recompute the BatchNorm statistics of the final model over the whole training volume (unlabelled voxels
    # included) when training ends: the label-centred, augmented patches describe other images (batchnorm.py)
    bn_recalibration: bool = True
    # stop when the validation loss has not improved for this many validations (0: off); the model kept is
    # then the one of the best validation
    early_stopping: int = 0
    # forward passes in auto (default: bf16 autocast where native and, on a CPU, measured faster, else fp32;
    # accuracy within seed noise of fp32, benchmarks/results/precision.json), fp32, bf16 or fp16 (CUDA,
    # with a GradScaler); workbench/precision.py
    precision: Precision = Precision.AUTO
    # start from a model file instead of random weights (workbench/training/init.py): a run folder, a BioImage
    # Model Zoo zip, a TorchScript file or a state-dict checkpoint; an output head of another size is re-initialised
    init: str | None = None
    # a self-supervised warm-up (workbench/training/pretext.py) instead of supervised training: the
    # PretextConfig fields (empty: supervised); such a run is what ``init`` fine-tunes
    pretext: dict = field(default_factory=dict)
    # correct the class proportions the balanced patch sampler teaches a semantic model
    # (workbench/training/calibration.py): auto (chosen from the labels), none, sampling or prior
    calibration: str = "auto"
    # weight of the edge-aware smoothness (local CRF) loss on all voxels of each patch, semantic targets
    # (workbench/training/crf_loss.py); 0 switches it off
    crf_weight: float = 0.0

    def validate(self) -> None:
        """Raise ``WorkbenchError`` for values that cannot work."""
        from workbench.models import get_architecture

        info = get_architecture(self.arch)
        info.options(**self.arch_options)
        self.target = Target.parse(self.target)
        self.schedule = Schedule.parse(self.schedule)
        self.device = Device.parse(self.device)
        self.semi_supervised = SemiSupervised.parse(self.semi_supervised)
        self.precision = Precision.parse(self.precision)
        from workbench.training.calibration import CalibrationMode

        self.calibration = CalibrationMode.parse(self.calibration)
        if self.optimizer.lower() != "adamw":
            raise WorkbenchError(f"unknown optimizer {self.optimizer!r}; only adamw is available")
        if self.iterations is None and self.minutes is None:
            raise WorkbenchError("set iterations or minutes (or both) to say when training stops")
        if self.iterations is not None and self.iterations < 1:
            raise WorkbenchError(f"iterations must be positive, got {self.iterations}")
        if self.minutes is not None and self.minutes <= 0:
            raise WorkbenchError(f"minutes must be positive, got {self.minutes}")
        if self.batch_size is not None and self.batch_size < 1:
            raise WorkbenchError(f"batch size must be positive, got {self.batch_size}")
        if not (self.crf_weight >= 0 and math.isfinite(self.crf_weight)):
            raise WorkbenchError(f"the CRF loss weight must be a number >= 0, got {self.crf_weight}")
        if self.patch_shape is not None:
            if len(self.patch_shape) != 3 or min(self.patch_shape) < 1:
                raise WorkbenchError(f"patch shape must be three positive numbers (z, y, x), got {self.patch_shape}")
            if info.dims == 2 and self.patch_shape[0] != 1:
                raise WorkbenchError(f"{self.arch} is a 2D architecture: the patch z size must be 1, got {self.patch_shape[0]}")
        from workbench.training.semisupervised import SemiSupervisedConfig

        bad = sorted(set(self.semi_options) - set(SemiSupervisedConfig.__dataclass_fields__))
        if bad:
            raise WorkbenchError(f"unknown semi_options {bad}; valid: {', '.join(SemiSupervisedConfig.__dataclass_fields__)}")
        thr = self.semi_options.get("threshold", 0.5)
        thresholds = thr if isinstance(thr, (list, tuple)) else [thr]
        if not thresholds or not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in thresholds):
            raise WorkbenchError(f"semi_options threshold must be a probability in (0, 1] or one per class, got {thr!r}")
        if self.early_stopping < 0:
            raise WorkbenchError(f"early_stopping is a number of validations (0 = off), got {self.early_stopping}")
        if not 0 <= self.val_fraction < 1:
            raise WorkbenchError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict:
        """Plain JSON-ready values (choices as their strings)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        aug = data.get("augment")
        if isinstance(aug, dict):
            aug_known = {f.name for f in fields(AugmentConfig)}
            data["augment"] = AugmentConfig(**{k: v for k, v in aug.items() if k in aug_known})
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write as JSON (atomically and durably: :func:`workbench.atomic.atomic_write_json`)."""
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkbenchError("no config.json: not a training run directory", path.parent) from None
        except RecursionError:
            raise WorkbenchError("unreadable training config (nested too deeply)", path) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WorkbenchError(f"unreadable training config ({err})", path) from None
        if not isinstance(data, dict):
            raise WorkbenchError("unreadable training config (not a JSON object)", path)
        problem = _type_problem(cls, data)
        if problem:
            raise WorkbenchError(f"unreadable training config ({problem})", path)
        try:
            return cls.from_dict(data)
        except WorkbenchError as err:
            raise WorkbenchError(str(err), path) from None
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as err:
            raise WorkbenchError(f"unreadable training config ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:120] if str(err) else ''})", path) from None

    def effective_offsets(self, dims: int) -> list[list[int]]:
        if self.offsets:
            return [list(map(int, o)) for o in self.offsets]
        return [list(o) for o in (DEFAULT_OFFSETS_2D if dims == 2 else DEFAULT_OFFSETS_3D)]


#: JSON types of the fields whose default is None (the others take their default's type)
_NONE_DEFAULT_TYPES = {"offsets": list, "patch_shape": list, "batch_size": int, "minutes": (int, float),
                       "iterations": int, "init": str}


def _type_problem(cls, data: dict) -> str | None:
    """The first entry of a loaded config whose JSON type is not its field's (``"arch: expected text"``)."""
    names = {str: "text", int: "an integer", float: "a number", bool: "true/false", list: "a list",
             dict: "an object"}
    for f in fields(cls):
        if f.name not in data or data[f.name] is None:
            continue
        value = data[f.name]
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        if default is None:
            want = _NONE_DEFAULT_TYPES.get(f.name)
        elif isinstance(default, bool):
            want = bool
        elif isinstance(default, str):  # choices are str enums
            want = str
        elif isinstance(default, float):
            want = (int, float)
        elif isinstance(default, int):
            want = int
        else:
            want = type(default) if isinstance(default, (list, dict)) else (dict if is_dataclass(default) else None)
        if want is None:
            continue
        ok = isinstance(value, want) and not (isinstance(value, bool) and want in (int, (int, float)))
        if not ok:
            kind = names.get(want if isinstance(want, type) else float, str(want))
            return f"{f.name}: expected {kind}, got {str(value)[:40]!r}"
    return None
