"""``serve --watch``: re-sync a collection when the files of its source folder change, debounced.

A thread looks at each source every ``interval`` seconds (names, sizes and modification times
of its files; no extra dependency, and it works on network file systems where change
notifications do not). A change starts a wait: the sync runs once the folder has looked the
same for ``settle`` seconds, so a copy of a hundred files is one sync, not a hundred. Each sync
is the one ``POST /collections/{name}/sync`` runs (:func:`~percep_rag.serve.writes.sync_collection`),
and its report line goes to ``report`` (the service's log).

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> snapshot(folder) == snapshot(folder)
True
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

logger = logging.getLogger("percep_rag.serve")

Snapshot = frozenset[tuple[str, int, int]]


def snapshot(source: Path) -> Snapshot:
    """What the watcher compares: ``(path, size, mtime_ns)`` of every file under ``source`` (or of the file)."""
    if source.is_file():
        stat = source.stat()
        return frozenset({(str(source), stat.st_size, stat.st_mtime_ns)})
    found = set()
    for folder, _, names in os.walk(source):
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # gone between the listing and the stat: the next look sees it
                continue
            found.add((path, stat.st_size, stat.st_mtime_ns))
    return frozenset(found)


class SourceWatcher:
    """Calls ``sync(name)`` for each source in ``sources`` that changed and then stayed still for ``settle`` s.

    ``sync`` returns the report line to log; an exception is logged and the watch goes on.
    """

    def __init__(
        self,
        sources: Mapping[str, Path],
        sync: Callable[[str], str],
        *,
        interval: float = 1.0,
        settle: float = 2.0,
        report: Callable[[str], None] | None = None,
    ):
        self._sources = dict(sources)
        self._sync = sync
        self._interval = interval
        self._settle = settle
        self._report = report or logger.info
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, Snapshot | None] = {}
        self._changed_at: dict[str, float] = {}
        #: Syncs run so far (tests, the log).
        self.syncs = 0

    def start(self) -> SourceWatcher:
        """Look at the sources as they are now, then watch them on a thread."""
        self.look()
        self._thread = threading.Thread(target=self._watch, name="percep-rag-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (a sync running now finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def look(self, now: float | None = None) -> list[str]:
        """One look at every source at time ``now`` (monotonic seconds); the names synced by it."""
        now = time.monotonic() if now is None else now
        synced = []
        for name, path in self._sources.items():
            current = _safe_snapshot(path)
            if name not in self._seen:
                self._seen[name] = current
            elif current != self._seen[name]:
                self._seen[name] = current
                self._changed_at[name] = now  # still changing: wait until it settles
            elif name in self._changed_at and now - self._changed_at[name] >= self._settle:
                del self._changed_at[name]
                if self._run(name):
                    synced.append(name)
        return synced

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.look()

    def _run(self, name: str) -> bool:
        try:
            line = self._sync(name)
        except Exception as error:  # noqa: BLE001 - a failed sync is logged; the next change tries again
            self._report(f"watch: sync of {name!r} failed: {error}")
            return False
        self.syncs += 1
        self._report(f"watch: {line}")
        return True


def _safe_snapshot(path: Path) -> Snapshot | None:
    try:
        return snapshot(path)
    except OSError:
        return None
