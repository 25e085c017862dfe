"""Sync a collection with its source: after indexing, drop what the source no longer holds.

A catalog changes: images are replaced at the same path, withdrawn, renamed, copied. A point is
one image content and lists every file holding it (its ``records``, :mod:`percep_rag.point_records`),
so :func:`sync_records` indexes what is new and then keeps every list exact:

* a file added with bytes already stored joins that point's list; one removed, renamed or
  relabelled changes only its own entry (a **relink**: the payload is rewritten, vectors unchanged);
* a point **removed** once its last record is gone, counted as **replaced** when one of its
  uris is still in the source with other content.

The stat fast path (as git's index and rsync): each entry records its file's size, mtime (ns),
inode and device when it was read. A file whose stat is still the one recorded under its uri
keeps that content id without being read; only new files and files whose stat changed are
read and hashed, so a sync that changes nothing costs a directory walk, a stat per file and one
scan of the stored payloads. ``checksum=True`` reads every file: a content change that kept
size and mtime (``touch -d`` back, or a tool restoring mtimes) is seen only then, the same
trade-off as rsync's default. Entries without a stat (points written before stats, a file
modified within :data:`~percep_rag.point_records.RACY_NS` of being read) are read once more.

Crash safety comes from the order and from deciding afresh each time: new content is indexed
first (idempotent, durable per batch), then lists are rewritten (those that gain a record
first), then points whose last record is gone are deleted. A point whose image is in the
source is never deleted, so ``kill -9`` at any moment loses nothing still in the source, and
running the same sync again recomputes what is left to do from the store and the files and
ends in the synced state. A record whose file cannot be read, or read but not decoded (a copy
in progress), keeps its old entry and point (reported as failed, never mistaken for a
withdrawn image). A file that changes while sync runs stands for what indexing read last, and
a point this sync wrote is never deleted.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from percep_rag.store import open_store
>>> from percep_rag.datasets.records import scan_folder
>>> from PIL import Image
>>> import tempfile, pathlib, shutil
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("red", "green", "blue"):
...     Image.new("RGB", (32, 32), name).save(folder / f"{name}.png")
>>> _ = shutil.copy(folder / "red.png", folder / "red-copy.png")
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> store = open_store(":memory:")
>>> print(sync_records(scan_folder(folder), embedder=embedder, store=store, collection="c", progress=False))
c: 3 added, 0 kept, 0 replaced, 0 removed, 0 relinked, 0 failed; 4 of 4 files read
>>> (folder / "blue.png").unlink()
>>> (folder / "red-copy.png").unlink()
>>> Image.new("RGB", (32, 32), "white").save(folder / "red.png")
>>> _ = (folder / "green.png").rename(folder / "lime.png")
>>> print(sync_records(scan_folder(folder), embedder=embedder, store=store, collection="c", progress=False))
c: 1 added, 1 kept, 1 replaced, 1 removed, 1 relinked, 0 failed; 2 of 2 files read
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
from percep_rag.indexing import (
    DEFAULT_PAYLOAD_INDEXES,
    IndexReport,
    index_records,
    read_record_stat,
    rewrite_payloads,
)
from percep_rag.io.sources import stat_source
from percep_rag.point_records import (
    CONTENT_FIELDS,
    STAT_FIELDS,
    STAT_KEY,
    content_fields,
    payload_records,
    point_payload,
    record_entry,
    recorded_stat_key,
    stat_key,
)
from percep_rag.store import CollectionOptions, PayloadType, VectorStore

#: Points read, relinked or deleted per store request.
SYNC_BATCH = 1024

#: A stat as compared: (size, mtime_ns, ino, dev).
StatKey = tuple[Any, Any, Any, Any]


def _by_uri(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(entries, key=lambda e: str(e.get("uri", "")))


@dataclass
class StoredState:
    """What a collection holds, from one scan of its payloads (no vectors): its records lists
    only (what sync compares), about the size of the source's own record list.

    ``lists``: point id -> its records, sorted by uri; ``well_formed``: the points whose payload
    is exactly :func:`~percep_rag.point_records.point_payload` of that list (not so: written
    before ``records`` existed); ``by_uri``: uri -> ``(point id, recorded stat)`` of every
    entry holding it (a uri in two points: a sync cut short while moving it).
    """

    lists: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    well_formed: set[str] = field(default_factory=set)
    by_uri: dict[str, list[tuple[str, StatKey | None]]] = field(default_factory=dict)

    def add(self, point_id: str, payload: Mapping[str, Any]) -> None:
        """Take in one stored point."""
        listed = payload.get("records")
        entries = listed if listed else payload_records(payload)
        if listed and _is_primary_of(payload, listed):
            self.well_formed.add(point_id)
        self.lists[point_id] = entries if point_id in self.well_formed else _by_uri(entries)
        for entry in entries:
            uri = str(entry.get("uri", ""))
            self.by_uri.setdefault(uri, []).append((point_id, recorded_stat_key(entry)))

    def entries(self, point_id: str) -> list[dict[str, Any]]:
        """The stored records of ``point_id`` (copies)."""
        return [dict(entry) for entry in self.lists[point_id]]


def _is_primary_of(payload: Mapping[str, Any], listed: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``payload`` is :func:`~percep_rag.point_records.point_payload` of ``listed`` (the
    same check, without building it)."""
    uris = [str(entry.get("uri", "")) for entry in listed]
    if uris != sorted(uris):
        return False
    primary = {key: value for key, value in listed[0].items() if key != STAT_KEY and key not in CONTENT_FIELDS}
    top = {key: value for key, value in payload.items() if key not in CONTENT_FIELDS}
    return top == primary


