"""The architecture registry: ``@register_architecture("name", ...)`` and look-ups by name."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import WorkbenchError

_REGISTRY: dict[str, ArchitectureInfo] = {}


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a learner and the code need to know about one architecture.

    Attributes:
        name: registry key (``unet2d``).
        title: a human title.
        description: for learners: what it is, when it fits EM, 2D or 3D.
        paper: the reference.
        dims: 2 (applied slice by slice) or 3 (on z, y, x blocks).
        kind: ``"torch"`` (a ``torch.nn.Module``) or ``"forest"`` (a feature-based random forest).
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
    kind: str = "torch"
    default_batch: int = 4
    _defaults: dict = field(default_factory=dict, repr=False)

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
        if self.kind != "torch":
            return 0
        import torch

        with torch.device("meta"):
            model = self.build(in_channels, out_channels, **options)
        return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def register_architecture(
    name: str,
    *,
    title: str,
    description: str,
    paper: str,
    dims: int,
    defaults: dict,
    receptive_field: Callable[[dict], tuple[int, int, int]],
    divisor: Callable[[dict], tuple[int, int, int]],
    default_patch: tuple[int, int, int],
    kind: str = "torch",
    default_batch: int = 4,
):
    """Decorator registering a model builder under ``name``.

    Raises:
        ValueError: ``name`` is registered already (a programming error).
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = ArchitectureInfo(
            name=name,
            title=title,
            description=" ".join(description.split()),
            paper=paper,
            dims=dims,
            builder=builder,
            receptive_field_fn=receptive_field,
            divisor_fn=divisor,
            default_patch=tuple(default_patch),
            kind=kind,
            default_batch=int(default_batch),
            _defaults=copy.deepcopy(defaults),
        )
        return builder

    return decorator


def unregister_architecture(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plug-ins)."""
    _REGISTRY.pop(name, None)


def _ensure_builtin() -> None:
    # importing the modules registers the built-in architectures (in this order in the lists)
    import importlib

    for module in ("unet", "residual_unet", "forest"):
        importlib.import_module(f"workbench.models.{module}")


def list_architectures() -> list[ArchitectureInfo]:
    """All registered architectures, in registration order."""
    _ensure_builtin()
    return list(_REGISTRY.values())


def get_architecture(name: str) -> ArchitectureInfo:
    """The entry for ``name``.

    Raises:
        WorkbenchError: unknown name (lists the valid ones and the closest match).
    """
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = sorted(_REGISTRY)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise WorkbenchError(f"unknown architecture {name!r}{hint}; valid: {', '.join(valid)}") from None


def build_model(name: str, in_channels: int = 1, out_channels: int = 2, **options):
    """Build architecture ``name`` with its defaults updated by ``options``."""
    return get_architecture(name).build(in_channels, out_channels, **options)
