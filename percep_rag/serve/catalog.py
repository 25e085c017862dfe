"""The collections one service answers for, each with its store, its own embedder and a retriever.

Collections may come from several stores; each request touches only its collection's store,
so a store that goes away fails its own collections (503) while the others keep serving.
Collections that share an embedder share its :class:`~percep_rag.serve.batching.EmbeddingQueue`,
so their concurrent queries batch together.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from percep_rag.embedder import AlignedEmbedder
from percep_rag.retrieval import ExampleRetriever
from percep_rag.serve.batching import EmbeddingQueue, QueuedEmbedder
from percep_rag.serve.errors import ApiError
from percep_rag.serve.settings import ServeSettings
from percep_rag.store.base import VectorStore

#: Payload fields whose distinct values the page offers as filters.
FACET_FIELDS = ("label", "split")
#: Most distinct values listed per facet.
MAX_FACET_VALUES = 500


@dataclass(frozen=True)
class ServedCollection:
    """One collection to serve: its ``name``, the ``store`` holding it and the ``embedder`` that wrote it."""

    name: str
    store: VectorStore
    embedder: AlignedEmbedder


@dataclass
class _Entry:
    served: ServedCollection
    retriever: ExampleRetriever
    facets: dict[str, list[Any]] | None = None
    labels: dict[str, list[str]] = field(default_factory=dict)


class Catalog:
    """Name -> retriever for every served collection; the one place requests find their collection."""

    def __init__(self, collections: Iterable[ServedCollection], settings: ServeSettings):
        self._entries: dict[str, _Entry] = {}
        self._queues: dict[int, EmbeddingQueue] = {}
        self._lock = threading.Lock()
        self._concurrency = settings.max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None
        batch = settings.max_batch if settings.batching else 1
        try:
            for served in collections:
                if served.name in self._entries:
                    raise ValueError(f"collection {served.name!r} is served twice (from two stores?)")
                queue = self._queues.get(id(served.embedder))
                if queue is None:
                    queue = EmbeddingQueue(
                        served.embedder, max_batch=batch, name=served.name, timeout=settings.embed_timeout_s
                    )
                    self._queues[id(served.embedder)] = queue
                queued = QueuedEmbedder(served.embedder, queue)
                retriever = ExampleRetriever(served.store, served.name, queued)  # type: ignore[arg-type]
                self._entries[served.name] = _Entry(served, retriever)
        except BaseException:
            self.close()
            raise

    @property
    def names(self) -> list[str]:
        """The served collections, sorted."""
        return sorted(self._entries)

    @property
    def queues(self) -> list[EmbeddingQueue]:
        """One embedding queue per distinct embedder."""
        return list(self._queues.values())

    def entry(self, name: str) -> _Entry:
        """The collection ``name`` serves (404 naming the served ones when it is not one)."""
        found = self._entries.get(name)
        if found is None:
            served = ", ".join(self.names) or "none"
            raise ApiError(404, f"no collection {name!r} is served here (collections: {served})")
        return found

    def retriever(self, name: str) -> ExampleRetriever:
        """The retriever of ``name`` (its embedder runs on the collection's queue)."""
        return self.entry(name).retriever

    def store(self, name: str) -> VectorStore:
        """The store holding ``name``."""
        return self.entry(name).served.store

    def facets(self, name: str) -> dict[str, list[Any]]:
        """Distinct values of :data:`FACET_FIELDS` over the collection (read once, then kept)."""
        entry = self.entry(name)
        if entry.facets is None:
            values: dict[str, set[Any]] = {key: set() for key in FACET_FIELDS}
            for point in entry.served.store.iterate(name):
                for key in FACET_FIELDS:
                    value = point.payload.get(key)
                    if isinstance(value, str | int) and len(values[key]) < MAX_FACET_VALUES:
                        values[key].add(value)
            with self._lock:
                entry.facets = {key: sorted(found, key=str) for key, found in values.items() if found}
        return entry.facets

    def class_names(self, name: str, filter: Mapping[str, object] | None) -> list[str]:
        """The labels of the points that pass ``filter`` (what ``classify`` chooses among by default)."""
        entry = self.entry(name)
        key = repr(sorted((filter or {}).items(), key=str))
        if key not in entry.labels:
            labelled = entry.served.store.iterate(name, filter)
            found = sorted({str(p.payload["label"]) for p in labelled if p.payload.get("label")})
            with self._lock:
                if len(entry.labels) > 64:
                    entry.labels.clear()
                entry.labels[key] = found
        return entry.labels[key]

    async def run(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` on a worker thread, at most ``max_concurrent`` at once (the others wait, idle)."""
        if self._limiter is None:  # made on the event loop, on first use
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=self._limiter)

    def start(self) -> None:
        """Start the embedding workers (the app's lifespan does, in the process that serves)."""
        for queue in self._queues.values():
            queue.start()

    def close(self) -> None:
        """Stop the embedding workers (the stores belong to the caller); :meth:`start` runs them again."""
        for queue in self._queues.values():
            queue.close()
