"""The write side of a service: add uploaded images, delete points, sync a collection from its source.

Writes run the library's own code on the service's own store (the one process an Edge store
admits): :func:`~percep_rag.indexing.write_points` for uploads, :func:`~percep_rag.catalog.matching_ids`
for deletions, :func:`~percep_rag.sync.sync_records` / :func:`~percep_rag.indexing.index_records`
for a sync. Every embedding goes through the collection's queue (:class:`QueuedIndexer`), so
the worker thread stays the embedder's only user and writes batch with the queries.

Consistency: one write at a time per collection (a lock); searches never wait for it. Each
point is written whole (vectors and payload in one upsert) and deleted whole, so a search
during a write sees every point as it was before or after, never half of one.

Uploaded images are kept in the collection's ``uploads`` folder (see :mod:`percep_rag.uploads`),
which a sync adds to the source's records: a sync from the source folder keeps what was uploaded.

>>> WriteTarget().source is None
True
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from percep_rag.embedder import EmbeddingResult
from percep_rag.errors import ImageDecodeError
from percep_rag.io.decode import ImageFailure, decode_image_bytes
from percep_rag.serve.errors import ApiError

#: Payload fields an upload may not set: the service decides them.
RESERVED_FIELDS = frozenset({"uri", "record_id", "content_hash", "label", "split"})


@dataclass(frozen=True)
class WriteTarget:
    """Where one collection's writes come from and go: its ``source`` (a folder or manifest
    that ``sync`` reads) and its ``uploads`` folder (where uploaded images are kept)."""

    source: Path | None = None
    uploads: Path | None = None


class Writes:
    """Per collection: its :class:`WriteTarget` and the lock that makes its writes one at a time.

    ``on_upsert(n)`` follows every durable write of ``n`` points (logs, tests).

    >>> writes = Writes({"c": WriteTarget(source=Path("/photos"))})
    >>> writes.target("c").source, writes.target("other").source
    (PosixPath('/photos'), None)
    """

    def __init__(
        self, targets: Mapping[str, WriteTarget] | None = None, *, on_upsert: Callable[[int], None] | None = None
    ):
        self._targets = dict(targets or {})
        self._locks: dict[str, threading.Lock] = {}
        self._counts: dict[str, int] = {}
        self._guard = threading.Lock()
        self.on_upsert = on_upsert

    def target(self, name: str) -> WriteTarget:
        """``name``'s target (none given: no source, no uploads folder)."""
        return self._targets.get(name, WriteTarget())

    @property
    def sources(self) -> dict[str, str]:
        """Collection -> its source, for the owner file."""
        return {name: str(t.source) for name, t in self._targets.items() if t.source is not None}

    def lock(self, name: str) -> threading.Lock:
        """The lock held while ``name`` is written."""
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def count_after(self, name: str, store: Any, change: int | None) -> int:
        """``name``'s point count after a write that changed it by ``change`` points (``None``: count again).

        Called under :meth:`lock`. Counted once, then kept up to date by each write's exact
        change: an exact count of a large Edge collection holds the interpreter for tens of
        milliseconds, which ``/healthz`` would wait for after every upload. (The service is the
        only writer of an Edge store; a sync counts again.)
        """
        if change is None or name not in self._counts:
            self._counts[name] = store.count(name)
        else:
            self._counts[name] += change
        return self._counts[name]


class QueuedIndexer:
    """What :func:`~percep_rag.indexing.index_records` needs of an embedder, embedding on the
    collection's queue (``embedder``: the catalog's :class:`~percep_rag.serve.batching.QueuedEmbedder`).

    Images are decoded here, on the writing thread; a bad one is reported, the rest embedded.
    It never compiles the forward for a large job (``prepare_for_job``): the queries keep theirs.
    """

    def __init__(self, embedder: Any, max_pixels: int | None = None):
        self._embedder = embedder
        self._max_pixels = max_pixels

    @property
    def fingerprint(self) -> Any:
        return self._embedder.fingerprint

    @property
    def batch_size(self) -> int:
        return int(self._embedder.batch_size)

    def prepare_for_job(self, images: int) -> None:
        """Nothing: the live service's forward stays as it is."""

    def embed_many(
        self, sources: Sequence[Any], *, on_batch: Callable[[EmbeddingResult], None] | None = None, **_: Any
    ) -> None:
        """Embed ``sources`` (image bytes) a batch at a time, handing each batch to ``on_batch``."""
        size = max(1, self.batch_size)
        for start in range(0, len(sources), size):
            images, indices, failures = [], [], []
            for index in range(start, min(start + size, len(sources))):
                try:
                    images.append(_decode(sources[index], f"image {index}", self._max_pixels))
                    indices.append(index)
                except ImageDecodeError as error:
                    failures.append(ImageFailure(source=error.source, reason=error.reason, index=index))
            both = self._embedder.embed_both(images) if images else None
            dim = self._embedder.dim
            result = EmbeddingResult(
                base=both.base if both is not None else np.zeros((0, self._embedder.base_dim), np.float32),
                aligned=both.aligned if both is not None else np.zeros((0, dim), np.float32),
                indices=indices,
                failures=failures,
            )
            if on_batch is not None:
                on_batch(result)