def stored_state(store: VectorStore, collection: str, ids: Collection[str] | None = None) -> StoredState:
    """:class:`StoredState` of ``collection`` (of the points ``ids`` only, when given); empty for
    a collection that does not exist."""
    state = StoredState()
    if not store.has_collection(collection):
        return state
    if ids is None:
        points = store.iterate(collection, batch=SYNC_BATCH)
    else:
        wanted = list(ids)
        points = (p for start in range(0, len(wanted), SYNC_BATCH)
                  for p in store.retrieve(collection, wanted[start : start + SYNC_BATCH]))  # fmt: skip
    for point in points:
        state.add(point.id, point.payload)
    return state


def source_stats(records: Sequence[ImageRecord]) -> dict[str, StatKey | None]:
    """uri -> each record's file's stat now (``None``: none, e.g. missing), nothing read.

    >>> source_stats([ImageRecord(id="x", uri="/nonexistent.png")])
    {'/nonexistent.png': None}
    """
    found: dict[str, StatKey | None] = {}
    for record in records:
        now = stat_source(record.uri)
        found[record.uri] = None if now is None else stat_key(now)
    return found


def unchanged_records(
    records: Sequence[ImageRecord], state: StoredState, stats: Mapping[str, StatKey | None]
) -> dict[str, tuple[str, StatKey]]:
    """uri -> (stored point id, stat) of the records whose file's stat is the one recorded
    under their uri: their content id is known without reading them.

    >>> state = StoredState(by_uri={"a.png": [("id-a", (5, 1, 2, 3))], "b.png": [("id-b", (5, 1, 2, 3))]})
    >>> unchanged_records([ImageRecord(id="a", uri="a.png"), ImageRecord(id="b", uri="b.png")], state,
    ...                   {"a.png": (5, 1, 2, 3), "b.png": (6, 9, 2, 3)})
    {'a.png': ('id-a', (5, 1, 2, 3))}
    """
    unchanged: dict[str, tuple[str, StatKey]] = {}
    for record in records:
        now = stats.get(record.uri)
        if now is None:
            continue
        matches = {pid for pid, recorded in state.by_uri.get(record.uri, ()) if recorded == now}
        if len(matches) == 1:
            unchanged[record.uri] = (matches.pop(), now)
    return unchanged


@dataclass
class SourceRead:
    """What reading records found: uri -> point id, uri -> recorded stat, and the failures."""

    ids: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)


def source_ids(records: Sequence[ImageRecord], collection: str) -> SourceRead:
    """Read and hash every record (what a dry run does instead of indexing).

    >>> source_ids([ImageRecord(id="x", uri="/nonexistent.png")], "c").failures[0].record_id
    'x'
    """
    found = SourceRead()
    for record in records:
        try:
            _, _, pid, stat = read_record_stat(record, collection)
        except ImageDecodeError as error:
            found.failures.append(Failure(record_id=record.id, source=error.source, reason=error.reason))
        else:
            found.ids[record.uri] = pid
            found.stats[record.uri] = stat
    return found


@dataclass
class SyncPlan:
    """What a sync changes. ``add``: content ids of the source not stored; ``kept``: stored and
    still in the source; ``replaced`` / ``removed``: stored ids to delete (one of their uris is /
    none is still in the source); ``relink``: stored id -> its new records list (growing lists
    first); ``relinked``: how many of those change records (not only their files' stats)."""

    add: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    relink: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    relinked: int = 0

    @property
    def stale(self) -> list[str]:
        """Every stored id the sync deletes."""
        return [*self.replaced, *self.removed]


