"""One registry type for everything looked up by name (architectures, datasets): :class:`Registry`.

A registry keeps entries in registration order, refuses a name registered twice (a programming error:
``ValueError``), answers an unknown name with the one-line ``WorkbenchError`` of
:func:`workbench.choices.unknown_name` (valid names and the closest one), and loads its built-in entries
lazily, the first time it is read, through a loader callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from workbench.choices import unknown_name

T = TypeVar("T")

#: Loads the built-in entries: returns ``(name, entry)`` pairs to register, or None when it registered
#: them itself (e.g. by importing modules whose decorators register).
Loader = Callable[[], "Iterable[tuple[str, T]] | None"]


def _same(name: str) -> str:
    return name


class Registry(Generic[T]):
    """Entries of type ``T`` by name.

    Args:
        what: what an entry is called in messages (``"architecture"``, ``"dataset"``).
        loader: loads the built-in entries on the first read (see :data:`Loader`); None: nothing to load.
        normalize: maps a name to its key (e.g. ``str.lower`` for case-insensitive names); default: as given.
    """

    def __init__(self, what: str, loader: Loader | None = None, normalize: Callable[[str], str] | None = None):
        self.what = what
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None
        self._normalize = normalize or _same

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: the loader's own registrations must not load again
        try:
            pairs = self._loader() if self._loader is not None else None
            for name, entry in pairs or ():
                self.register(name, entry)
        except BaseException:
            self._loaded = False
            raise

    def key(self, name: str) -> str:
        """The key ``name`` is stored under."""
        return self._normalize(str(name))

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; returns it.

        Raises:
            ValueError: ``name`` is registered already.
        """
        key = self.key(name)
        if key in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered (a name cannot be registered twice)")
        self._entries[key] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (nothing happens when it is not registered)."""
        self._load()
        self._entries.pop(self.key(name), None)

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises:
            WorkbenchError: unknown name (one line: the valid names and the closest match).
        """
        self._load()
        key = self.key(name)
        try:
            return self._entries[key]
        except KeyError:
            shown = name if key == name else key
            raise unknown_name(self.what, shown, list(self._entries)) from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        self._load()
        return list(self._entries)

    def list(self) -> list[T]:
        """The entries, in registration order."""
        self._load()
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        self._load()
        return self.key(str(name)) in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self.list())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)
