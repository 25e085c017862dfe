"""Indexing on Ray: the same points as :func:`percep_rag.indexing.index_records`, from many workers.

The driver keeps what must happen in one place: the fingerprint check, skipping images
that are duplicates or already stored (a first, hash-only pass over the files, checked
against the store in batches), the report, and the writes to an Edge or local store,
which one process holds locked. Embedding runs in an actor pool; a Qdrant server is
written by writer actors in parallel. Point ids are content hashes, so a run killed at
any moment (driver included) and started again ends with exactly one point per good image.

Example (starts Ray, so not run here)::

    report = index_with_ray(records, spec=EmbedderSpec(backbone="clip-vit-b-32"),
                            store="http://qdrant:6333", collection="catalog",
                            options=RayOptions(address="auto"))

>>> RayIndexReport(collection="c", indexed=3, stage_seconds={"embed": 1.5}).stage_seconds["embed"]
1.5
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from percep_rag.config import EmbedderSpec, Fingerprint
from percep_rag.datasets.records import ImageRecord
from percep_rag.distributed.options import RayOptions
from percep_rag.distributed.pipeline import (
    Sink,
    cluster_fingerprint,
    embedding_pipeline,
    hashing_pipeline,
    records_dataset,
)
from percep_rag.distributed.runtime import ResourcePlan, plan_resources, ray_session
from percep_rag.distributed.sinks import TIMING_COLUMNS, StoreWriter, write_to_store
from percep_rag.indexing import DEFAULT_PAYLOAD_INDEXES, IndexFailure, IndexReport, add_to_records, select_new
from percep_rag.pixel_backfill import backfill_pixel_hashes
from percep_rag.point_records import record_entry
from percep_rag.store import CollectionOptions, PayloadType, StoreSpec, VectorStore, open_store

#: Point ids checked against the store per request in the hash-only pass.
EXISTENCE_CHECK_BATCH = 1024


@dataclass
class RayIndexReport(IndexReport):
    """An :class:`~percep_rag.indexing.IndexReport` plus where the time went.

    ``stage_seconds``: wall seconds of the hash pass (``hash_pass``) and of the embedding
    pass (``embed_pass``), and the busy seconds summed over workers of ``read``,
    ``embed`` and ``write``; ``actors`` is how many embedding actors ran and
    ``fingerprint`` the embedder's.
    """

    stage_seconds: dict[str, float] = field(default_factory=dict)
    actors: int = 0
    fingerprint: Fingerprint | None = None


def index_with_ray(
    records: Sequence[ImageRecord],
    *,
    spec: EmbedderSpec,
    store: StoreSpec | str | VectorStore,
    collection: str,
    dataset: str | None = None,
    payload_indexes: Mapping[str, PayloadType] | None = None,
    options: RayOptions | None = None,
    progress: bool = True,
    on_upsert: Callable[[int], None] | None = None,
    collection_options: CollectionOptions | None = None,
    list_copies: bool = True,
) -> RayIndexReport:
    """Embed ``records`` on Ray and upsert them into ``collection`` of ``store`` (created if needed).

    ``store`` is a spec (opened here, closed on return) or a store the caller holds open, which
    the driver writes (a ``:memory:`` store lives in its opener only: one opened again is empty).

    As in the local path: a collection made by another embedder raises
    :class:`~percep_rag.errors.FingerprintMismatchError` before anything is embedded, bad
    images are reported in ``failures``, ``on_upsert(n)`` follows each durable write and
    ``collection_options`` (shards, replicas, HNSW) apply when the collection is created.
    Every record is kept: a new point lists all the run's records with its bytes, and (unless
    ``list_copies`` is false) a record whose point is already stored is added to its list.
    """
    started = time.perf_counter()
    records = records if isinstance(records, list) else list(records)
    options = options or RayOptions()
    held = isinstance(store, VectorStore)
    store_spec = None if held else StoreSpec.parse(store)
    report = RayIndexReport(collection=collection, records=len(records))
    # Opened before Ray starts: a store locked by another process fails in a second, not after.
    holding = nullcontext(store) if held else open_store(store_spec)
    with holding as opened, ray_session(options, progress=progress) as resources:
        plan = plan_resources(options, resources, spec_batch_size=spec.batch_size)
        fingerprint = report.fingerprint = cluster_fingerprint(spec, plan)
        indexes = {**DEFAULT_PAYLOAD_INDEXES, **(payload_indexes or {})}
        opened.ensure_collection(collection, fingerprint, payload_indexes=indexes, options=collection_options)

        mark = time.perf_counter()
        todo, entries, copies = _new_positions(records, collection, plan, opened, report)
        report.stage_seconds["hash_pass"] = time.perf_counter() - mark

        mark = time.perf_counter()
        if todo:
            plan = plan.for_rows(len(todo))
            report.actors = plan.actors
            parallel = store_spec is not None and store_spec.kind == "url"
            sink = Sink(StoreWriter, {"store": store_spec, "collection": collection, "dataset": dataset})
            pipeline = embedding_pipeline(
                records_dataset(records, todo, plan, entries), spec, fingerprint, plan, collection,
                sink if parallel else None,
            )  # fmt: skip
            for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
                if not parallel:  # the driver is the single writer of a locked store
                    batch = write_to_store(opened, collection, batch, dataset, records)
                written = _account(batch, records, report)
                if on_upsert is not None:
                    on_upsert(written)
        report.stage_seconds["embed_pass"] = time.perf_counter() - mark
        if list_copies:
            add_to_records(opened, collection, copies)
        backfill_pixel_hashes(opened, collection, progress=progress)  # points indexed before pixel hashes existed
        opened.optimize(collection)
    report.failures.sort(key=_order_of(records))
    report.seconds = time.perf_counter() - started
    return report


def _new_positions(
    records: Sequence[ImageRecord], collection: str, plan: ResourcePlan, store: VectorStore, report: RayIndexReport
) -> tuple[list[int], dict[int, str], dict[str, dict[str, dict]]]:
    """Hash every file on the cluster, then keep (in record order, as the local path does)
    the first record of each new image: not a duplicate and not in the store. Also returns,
    per kept row, the JSON list of every record its point stands for, and for the points
    already stored, the run's records to add to them (point id -> uri -> entry)."""
    point_ids = [""] * len(records)
    hashed = hashing_pipeline(records_dataset(records, range(len(records)), plan), collection, plan)
    for batch in hashed.iter_batches(batch_size=None, batch_format="numpy"):
        for row, pid in zip(batch["row"], batch["point_id"], strict=True):
            point_ids[int(row)] = str(pid)
        _account(batch, records, report)
        report.stage_seconds["read"] = report.stage_seconds.get("read", 0.0) + float(np.sum(batch["read_s"]))
    todo: list[int] = []
    seen: set[str] = set()
    readable = [row for row, pid in enumerate(point_ids) if pid]
    for start in range(0, len(readable), EXISTENCE_CHECK_BATCH):
        rows = readable[start : start + EXISTENCE_CHECK_BATCH]
        wanted = select_new(store, collection, [point_ids[row] for row in rows], seen, report)
        todo.extend(row for row, keep in zip(rows, wanted, strict=True) if keep)
    first_row = {point_ids[row]: row for row in todo}
    listed: dict[int, list[dict]] = {}
    copies: dict[str, dict[str, dict]] = {}
    for row in readable:
        pid, record = point_ids[row], records[row]
        entry = record_entry(record.payload(), report.stats.get(record.uri))
        if pid in first_row:
            listed.setdefault(first_row[pid], []).append(entry)
        else:
            copies.setdefault(pid, {})[record.uri] = entry
    return todo, {row: json.dumps(entries) for row, entries in listed.items()}, copies


