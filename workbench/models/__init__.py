"""Model architectures, registered by name (``@register_architecture``); see :func:`list_architectures`."""

from workbench.models.registry import (
    ArchitectureInfo,
    build_model,
    get_architecture,
    list_architectures,
    register_architecture,
    unregister_architecture,
)

__all__ = [
    "ArchitectureInfo",
    "build_model",
    "get_architecture",
    "list_architectures",
    "register_architecture",
    "unregister_architecture",
]
