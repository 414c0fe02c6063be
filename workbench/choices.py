"""Typed string options: ``StrEnum`` choices checked once at the boundary, with a "did you mean".

A string option (a segmentation method, a training target, a device, a storage dtype) is declared as a
:class:`Choice` subclass; :meth:`Choice.parse` turns user input into a member or raises a one-line
``WorkbenchError`` that lists the valid values and the closest one. Members are ``str``, so they compare
equal to their values, serialise to JSON as plain strings and work as argparse ``choices``.
"""

from __future__ import annotations

import difflib
import enum
from typing import TypeVar

from workbench.errors import WorkbenchError

C = TypeVar("C", bound="Choice")


def did_you_mean(value: object, valid: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(what: str, value: object, valid) -> WorkbenchError:
    """The one-line error for an unknown name: ``unknown <what> 'x' (did you mean 'y'?); valid: a, b``."""
    valid = [str(v) for v in valid]
    return WorkbenchError(f"unknown {what} {value!r}{did_you_mean(value, valid)}; valid: {', '.join(valid)}")


class Choice(str, enum.Enum):
    """Base of the string choices (a ``StrEnum`` that also runs on Python 3.10).

    ``class Target(Choice, what="target")`` names the option in messages (default: the class name).
    """

    def __init_subclass__(cls, what: str | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._what = what

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> list[str]:
        """The valid values, in declaration order."""
        return [m.value for m in cls]

    @classmethod
    def label(cls) -> str:
        """What the option is called in messages (the class's ``what``, else its name)."""
        return getattr(cls, "_what", None) or cls.__name__.lower()

    @classmethod
    def parse(cls: type[C], value: object) -> C:
        """The member for ``value`` (a member or its string, case-insensitive).

        Raises:
            WorkbenchError: not a valid value (names the valid ones and the closest).
        """
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for m in cls:
            if m.value.lower() == text:
                return m
        raise unknown_name(cls.label(), value, cls.values())


class Device(Choice, what="device"):
    """Where models run: the best available (``auto``: CUDA when present), the CPU, or a CUDA GPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
