"""The one registry type (workbench.registry.Registry) behind the architecture and dataset registries."""

from __future__ import annotations

import pytest

from workbench.errors import WorkbenchError
from workbench.registry import Registry


def test_register_get_list_unregister_in_order():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)
    reg.register("a", 1)
    assert reg.list() == [2, 1] and reg.names() == ["b", "a"] and reg.get("a") == 1
    assert "a" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", 3)
    reg.unregister("a")
    reg.unregister("never")  # nothing to remove: no error
    assert reg.names() == ["b"]


def test_unknown_name_is_one_line_with_a_suggestion():
    reg: Registry[int] = Registry("widget")
    for name in ("unet2d", "unet3d"):
        reg.register(name, 0)
    with pytest.raises(WorkbenchError) as err:
        reg.get("unet_3d")
    assert str(err.value) == "unknown widget 'unet_3d' (did you mean 'unet3d'?); valid: unet2d, unet3d"


def test_builtin_entries_load_lazily_once_and_first():
    calls = []

    def loader():
        calls.append(1)
        return [("x", 10), ("y", 20)]

    reg: Registry[int] = Registry("thing", loader=loader, normalize=str.lower)
    reg.register("mine", 1)  # registering does not load
    assert calls == []
    assert reg.get("X") == 10 and reg.names() == ["mine", "x", "y"] and calls == [1]
    reg.list()
    assert calls == [1]


def test_a_failing_loader_is_retried():
    state = {"fail": True}

    def loader():
        if state["fail"]:
            raise RuntimeError("not yet")
        return [("x", 1)]

    reg: Registry[int] = Registry("thing", loader=loader)
    with pytest.raises(RuntimeError):
        reg.list()
    state["fail"] = False
    assert reg.list() == [1]
