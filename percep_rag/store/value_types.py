"""What ``key=value`` filter texts are read as: the types each payload field holds, cached per collection.

A store scans a collection's payloads once (:func:`~percep_rag.store.filters.stored_value_types`)
and keeps the answer until it next writes to that collection; a scan that a write overtook is
not kept, so a cached answer never predates a write of this store object.

>>> cache = PayloadTypeCache()
>>> cache.get("c", lambda: {"n": frozenset({int})})["n"] == frozenset({int})
True
>>> cache.get("c", lambda: {"n": frozenset({str})})["n"] == frozenset({int})  # cached
True
>>> cache.changed("c")
>>> cache.get("c", lambda: {"n": frozenset({str})})["n"] == frozenset({str})  # scanned anew
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

ValueTypes = Mapping[str, frozenset[type]]


class PayloadTypeCache:
    """Field -> value types per collection, forgotten on each write (thread-safe)."""

    def __init__(self) -> None:
        self._found: dict[str, ValueTypes] = {}
        self._writes: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, name: str, scan: Callable[[], ValueTypes]) -> ValueTypes:
        """The cached types of ``name``, else ``scan()`` (kept unless a write overtook it)."""
        with self._lock:
            cached = self._found.get(name)
            writes = self._writes.get(name, 0)
        if cached is not None:
            return cached
        found = scan()
        with self._lock:
            if self._writes.get(name, 0) == writes:
                self._found[name] = found
        return found

    def changed(self, name: str) -> None:
        """Forget what was read from ``name``'s payloads: the store has just written to it."""
        with self._lock:
            self._writes[name] = self._writes.get(name, 0) + 1
            self._found.pop(name, None)
