"""Indexing: image records -> embed (base and aligned vectors in one pass) -> upsert.

Point ids are UUIDv5 of each image's content hash, so indexing is idempotent: images
already in the collection are skipped before any embedding, and a run killed at any moment
(even ``kill -9``) and started again ends with exactly one point per good image. Every upsert
returns only once it is durable.

Files with the same bytes (one photo uploaded for several products) become one point (one
vector, one search hit) that keeps every one of them: its payload's ``records`` list holds
each file's record and the stat of the file as it was read (:mod:`percep_rag.point_records`;
sync's fast path compares it). A record whose point is already stored is added to its list.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from percep_rag.store import open_store
>>> from percep_rag.datasets.records import ImageRecord
>>> from PIL import Image
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("RGB", (32, 32), "red").save(folder / "r.png")
>>> records = [ImageRecord(id="r", uri=str(folder / "r.png"), label="red")]
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> with open_store(":memory:") as store:
...     first = index_records(records, embedder=embedder, store=store, collection="demo", progress=False)
...     again = index_records(records, embedder=embedder, store=store, collection="demo", progress=False)
>>> (first.indexed, again.indexed, again.already_present)
(1, 0, 1)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from percep_rag.datasets.records import ImageRecord
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ImageDecodeError
from percep_rag.failures import Failure
from percep_rag.io.sources import read_image_file
from percep_rag.pixel_backfill import backfill_pixel_hashes
from percep_rag.point_records import content_fields, file_stat, payload_records, point_payload, record_entry
from percep_rag.store import CollectionOptions, PayloadType, VectorStore, content_hash, point_id

#: Payload fields users filter on; each gets a payload index.
DEFAULT_PAYLOAD_INDEXES: dict[str, PayloadType] = {
    "label": "keyword",
    "split": "keyword",
    "dataset": "keyword",
    "record_id": "keyword",
}


#: A record that was not indexed, and why (``record_id``, ``source``, ``reason``).
IndexFailure = Failure


@dataclass
class IndexReport:
    """What one indexing run did. ``indexed`` counts new points written by this run.

    ``point_ids``: each readable record's uri -> the point id of the content this run read
    there (written now or already stored); ``stats``: uri -> the stat recorded for the file as
    this run read it (``None``: none, see :func:`~percep_rag.point_records.file_stat`);
    ``written_ids``: the points this run wrote. Sync decides from them what the source holds,
    since a file may change while it runs. ``duplicates`` counts the records whose bytes another
    record of this run holds: kept in that record's point, not embedded again.
    """

    collection: str
    records: int = 0
    indexed: int = 0
    already_present: int = 0
    duplicates: int = 0
    failures: list[IndexFailure] = field(default_factory=list)
    seconds: float = 0.0
    point_ids: dict[str, str] = field(default_factory=dict, repr=False)
    written_ids: set[str] = field(default_factory=set, repr=False)
    stats: dict[str, dict[str, Any] | None] = field(default_factory=dict, repr=False)

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        copies = f"{self.duplicates} byte-identical copies kept in their point's records, " if self.duplicates else ""
        return (
            f"{self.collection}: {self.indexed} new points for {self.records} records in {self.seconds:.1f}s "
            f"({self.images_per_second:.1f} img/s); {self.already_present} already present, "
            f"{copies}{len(self.failures)} failed"
        )


def index_records(
    records: Sequence[ImageRecord],
    *,
    embedder: AlignedEmbedder,
    store: VectorStore,
    collection: str,
    dataset: str | None = None,
    payload_indexes: Mapping[str, PayloadType] | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    on_upsert: Callable[[int], None] | None = None,
    collection_options: CollectionOptions | None = None,
    list_copies: bool = True,
) -> IndexReport:
    """Embed ``records`` and upsert them into ``collection`` (created if needed).

    The collection records the embedder's fingerprint; indexing into a collection made by
    another embedder raises :class:`~percep_rag.errors.FingerprintMismatchError`. Bad
    images are reported in the result's ``failures`` and the rest are indexed.
    ``on_upsert(n)`` is called after each durable write of ``n`` points.
    ``collection_options`` (shards, replicas, HNSW) apply when the collection is created.
    A record whose image is stored already (or was written earlier in this run) is added to
    that point's ``records`` at the end (a record of the same uri replaced), unless
    ``list_copies`` is false (sync rewrites every point's list itself).
    """
    started = time.perf_counter()
    indexes = {**DEFAULT_PAYLOAD_INDEXES, **(payload_indexes or {})}
    store.ensure_collection(collection, embedder.fingerprint, payload_indexes=indexes, options=collection_options)
    report = IndexReport(collection=collection, records=len(records))
    chunk = chunk_size or max(embedder.batch_size * 8, 256)
    embedder.prepare_for_job(len(records))
    seen: set[str] = set()
    copies: dict[str, dict[str, dict[str, Any]]] = {}  # point id -> uri -> entry, for stored points
    with tqdm(total=len(records), desc=f"indexing {collection}", unit="img", disable=not progress) as bar:
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            _index_chunk(part, embedder, store, collection, dataset, seen, report, on_upsert, copies)
            bar.update(len(part))
            bar.set_postfix(new=report.indexed, failed=len(report.failures), refresh=False)
    if list_copies:
        add_to_records(store, collection, copies)
    backfill_pixel_hashes(store, collection, progress=progress)  # points indexed before pixel hashes existed
    store.optimize(collection)
    report.seconds = time.perf_counter() - started
    return report


def _index_chunk(
    records: Sequence[ImageRecord],
    embedder: AlignedEmbedder,
    store: VectorStore,
    collection: str,
    dataset: str | None,
    seen: set[str],
    report: IndexReport,
    on_upsert: Callable[[int], None] | None,
    copies: dict[str, dict[str, dict[str, Any]]],
) -> None:
    pending: list[tuple[ImageRecord, bytes, str, str]] = []
    stats: list[dict[str, Any] | None] = []
    for record in records:
        try:
            data, digest, pid, stat = read_record_stat(record, collection)
        except ImageDecodeError as error:
            report.failures.append(IndexFailure(record_id=record.id, source=error.source, reason=error.reason))
        else:
            pending.append((record, data, digest, pid))
            stats.append(stat)
            report.point_ids[record.uri] = pid
            report.stats[record.uri] = stat
    wanted = select_new(store, collection, [pid for *_, pid in pending], seen, report)
    todo = [item for item, keep in zip(pending, wanted, strict=True) if keep]
    new = {pid for *_, pid in todo}
    entries: dict[str, list[dict[str, Any]]] = {}  # the records of each point written now
    for (record, _, _, pid), stat in zip(pending, stats, strict=True):
        entry = record_entry(record.payload(), stat)
        if pid in new:
            entries.setdefault(pid, []).append(entry)
        else:
            copies.setdefault(pid, {})[record.uri] = entry
    if not todo:
        return

    def write(batch) -> None:
        items = [todo[i] for i in batch.indices]
        written = write_points(
            store,
            collection,
            [record for record, *_ in items],
            [digest for *_, digest, _ in items],
            [pid for *_, pid in items],
            batch.base,
            batch.aligned,
            dataset,
            entries=[entries[pid] for *_, pid in items],
            pixel_hashes=batch.pixel_hashes,
        )
        report.indexed += written
        report.written_ids.update(pid for *_, pid in items)
        for failure in batch.failures:
            record = todo[failure.index][0]
            report.failures.append(IndexFailure(record_id=record.id, source=record.uri, reason=failure.reason))
        if on_upsert is not None:
            on_upsert(written)

    embedder.embed_many([data for _, data, _, _ in todo], on_batch=write, pixel_hashes=True)


# The steps below are shared with the distributed path (percep_rag.distributed), which runs
# them in other processes: one definition of ids, skipping and payloads for both.


def read_record(record: ImageRecord, collection: str) -> tuple[bytes, str, str]:
    """The image bytes of ``record``, their content hash and the point id they get in ``collection``.

    Raises :class:`~percep_rag.errors.ImageDecodeError` when the file cannot be read.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> _ = path.write_bytes(b"hello")
    >>> data, digest, pid = read_record(ImageRecord(id="a", uri=str(path)), "demo")
    >>> (data, digest[:8], pid == point_id(digest, "demo"))
    (b'hello', '2cf24dba', True)
    """
    return read_record_stat(record, collection)[:3]


def read_record_stat(record: ImageRecord, collection: str) -> tuple[bytes, str, str, dict[str, Any] | None]:
    """:func:`read_record`, and the stat to record for the file as it was read
    (:func:`~percep_rag.point_records.file_stat`; ``None`` for a ``data:`` URI or a file just modified).

    Example: ``data, digest, pid, stat = read_record_stat(record, "imgs")``
    """
    data, opened = read_image_file(record.uri)
    digest = content_hash(data)
    stat = None if opened is None else file_stat(opened, read_at_ns=time.time_ns())
    return data, digest, point_id(digest, collection), stat


def select_new(
    store: VectorStore, collection: str, point_ids: Sequence[str], seen: set[str], report: IndexReport
) -> list[bool]:
    """Which of ``point_ids`` to embed: not seen before in this run and not stored yet.

    Updates ``seen`` and the report's ``duplicates`` and ``already_present`` counts; the
    store is asked once per call (a batched existence check).

    >>> from percep_rag import EmbedderSpec
    >>> from percep_rag.store import open_store
    >>> fingerprint = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")).fingerprint
    >>> report = IndexReport(collection="demo")
    >>> pid = point_id(content_hash(b"x"), "demo")
    >>> with open_store(":memory:") as store:
    ...     _ = store.ensure_collection("demo", fingerprint)
    ...     select_new(store, "demo", [pid, pid], set(), report)
    [True, False]
    >>> (report.duplicates, report.already_present)
    (1, 0)
    """
    fresh: list[str] = []
    for pid in point_ids:
        if pid in seen:
            report.duplicates += 1
        else:
            seen.add(pid)
            fresh.append(pid)
    present = store.existing_ids(collection, fresh) if fresh else set()
    report.already_present += len(present)
    kept = {pid for pid in fresh if pid not in present}
    wanted = []
    for pid in point_ids:
        wanted.append(pid in kept)
        kept.discard(pid)  # a duplicate later in the list is not embedded twice
    return wanted


def write_points(
    store: VectorStore,
    collection: str,
    records: Sequence[ImageRecord],
    digests: Sequence[str],
    point_ids: Sequence[str],
    base: Any,
    aligned: Any,
    dataset: str | None,
    *,
    entries: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    pixel_hashes: Sequence[str] | None = None,
) -> int:
    """Upsert one batch of embedded records durably; returns the number of points written.
    ``pixel_hashes`` (row-aligned, from the decoding step) go into the payload as ``pixel_hash``.

    ``entries[i]``: every record point ``i`` stands for (:func:`~percep_rag.point_records.record_entry`),
    by default ``records[i]`` alone.

    Example: write_points(store, "imgs", records, digests, ids, result.base, result.aligned, None)
    """
    if not len(point_ids):
        return 0
    lists = entries if entries is not None else [[record_entry(record.payload())] for record in records]
    payloads = [
        point_payload(listed, content_of(digest, dataset)) for listed, digest in zip(lists, digests, strict=True)
    ]
    add_pixel_hashes(payloads, pixel_hashes)
    return store.upsert_arrays(collection, list(point_ids), {"base": base, "aligned": aligned}, payloads)


def content_of(digest: str, dataset: str | None) -> dict[str, Any]:
    """The content fields indexing stores (``content_hash``, and ``dataset`` when given).

    >>> content_of("ab12", None)
    {'content_hash': 'ab12'}
    """
    return {"content_hash": digest} if dataset is None else {"content_hash": digest, "dataset": dataset}


def add_to_records(store: VectorStore, collection: str, copies: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> int:
    """Add ``copies`` (point id -> uri -> records entry) to the stored points' ``records``, an
    entry of the same uri replaced; returns how many points changed (rewritten whole, vectors
    unchanged; a point that is not stored is left out).

    Example: ``add_to_records(store, "imgs", {pid: {"/x/b.png": {"record_id": "b", "uri": "/x/b.png"}}})``
    """
    changed = 0
    ids = list(copies)
    for start in range(0, len(ids), COPIES_BATCH):
        updated: dict[str, dict[str, Any]] = {}
        for point in store.retrieve(collection, ids[start : start + COPIES_BATCH]):
            listed = {str(entry.get("uri", "")): entry for entry in payload_records(point.payload)}
            listed.update((uri, dict(entry)) for uri, entry in copies[point.id].items())
            payload = point_payload(list(listed.values()), content_fields(point.payload))
            if payload != point.payload:
                updated[point.id] = payload
        changed += rewrite_payloads(store, collection, updated)
    return changed


def rewrite_payloads(store: VectorStore, collection: str, payloads: Mapping[str, Mapping[str, Any]]) -> int:
    """Replace the payloads of stored points (each point upserted whole with its own vectors, so
    a search sees it before or after, never half); returns how many were rewritten.

    Example: ``rewrite_payloads(store, "imgs", {pid: new_payload})``
    """
    ids = list(payloads)
    names = list(store.collection_info(collection).vectors) if ids else []
    rewritten = 0
    for start in range(0, len(ids), COPIES_BATCH):
        chunk = store.retrieve(collection, ids[start : start + COPIES_BATCH], with_vectors=True)
        if chunk:
            store.upsert_arrays(
                collection,
                [p.id for p in chunk],
                {name: [p.vectors[name] for p in chunk] for name in names},
                [dict(payloads[p.id]) for p in chunk],
            )
            rewritten += len(chunk)
    return rewritten


#: Points read and rewritten per store request when records are added to stored points.
COPIES_BATCH = 1024


def record_payload(record: ImageRecord, digest: str, dataset: str | None) -> dict[str, Any]:
    """The top-level payload fields of a point whose primary record is ``record`` (no ``records``
    list: :func:`write_points` adds it).

    >>> record_payload(ImageRecord(id="a", uri="/x/a.png", label="cat"), "ab12", "demo")
    {'record_id': 'a', 'uri': '/x/a.png', 'label': 'cat', 'content_hash': 'ab12', 'dataset': 'demo'}
    """
    payload = record.payload()
    payload["content_hash"] = digest
    if dataset is not None:
        payload["dataset"] = dataset
    return payload


def add_pixel_hashes(payloads: Sequence[dict[str, Any]], pixel_hashes: Sequence[str] | None) -> None:
    """Set each payload's content field ``pixel_hash`` (:func:`percep_rag.duplicates.pixel_hash`)
    from the row-aligned hashes the decoding step computed (none given, or an empty one: unset).

    >>> payloads = [{"uri": "a.png"}, {"uri": "b.png"}]
    >>> add_pixel_hashes(payloads, ["ab", ""]); payloads
    [{'uri': 'a.png', 'pixel_hash': 'ab'}, {'uri': 'b.png'}]
    """
    for payload, digest in zip(payloads, pixel_hashes or [], strict=False):
        if digest:
            payload["pixel_hash"] = str(digest)