def _account(batch: dict[str, np.ndarray], records: Sequence[ImageRecord], report: RayIndexReport) -> int:
    """Add a summary batch's failures, the ids it read and wrote, and busy seconds to ``report``."""
    for row, source, reason in zip(batch["row"], batch["failure_source"], batch["failure_reason"], strict=True):
        if reason:
            record = records[int(row)]
            report.failures.append(IndexFailure(record_id=record.id, source=str(source), reason=str(reason)))
    if "point_id" in batch:  # the embedding pass reads the files again: what it read is the latest
        flags = batch["written"] if "written" in batch else np.zeros(len(batch["row"]), dtype=bool)
        stats = batch["stat"] if "stat" in batch else [""] * len(flags)
        columns = (batch["row"], batch["point_id"], batch["failure_reason"], flags, stats)
        for row, pid, reason, wrote, stat in zip(*columns, strict=True):
            if pid and not reason:
                report.point_ids[records[int(row)].uri] = str(pid)
                report.stats[records[int(row)].uri] = json.loads(stat) if stat else None
            if wrote:
                report.written_ids.add(str(pid))
    written = int(np.sum(batch["written"])) if "written" in batch else 0
    report.indexed += written
    if "written" in batch:  # the hash pass has no stage times but its own
        for column in TIMING_COLUMNS:
            if column in batch:
                stage = column.removesuffix("_s")
                report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + float(np.sum(batch[column]))
    return written


def _order_of(records: Sequence[ImageRecord]) -> Callable[[IndexFailure], int]:
    position = {record.id: i for i, record in enumerate(records)}
    return lambda failure: position.get(failure.record_id or "", len(position))
