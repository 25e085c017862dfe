"""One registry style for every "name -> builder" in percep-rag (timm's ``_registry.py`` idea).

A :class:`Registry` maps names to entries; ``register`` adds one, ``names`` lists them in
order, ``get`` returns one or raises :class:`~percep_rag.errors.UnknownNameError` naming
every known entry. Backbones, alignment kinds, store kinds and VLM releases each own one.

>>> colours = Registry("colour")
>>> colours.register("red", 0xFF0000)
>>> colours.get("red") == 0xFF0000, colours.names()
(True, ['red'])
>>> colours.get("blue")
Traceback (most recent call last):
...
percep_rag.errors.UnknownNameError: unknown colour 'blue'; known colours: red
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from percep_rag.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Name -> entry, filled at import time by the module that owns the entries.

    A read-only :class:`~collections.abc.Mapping` too: ``registry[name]`` is ``get(name)``.
    """

    def __init__(self, kind: str, *, error: Callable[[str, list[str]], Exception] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._error = error

    def register(self, name: str, entry: T) -> None:
        """Add ``entry`` under ``name``; a name registered twice is a :class:`ConfigError`."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name raises an error listing the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = self.names()
            raise (self._error or (lambda n, k: UnknownNameError(self.kind, n, k)))(name, known) from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