def _without_stats(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in entry.items() if key != STAT_KEY} for entry in entries]


def plan_sync(
    state: StoredState,
    records: Sequence[ImageRecord],
    ids_by_uri: Mapping[str, str],
    stats_by_uri: Mapping[str, Mapping[str, Any] | None],
    unreadable: Collection[str] = (),
    *,
    keep: Collection[str] = (),
    quiet: Collection[str] = (),
) -> SyncPlan:
    """Compare the source (``ids_by_uri`` and the stats to record, ``stats_by_uri``, of its
    readable ``records``) with the stored ``state``.

    ``unreadable`` uris keep their stored entries (and so their points); no point in ``keep``
    (what this sync wrote) is deleted, and rewriting one in ``quiet`` (written by this sync, its
    list maybe partial) is not counted as a relink.
    """
    desired: dict[str, dict[str, dict[str, Any]]] = {}  # point id -> uri -> entry
    for record in records:
        pid = ids_by_uri.get(record.uri)
        if pid is not None:
            desired.setdefault(pid, {})[record.uri] = record_entry(record.payload(), stats_by_uri.get(record.uri))
    protected = set(unreadable)
    holding_protected = {pid for uri in protected for pid, _ in state.by_uri.get(uri, ())}
    plan = SyncPlan(add=set(desired) - set(state.lists))
    growing: dict[str, list[dict[str, Any]]] = {}
    others: dict[str, list[dict[str, Any]]] = {}
    for pid, stored in state.lists.items():
        final = desired.get(pid, {})
        if pid in holding_protected:
            final = {**{e["uri"]: e for e in state.entries(pid) if e.get("uri") in protected}, **final}
        if not final:
            if pid in keep:
                continue
            uris = [str(e.get("uri", "")) for e in state.entries(pid)]
            (plan.replaced if any(uri in ids_by_uri for uri in uris) else plan.removed).append(pid)
            continue
        plan.kept.add(pid)
        entries = _by_uri(final.values())
        if pid in state.well_formed and entries == stored:
            continue
        before = state.entries(pid)
        (growing if set(final) - {e.get("uri") for e in before} else others)[pid] = [dict(e) for e in entries]
        if pid not in quiet and _without_stats(entries) != _without_stats(_by_uri(before)):
            plan.relinked += 1
    plan.relink = {**growing, **others}
    return plan


def apply_sync(store: VectorStore, collection: str, plan: SyncPlan, *, progress: bool = False) -> None:
    """Rewrite the relinked points' lists (their content fields kept, vectors unchanged), then
    delete the stale points (both idempotent)."""
    relink = list(plan.relink)
    for start in range(0, len(relink), SYNC_BATCH):
        chunk = store.retrieve(collection, relink[start : start + SYNC_BATCH])
        rewrite_payloads(
            store, collection, {p.id: point_payload(plan.relink[p.id], content_fields(p.payload)) for p in chunk}
        )
    stale = plan.stale
    starts = range(0, len(stale), SYNC_BATCH)
    for start in tqdm(starts, desc=f"removing from {collection}", unit="batch", disable=not progress or not stale):
        store.delete(collection, stale[start : start + SYNC_BATCH])


@dataclass
class SyncReport:
    """What one sync did (or, with ``dry_run``, would do); ``read`` of ``records`` files were read."""

    collection: str
    added: int = 0
    kept: int = 0
    replaced: int = 0
    removed: int = 0
    relinked: int = 0
    failures: list[Failure] = field(default_factory=list)
    dry_run: bool = False
    index: IndexReport | None = None
    records: int = 0
    read: int = 0

    def __str__(self) -> str:
        would = " (dry run: nothing changed)" if self.dry_run else ""
        return (
            f"{self.collection}: {self.added} added, {self.kept} kept, {self.replaced} replaced, "
            f"{self.removed} removed, {self.relinked} relinked, {len(self.failures)} failed{would}; "
            f"{self.read} of {self.records} files read"
        )


def report_of(collection: str, plan: SyncPlan, failures: list[Failure], *, dry_run: bool) -> SyncReport:
    """The :class:`SyncReport` of ``plan``."""
    return SyncReport(
        collection=collection,
        added=len(plan.add),
        kept=len(plan.kept),
        replaced=len(plan.replaced),
        removed=len(plan.removed),
        relinked=plan.relinked,
        failures=failures,
        dry_run=dry_run,
    )