def _decode(data: Any, name: str, max_pixels: int | None) -> Any:
    if isinstance(data, bytes | bytearray):
        kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
        return decode_image_bytes(bytes(data), source_name=name, **kwargs)
    return data


def upload_payload(text: str | None) -> dict[str, Any]:
    """The ``payload`` form field: a JSON object of extra payload fields (422 otherwise).

    >>> upload_payload('{"sku": "A1", "price": 3}')
    {'sku': 'A1', 'price': 3}
    """
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ApiError(422, f"payload: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ApiError(422, f"payload: a JSON object of fields, not {type(value).__name__}")
    reserved = sorted(RESERVED_FIELDS & set(value))
    if reserved:
        raise ApiError(422, f"payload: {', '.join(reserved)} are set by the service (send label and split as fields)")
    return value


def forget_changes(catalog: Any, name: str) -> None:
    """Forget what the catalog keeps of ``name`` (facets, class names): its points changed."""
    entry = catalog.entry(name)
    entry.facets = None
    entry.labels = {}


def sync_collection(
    catalog: Any,
    writes: Writes,
    settings: Any,
    name: str,
    dry_run: bool = False,
    remove: bool = True,
    checksum: bool = False,
) -> dict[str, Any]:
    """``index --sync`` of ``name``'s source (with its uploads) on the served store; ``remove=False``:
    ``index`` (additions only); ``checksum``: every file read (``--checksum``). The answer of
    ``POST /collections/{name}/sync``.

    Raises :class:`~percep_rag.serve.errors.ApiError` (409) when ``name`` has no source.
    """
    from percep_rag.datasets.sources import load_source
    from percep_rag.indexing import index_records
    from percep_rag.sync import sync_records
    from percep_rag.uploads import uploaded_records

    target = writes.target(name)
    retriever = catalog.retriever(name)
    if target.source is None:
        detail = f"this service was started without a source folder for {name!r} (serve --source {name}=DIR)"
        raise ApiError(409, detail, "no_source")
    loaded = load_source(target.source)
    records = [*loaded.records, *(record for record, _ in uploaded_records(target.uploads))]
    common: dict[str, Any] = {
        "embedder": QueuedIndexer(retriever.embedder, settings.max_pixels),
        "store": retriever.store,
        "collection": name,
        "dataset": loaded.dataset,
        "payload_indexes": loaded.payload_indexes,
        "progress": False,
        "on_upsert": writes.on_upsert,
    }
    with writes.lock(name):
        if remove:
            report = sync_records(records, dry_run=dry_run, checksum=checksum, **common)
            index = report.index
        else:
            index = None if dry_run else index_records(records, **common)
            report = None
        if not dry_run:
            forget_changes(catalog, name)
        count = writes.count_after(name, retriever.store, None)
    answer: dict[str, Any] = {
        "collection": name,
        "source": str(target.source),
        "dry_run": dry_run,
        "count": count,
        "index": None if index is None else str(index),
    }
    if report is not None:
        answer |= {
            "report": str(report),
            "added": report.added,
            "kept": report.kept,
            "replaced": report.replaced,
            "removed": report.removed,
            "relinked": report.relinked,
            "read": report.read,
        }
    elif index is not None:
        answer |= {"report": str(index), "added": index.indexed, "already_present": index.already_present}
    failures = report.failures if report is not None else (index.failures if index is not None else [])
    answer["failed"] = [{"source": f.source, "reason": f.reason} for f in failures]
    return answer
