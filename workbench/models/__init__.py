"""Model architectures, registered by name (``@register_architecture``); see :func:`list_architectures`.

What a model costs (parameters, FLOPs, speed here): :func:`profile_model` (``workbench.models.profile``).
"""

from workbench.models.profile import ModelProfile, count_flops, profile_model
from workbench.models.registry import (
    ArchitectureInfo,
    ArchitectureSpec,
    ModelKind,
    build_model,
    get_architecture,
    list_architectures,
    register_architecture,
    unregister_architecture,
)

__all__ = [
    "ArchitectureInfo",
    "ArchitectureSpec",
    "ModelKind",
    "ModelProfile",
    "build_model",
    "count_flops",
    "get_architecture",
    "list_architectures",
    "profile_model",
    "register_architecture",
    "unregister_architecture",
]
