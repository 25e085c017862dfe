"""Sync a collection with its source: after indexing, drop what the source no longer holds.

A catalog changes: images are replaced at the same path, withdrawn, renamed. Indexing only
adds (point ids are content hashes), so :func:`sync_records` runs it and then

* **removes** the points whose image (content id) is no longer anywhere in the source,
  counting as **replaced** those whose ``uri`` is still in the source with other content;
* **relinks** the points whose image is still in the source under another path, label or
  manifest columns (a renamed or moved file, a column cleared): their payload is replaced by
  exactly what a fresh index of the source would store, vectors unchanged.

Crash safety comes from the order and from deciding afresh each time: new content is indexed
first (idempotent, durable per batch), then payloads are rewritten, then stale points are
deleted. A point whose image is in the source is never deleted, so ``kill -9`` at any moment
loses nothing still in the source, and running the same sync again recomputes what is left
to do from the store and the files and ends in the synced state. A record whose file cannot
be read, or read but not decoded (a copy in progress), keeps its old point (reported as failed,
never mistaken for a withdrawn image). A file that changes while sync runs stands for what
indexing read last, and a point this sync wrote is never deleted.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from percep_rag.store import open_store
>>> from percep_rag.datasets.records import scan_folder
>>> from PIL import Image
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("red", "green", "blue"):
...     Image.new("RGB", (32, 32), name).save(folder / f"{name}.png")
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> store = open_store(":memory:")
>>> print(sync_records(scan_folder(folder), embedder=embedder, store=store, collection="c", progress=False))
c: 3 added, 0 kept, 0 replaced, 0 removed, 0 relinked, 0 failed
>>> (folder / "blue.png").unlink()
>>> Image.new("RGB", (32, 32), "white").save(folder / "red.png")
>>> _ = (folder / "green.png").rename(folder / "lime.png")
>>> print(sync_records(scan_folder(folder), embedder=embedder, store=store, collection="c", progress=False))
c: 1 added, 1 kept, 1 replaced, 1 removed, 1 relinked, 0 failed
>>> sorted(p.payload["uri"].rsplit("/", 1)[1] for p in store.iterate("c"))
['lime.png', 'red.png']
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from percep_rag.datasets.records import ImageRecord
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ImageDecodeError
from percep_rag.failures import Failure
from percep_rag.indexing import IndexReport, index_records, read_record, record_payload
from percep_rag.store import CollectionOptions, PayloadType, VectorStore
from percep_rag.store.checks import check_payload

#: Points deleted (or relinked) per store request.
SYNC_BATCH = 1024


@dataclass
class SyncPlan:
    """What a sync changes, decided from the source's content ids and the stored points.

    ``add``: content ids of the source not stored yet; ``kept``: stored and still in the
    source; ``replaced`` / ``removed``: stored ids to delete (their uri is / is not still in
    the source); ``relink``: stored id -> the payload fields of the record it now stands for.
    """

    add: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    relink: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def stale(self) -> list[str]:
        """Every stored id the sync deletes."""
        return [*self.replaced, *self.removed]


@dataclass
class SyncReport:
    """What one sync did (or, with ``dry_run``, would do)."""

    collection: str
    added: int = 0
    kept: int = 0
    replaced: int = 0
    removed: int = 0
    relinked: int = 0
    failures: list[Failure] = field(default_factory=list)
    dry_run: bool = False
    index: IndexReport | None = None

    def __str__(self) -> str:
        would = " (dry run: nothing changed)" if self.dry_run else ""
        return (
            f"{self.collection}: {self.added} added, {self.kept} kept, {self.replaced} replaced, "
            f"{self.removed} removed, {self.relinked} relinked, {len(self.failures)} failed{would}"
        )


def source_ids(records: Sequence[ImageRecord], collection: str) -> tuple[dict[str, str], list[Failure], dict[str, str]]:
    """Read every record: ``{uri: content point id}``, the records that could not be read, and
    ``{point id: content hash}``.

    >>> source_ids([ImageRecord(id="x", uri="/nonexistent.png")], "c")[1][0].record_id
    'x'
    """
    ids: dict[str, str] = {}
    digests: dict[str, str] = {}
    failures: list[Failure] = []
    for record in records:
        try:
            _, digest, pid = read_record(record, collection)
        except ImageDecodeError as error:
            failures.append(Failure(record_id=record.id, source=error.source, reason=error.reason))
        else:
            ids[record.uri] = pid
            digests[pid] = digest
    return ids, failures, digests


def plan_sync(
    store: VectorStore,
    collection: str,
    records: Sequence[ImageRecord],
    ids_by_uri: Mapping[str, str],
    unreadable: Collection[str] = (),
    *,
    dataset: str | None = None,
    digests: Mapping[str, str] | None = None,
    keep: Collection[str] = (),
) -> SyncPlan:
    """Compare the source (``ids_by_uri`` of its readable ``records``) with the stored points.

    ``unreadable`` uris keep whatever point holds them, and so do the point ids in ``keep``
    (what this sync wrote). A point whose image is in the source is relinked unless its payload
    is exactly what indexing the source now would store (:func:`~percep_rag.indexing.record_payload`
    with ``dataset``; ``digests`` maps point ids to content hashes, else the stored hash is
    used). Reads every stored point's payload once (no vectors); a collection that does not
    exist yet plans only additions.
    """
    wanted: dict[str, ImageRecord] = {}  # content id -> the first record with it, as indexing keeps
    for record in records:
        pid = ids_by_uri.get(record.uri)
        if pid is not None:
            wanted.setdefault(pid, record)
    plan = SyncPlan()
    if not store.has_collection(collection):
        plan.add = set(wanted)
        return plan
    protected = set(unreadable)
    kept_anyway = set(keep)
    for point in store.iterate(collection, batch=SYNC_BATCH):
        uri = str(point.payload.get("uri", ""))
        if point.id in wanted:
            plan.kept.add(point.id)
            digest = (digests or {}).get(point.id) or str(point.payload.get("content_hash", ""))
            fresh = check_payload(record_payload(wanted[point.id], digest, dataset))
            if point.payload.get("pixel_hash"):  # a content field (issue 38): relinking keeps it
                fresh = {**fresh, "pixel_hash": point.payload["pixel_hash"]}
            if point.payload != fresh:
                plan.relink[point.id] = fresh
        elif uri in protected or point.id in kept_anyway:
            continue
        elif uri in ids_by_uri:
            plan.replaced.append(point.id)
        else:
            plan.removed.append(point.id)
    plan.add = set(wanted) - plan.kept
    return plan


def apply_sync(store: VectorStore, collection: str, plan: SyncPlan, *, progress: bool = False) -> None:
    """Rewrite the relinked payloads (replaced whole, as a fresh index writes them), then delete
    the stale points (both idempotent)."""
    relink = list(plan.relink)
    for start in range(0, len(relink), SYNC_BATCH):
        chunk = store.retrieve(collection, relink[start : start + SYNC_BATCH], with_vectors=True)
        if chunk:
            store.upsert_arrays(
                collection,
                [p.id for p in chunk],
                {name: [p.vectors[name] for p in chunk] for name in store.collection_info(collection).vectors},
                [plan.relink[p.id] for p in chunk],
            )
    stale = plan.stale
    starts = range(0, len(stale), SYNC_BATCH)
    for start in tqdm(starts, desc=f"removing from {collection}", unit="batch", disable=not progress or not stale):
        store.delete(collection, stale[start : start + SYNC_BATCH])


def report_of(collection: str, plan: SyncPlan, failures: list[Failure], *, dry_run: bool) -> SyncReport:
    """The :class:`SyncReport` of ``plan``."""
    return SyncReport(
        collection=collection,
        added=len(plan.add),
        kept=len(plan.kept),
        replaced=len(plan.replaced),
        removed=len(plan.removed),
        relinked=len(plan.relink),
        failures=failures,
        dry_run=dry_run,
    )


def sync_after(
    opened: Callable[[], AbstractContextManager[VectorStore]],
    collection: str,
    records: Sequence[ImageRecord],
    index: Callable[[], IndexReport] | None,
    *,
    dataset: str | None = None,
    progress: bool = False,
) -> SyncReport:
    """The sync steps around an indexing run ``index`` (``None``: a dry run, nothing written).

    Shared by :func:`sync_records` and the Ray path (:func:`percep_rag.distributed.sync_with_ray`):
    ``opened()`` gives the store for one step (not held while ``index()`` runs, which may open
    it itself: an Edge store admits one opener). ``dataset`` is the one indexing records.

    After indexing, the source is what indexing read last (a file replaced while the sync runs
    stands for its newest content, whose point indexing just wrote); a file indexing could not
    read or decode keeps its old point, and no point this sync wrote is deleted.
    """
    ids_by_uri, failures, digests = source_ids(records, collection)
    unreadable = [f.source for f in failures]
    with opened() as store:
        before = plan_sync(store, collection, records, ids_by_uri, unreadable, dataset=dataset, digests=digests)
    if index is None:
        return report_of(collection, before, failures, dry_run=True)
    indexed = index()
    failed = {f.source for f in indexed.failures}
    current = {uri: pid for uri, pid in {**ids_by_uri, **indexed.point_ids}.items() if uri not in failed}
    still_unreadable = failed | {uri for uri in unreadable if uri not in indexed.point_ids}
    with opened() as store:
        # Decided again after indexing: only what is stored now and not in the source goes.
        plan = plan_sync(
            store,
            collection,
            records,
            current,
            still_unreadable,
            dataset=dataset,
            digests=digests,
            keep=indexed.written_ids,
        )
        apply_sync(store, collection, plan, progress=progress)
    report = report_of(collection, plan, indexed.failures, dry_run=False)
    report.added = len(plan.kept & indexed.written_ids)
    report.kept = len(plan.kept) - report.added
    report.index = indexed
    return report


def sync_records(
    records: Sequence[ImageRecord],
    *,
    embedder: AlignedEmbedder,
    store: VectorStore,
    collection: str,
    dataset: str | None = None,
    payload_indexes: Mapping[str, PayloadType] | None = None,
    dry_run: bool = False,
    progress: bool = True,
    on_upsert: Callable[[int], None] | None = None,
    collection_options: CollectionOptions | None = None,
) -> SyncReport:
    """Index ``records`` into ``collection``, then remove and relink what the source no longer
    holds (see the module docstring); ``dry_run`` only reports what it would do.
    ``on_upsert(n)`` follows each durable write of the indexing step.

    Example: ``sync_records(load_records("catalog/"), embedder=e, store=s, collection="catalog")``
    """

    def index() -> IndexReport:
        return index_records(
            records,
            embedder=embedder,
            store=store,
            collection=collection,
            dataset=dataset,
            payload_indexes=payload_indexes,
            progress=progress,
            on_upsert=on_upsert,
            collection_options=collection_options,
        )

    return sync_after(
        lambda: nullcontext(store), collection, records, None if dry_run else index, dataset=dataset, progress=progress
    )
