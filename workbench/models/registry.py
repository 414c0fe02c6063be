"""The architecture registry: ``@register_architecture(ArchitectureSpec(...))`` and look-ups by name.

The entries live in a :class:`workbench.registry.Registry`; the built-in ones (``unet``, ``residual_unet``,
``forest``) register when their modules are imported, which the registry does lazily on the first look-up.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.choices import Choice
from workbench.errors import WorkbenchError
from workbench.registry import Registry

#: The built-in architectures' modules, imported (so registered) in this order on the first look-up.
BUILTIN_MODULES = ("unet", "residual_unet", "forest")


class ModelKind(Choice, what="model kind"):
    """What a model is: a ``torch.nn.Module`` or a feature-based random forest."""

    TORCH = "torch"
    FOREST = "forest"


@dataclass(frozen=True)
class ArchitectureSpec:
    """What an architecture declares when it registers (:func:`register_architecture`).

    Attributes:
        name: registry key (``unet2d``).
        title: a human title.
        description: for learners: what it is, when it fits EM, 2D or 3D (whitespace is normalised).
        paper: the reference.
        dims: 2 (applied slice by slice) or 3 (on z, y, x blocks).
        defaults: the builder's default options (copied, never shared).
        receptive_field: ``fn(options) -> (z, y, x)`` voxels seen by one output voxel.
        divisor: ``fn(options) -> (z, y, x)`` total down-sampling factor (inputs are padded to it).
        default_patch: training patch shape (z, y, x) that suits the architecture.
        kind: a :class:`ModelKind` (or its name).
        default_batch: patches per training step with ``default_patch``.

    Raises:
        ValueError: ``dims`` is not 2 or 3 (a programming error).
    """

    name: str
    title: str
    description: str
    paper: str
    dims: int
    defaults: dict
    receptive_field: Callable[[dict], tuple[int, int, int]]
    divisor: Callable[[dict], tuple[int, int, int]]
    default_patch: tuple[int, int, int]
    kind: ModelKind = ModelKind.TORCH
    default_batch: int = 4

    def __post_init__(self):
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims}")
        object.__setattr__(self, "kind", ModelKind.parse(self.kind))
        object.__setattr__(self, "description", " ".join(self.description.split()))
        object.__setattr__(self, "default_patch", tuple(int(v) for v in self.default_patch))
        object.__setattr__(self, "default_batch", int(self.default_batch))
        object.__setattr__(self, "defaults", copy.deepcopy(self.defaults))


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a learner and the code need to know about one architecture (a registered
    :class:`ArchitectureSpec` with its builder).

    Attributes:
        name: registry key (``unet2d``).
        title: a human title.
        description: for learners: what it is, when it fits EM, 2D or 3D.
        paper: the reference.
        dims: 2 (applied slice by slice) or 3 (on z, y, x blocks).
        kind: a :class:`ModelKind` value, ``torch`` (a ``torch.nn.Module``) or ``forest`` (a feature-based
            random forest), checked by ``ModelKind.parse`` and held as the plain string (compare with
            ``ModelKind.FOREST`` or ``"forest"``): it is written into training checkpoints, which
            ``torch.load(weights_only=True)`` reads only when they hold plain values.
        builder: ``builder(in_channels, out_channels, **options)`` returning the model.
        receptive_field_fn: ``fn(options) -> (z, y, x)`` voxels seen by one output voxel.
        divisor_fn: ``fn(options) -> (z, y, x)`` total down-sampling factor (inputs are padded to it).
        default_patch: training patch shape (z, y, x) that suits the architecture.
        default_batch: patches per training step with ``default_patch``.
    """

    name: str
    title: str
    description: str
    paper: str
    dims: int
    builder: Callable[..., Any]
    receptive_field_fn: Callable[[dict], tuple[int, int, int]]
    divisor_fn: Callable[[dict], tuple[int, int, int]]
    default_patch: tuple[int, int, int]
    kind: str = ModelKind.TORCH.value
    default_batch: int = 4
    _defaults: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "kind", ModelKind.parse(self.kind).value)

    @classmethod
    def from_spec(cls, spec: ArchitectureSpec, builder: Callable[..., Any]) -> ArchitectureInfo:
        """The entry of ``spec`` built by ``builder``."""
        return cls(name=spec.name, title=spec.title, description=spec.description, paper=spec.paper,
                   dims=spec.dims, builder=builder, receptive_field_fn=spec.receptive_field,
                   divisor_fn=spec.divisor, default_patch=spec.default_patch, kind=spec.kind,
                   default_batch=spec.default_batch, _defaults=copy.deepcopy(spec.defaults))

    @property
    def is_network(self) -> bool:
        """True for a ``torch.nn.Module`` (it has parameters, FLOPs, a forward pass and can be exported)."""
        return self.kind == ModelKind.TORCH

    @property
    def defaults(self) -> dict:
        """A fresh copy of the default options (never shared between callers)."""
        return copy.deepcopy(self._defaults)

    def options(self, **overrides) -> dict:
        """Defaults updated with ``overrides``; unknown option names raise ``WorkbenchError``."""
        unknown = sorted(set(overrides) - set(self._defaults))
        if unknown:
            raise WorkbenchError(
                f"architecture {self.name!r} has no option {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(sorted(self._defaults)) or 'none'}"
            )
        opts = self.defaults
        opts.update(copy.deepcopy(overrides))
        return opts

    def build(self, in_channels: int = 1, out_channels: int = 2, **options):
        """Build the model with the defaults updated by ``options``."""
        return self.builder(in_channels, out_channels, **self.options(**options))

    def receptive_field(self, **options) -> tuple[int, int, int]:
        """Receptive field (z, y, x) in voxels, computed from the layer sizes."""
        return tuple(int(v) for v in self.receptive_field_fn(self.options(**options)))

    def divisor(self, **options) -> tuple[int, int, int]:
        """Input sizes are padded internally to a multiple of this (z, y, x)."""
        return tuple(int(v) for v in self.divisor_fn(self.options(**options)))

    def halo(self, **options) -> tuple[int, int, int]:
        """Context needed on each side of a block for outputs that do not depend on the block edge."""
        return tuple(r // 2 for r in self.receptive_field(**options))

    def parameter_count(self, in_channels: int = 1, out_channels: int = 2, **options) -> int:
        """Number of trainable parameters, counted on a model built without allocating memory.

        A random forest has no parameters before it is trained: its count is 0.
        """
        if not self.is_network:
            return 0
        import torch

        with torch.device("meta"):
            model = self.build(in_channels, out_channels, **options)
        return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _load_builtin() -> None:
    # importing the modules registers the built-in architectures (in this order in the lists)
    for module in BUILTIN_MODULES:
        importlib.import_module(f"workbench.models.{module}")


_REGISTRY: Registry[ArchitectureInfo] = Registry("architecture", loader=_load_builtin)


def register_architecture(spec: ArchitectureSpec) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model builder ``builder(in_channels, out_channels, **options)`` as ``spec``.

    Raises:
        ValueError: ``spec.name`` is registered already (a programming error).
    """

    def decorator(builder):
        _REGISTRY.register(spec.name, ArchitectureInfo.from_spec(spec, builder))
        return builder

    return decorator


def unregister_architecture(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plug-ins)."""
    _REGISTRY.unregister(name)


def list_architectures() -> list[ArchitectureInfo]:
    """All registered architectures, in registration order."""
    return _REGISTRY.list()


def get_architecture(name: str) -> ArchitectureInfo:
    """The entry for ``name``.

    Raises:
        WorkbenchError: unknown name (lists the valid ones and the closest match).
    """
    return _REGISTRY.get(name)


def build_model(name: str, in_channels: int = 1, out_channels: int = 2, **options):
    """Build architecture ``name`` with its defaults updated by ``options``."""
    return get_architecture(name).build(in_channels, out_channels, **options)