#: What sync_after calls to stat the source: records -> uri -> stat (``None``: none).
StatSource = Callable[[Sequence[ImageRecord]], Mapping[str, "StatKey | None"]]


def sync_after(
    opened: Callable[[], AbstractContextManager[VectorStore]],
    collection: str,
    records: Sequence[ImageRecord],
    index: Callable[[Sequence[ImageRecord]], IndexReport] | None,
    *,
    checksum: bool = False,
    stats: StatSource | None = None,
    progress: bool = False,
) -> SyncReport:
    """The sync steps around an indexing run ``index(records to read)`` (``None``: a dry run).

    Shared by :func:`sync_records` and the Ray path (:func:`percep_rag.distributed.sync_with_ray`):
    ``opened()`` gives the store for one step (not held while ``index`` runs, which may open
    it itself: an Edge store admits one opener); ``stats(records)`` stats the files
    (:func:`source_stats` by default; the Ray path stats in tasks). Only the records whose stat
    is not the one recorded go to ``index`` (all of them with ``checksum``); see the module docstring.

    After indexing, the source is what indexing read last (a file replaced while the sync runs
    stands for its newest content, whose point indexing just wrote); a file indexing could not
    read or decode keeps its old entry, and no point this sync wrote is deleted.
    """
    with opened() as store:
        state = stored_state(store, collection)
    now = {} if checksum else (stats or source_stats)(records)
    unchanged = unchanged_records(records, state, now)
    to_read = [record for record in records if record.uri not in unchanged]
    known_ids = {uri: pid for uri, (pid, _) in unchanged.items()}
    known_stats = {uri: dict(zip(STAT_FIELDS, key, strict=True)) for uri, (_, key) in unchanged.items()}
    if index is None:
        found = source_ids(to_read, collection)
        plan = plan_sync(
            state,
            records,
            {**known_ids, **found.ids},
            {**known_stats, **found.stats},
            [f.source for f in found.failures],
        )
        report = report_of(collection, plan, found.failures, dry_run=True)
    else:
        indexed = index(to_read)
        failed = {f.source for f in indexed.failures}
        current = {uri: pid for uri, pid in {**known_ids, **indexed.point_ids}.items() if uri not in failed}
        unreadable = failed | {r.uri for r in to_read if r.uri not in indexed.point_ids}
        with opened() as store:
            # What this run wrote joins the state (its lists may lack copies met in later chunks).
            written = stored_state(store, collection, indexed.written_ids - set(state.lists))
            for pid, listed in written.lists.items():
                state.lists[pid] = listed
                state.well_formed |= written.well_formed & {pid}
            plan = plan_sync(
                state,
                records,
                current,
                {**known_stats, **indexed.stats},
                unreadable,
                keep=indexed.written_ids,
                quiet=set(written.lists),
            )
            apply_sync(store, collection, plan, progress=progress)
        report = report_of(collection, plan, indexed.failures, dry_run=False)
        report.added = len(plan.kept & indexed.written_ids)
        report.kept = len(plan.kept) - report.added
        report.index = indexed
    report.records, report.read = len(records), len(to_read)
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
    checksum: bool = False,
    progress: bool = True,
    on_upsert: Callable[[int], None] | None = None,
    collection_options: CollectionOptions | None = None,
) -> SyncReport:
    """Index ``records`` into ``collection``, then relink and remove so that every point lists
    exactly the records holding its image (see the module docstring); ``dry_run`` only reports
    what it would do. Files whose stat is the one recorded are not read unless ``checksum``.
    ``on_upsert(n)`` follows each durable write of the indexing step.

    Example: ``sync_records(load_records("catalog/"), embedder=e, store=s, collection="catalog")``
    """

    def index(to_read: Sequence[ImageRecord]) -> IndexReport:
        if not to_read and store.has_collection(collection):
            # Nothing to read: the same checks as indexing (embedder, payload indexes), no more.
            indexes = {**DEFAULT_PAYLOAD_INDEXES, **(payload_indexes or {})}
            store.ensure_collection(collection, embedder.fingerprint, payload_indexes=indexes)
            return IndexReport(collection=collection)
        return index_records(
            to_read,
            embedder=embedder,
            store=store,
            collection=collection,
            dataset=dataset,
            payload_indexes=payload_indexes,
            progress=progress,
            on_upsert=on_upsert,
            collection_options=collection_options,
            list_copies=False,
        )

    return sync_after(
        lambda: nullcontext(store), collection, records, None if dry_run else index, checksum=checksum,
        progress=progress,
    )  # fmt: skip
