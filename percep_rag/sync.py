"""Sync a collection with its source: after indexing, drop what the source no longer holds.

A catalog changes: images are replaced at the same path, withdrawn, renamed. Indexing only
adds (point ids are content hashes), so :func:`sync_records` runs it and then

* **removes** the points whose image (content id) is no longer anywhere in the source,
  counting as **replaced** those whose ``uri`` is still in the source with other content;
* **relinks** the points whose image is still in the source under another path or label
  (a renamed or moved file): their payload is rewritten to the record's, vectors unchanged.

Crash safety comes from the order and from deciding afresh each time: new content is indexed
first (idempotent, durable per batch), then payloads are rewritten, then stale points are
deleted. A point whose image is in the source is never deleted, so ``kill -9`` at any moment
loses nothing still in the source, and running the same sync again recomputes what is left
to do from the store and the files and ends in the synced state. A record whose file cannot
be read keeps its old point (reported as failed, never mistaken for a withdrawn image).

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

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from percep_rag.datasets.records import ImageRecord
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ImageDecodeError
from percep_rag.failures import Failure
from percep_rag.indexing import IndexReport, index_records, read_record
from percep_rag.store import CollectionOptions, PayloadType, VectorStore

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


def source_ids(records: Sequence[ImageRecord], collection: str) -> tuple[dict[str, str], list[Failure]]:
    """Read every record: ``{uri: content point id}`` and the records that could not be read.

    >>> source_ids([ImageRecord(id="x", uri="/nonexistent.png")], "c")[1][0].record_id
    'x'
    """
    ids: dict[str, str] = {}
    failures: list[Failure] = []
    for record in records:
        try:
            ids[record.uri] = read_record(record, collection)[2]
        except ImageDecodeError as error:
            failures.append(Failure(record_id=record.id, source=error.source, reason=error.reason))
    return ids, failures


def plan_sync(
    store: VectorStore,
    collection: str,
    records: Sequence[ImageRecord],
    ids_by_uri: Mapping[str, str],
    unreadable: Sequence[str] = (),
) -> SyncPlan:
    """Compare the source (``ids_by_uri`` of its readable ``records``) with the stored points.

    ``unreadable`` uris keep whatever point holds them. Reads every stored point's payload
    once (no vectors); a collection that does not exist yet plans only additions.
    """
    wanted: dict[str, ImageRecord] = {}  # content id -> the first record with it, as indexing keeps
    uris_of: dict[str, set[str]] = {}
    for record in records:
        pid = ids_by_uri.get(record.uri)
        if pid is not None:
            wanted.setdefault(pid, record)
            uris_of.setdefault(pid, set()).add(record.uri)
    plan = SyncPlan()
    if not store.has_collection(collection):
        plan.add = set(wanted)
        return plan
    protected = set(unreadable)
    for point in store.iterate(collection, batch=SYNC_BATCH):
        uri = str(point.payload.get("uri", ""))
        if point.id in wanted:
            plan.kept.add(point.id)
            fields = wanted[point.id].payload()
            if uri not in uris_of[point.id] or any(point.payload.get(k) != v for k, v in fields.items() if k != "uri"):
                plan.relink[point.id] = fields
        elif uri in protected:
            continue
        elif uri in ids_by_uri:
            plan.replaced.append(point.id)
        else:
            plan.removed.append(point.id)
    plan.add = set(wanted) - plan.kept
    return plan


def apply_sync(store: VectorStore, collection: str, plan: SyncPlan, *, progress: bool = False) -> None:
    """Rewrite the relinked payloads, then delete the stale points (both idempotent)."""
    relink = list(plan.relink)
    for start in range(0, len(relink), SYNC_BATCH):
        chunk = store.retrieve(collection, relink[start : start + SYNC_BATCH], with_vectors=True)
        if chunk:
            store.upsert_arrays(
                collection,
                [p.id for p in chunk],
                {name: [p.vectors[name] for p in chunk] for name in store.collection_info(collection).vectors},
                [{**p.payload, **plan.relink[p.id]} for p in chunk],
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
    progress: bool = False,
) -> SyncReport:
    """The sync steps around an indexing run ``index`` (``None``: a dry run, nothing written).

    Shared by :func:`sync_records` and the Ray path (:func:`percep_rag.distributed.sync_with_ray`):
    ``opened()`` gives the store for one step (not held while ``index()`` runs, which may open
    it itself: an Edge store admits one opener).
    """
    ids_by_uri, failures = source_ids(records, collection)
    unreadable = [f.source for f in failures]
    with opened() as store:
        before = plan_sync(store, collection, records, ids_by_uri, unreadable)
    if index is None:
        return report_of(collection, before, failures, dry_run=True)
    indexed = index()
    with opened() as store:
        # Decided again after indexing: only what is stored now and not in the source goes.
        plan = plan_sync(store, collection, records, ids_by_uri, unreadable)
        apply_sync(store, collection, plan, progress=progress)
    report = report_of(collection, plan, indexed.failures, dry_run=False)
    report.added, report.kept = len(before.add & plan.kept), len(plan.kept - before.add)
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

    return sync_after(lambda: nullcontext(store), collection, records, None if dry_run else index, progress=progress)
