"""``index --sync --engine ray``: the stat pass and the indexing on Ray, then the same relinking
and removal as the local sync.

The steps and their crash-safe order are :func:`percep_rag.sync.sync_after`'s. The files are
stat-ed by Ray tasks (:func:`stat_on_ray`: size, mtime, inode and device, nothing read); the
driver compares the stats with the ones the points recorded, and only new files and files
whose stat changed (all of them with ``checksum``) go to :func:`index_with_ray`, whose tasks
read and hash them. The driver reads no file (a dry run reads the changed ones there: nothing
is indexed).

Example (starts Ray, so not run here)::

    report = sync_with_ray(load_records("catalog/"), spec=EmbedderSpec(backbone="clip-vit-b-32"),
                           store="edge:./qdrant_edge", collection="catalog")
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace

from percep_rag.config import EmbedderSpec
from percep_rag.datasets.records import ImageRecord
from percep_rag.distributed.index import index_with_ray
from percep_rag.distributed.options import RayOptions
from percep_rag.distributed.pipeline import records_dataset
from percep_rag.distributed.runtime import plan_resources, ray_session
from percep_rag.distributed.stages import stat_files
from percep_rag.indexing import IndexReport
from percep_rag.point_records import STAT_FIELDS
from percep_rag.store import CollectionOptions, PayloadType, StoreSpec, VectorStore, open_store
from percep_rag.sync import StatKey, SyncReport, sync_after

#: Files stat-ed per Ray task: a stat costs microseconds, so batches are large.
STAT_BATCH = 4096


def sync_with_ray(
    records: Sequence[ImageRecord],
    *,
    spec: EmbedderSpec,
    store: StoreSpec | str | VectorStore,
    collection: str,
    dataset: str | None = None,
    payload_indexes: Mapping[str, PayloadType] | None = None,
    options: RayOptions | None = None,
    dry_run: bool = False,
    checksum: bool = False,
    progress: bool = True,
    collection_options: CollectionOptions | None = None,
) -> SyncReport:
    """:func:`percep_rag.sync.sync_records` with the stat pass and the indexing on Ray (see
    :func:`index_with_ray`).

    ``store``: a spec, opened for each step, or a store the caller holds open for all of them.
    """
    store_spec = store if isinstance(store, VectorStore) else StoreSpec.parse(store)
    options = options or RayOptions()
    records = records if isinstance(records, list) else list(records)

    def index(to_read: Sequence[ImageRecord]) -> IndexReport:
        if not to_read:  # nothing changed: no embedder to start on the cluster
            with opened() as held:
                if held.has_collection(collection):
                    return IndexReport(collection=collection)
        return index_with_ray(
            to_read,
            spec=spec,
            store=store_spec,
            collection=collection,
            dataset=dataset,
            payload_indexes=payload_indexes,
            options=options,
            progress=progress,
            collection_options=collection_options,
            list_copies=False,
        )

    def opened():
        return nullcontext(store_spec) if isinstance(store_spec, VectorStore) else open_store(store_spec)

    def stats(wanted: Sequence[ImageRecord]) -> dict[str, StatKey | None]:
        return stat_on_ray(wanted, options, batch_size=spec.batch_size, progress=progress)

    with ray_session(options, progress=progress):  # one session for the stat pass and the indexing
        return sync_after(
            opened, collection, records, None if dry_run else index, checksum=checksum, stats=stats, progress=progress
        )


def stat_on_ray(
    records: Sequence[ImageRecord], options: RayOptions, *, batch_size: int = 32, progress: bool = False
) -> dict[str, StatKey | None]:
    """uri -> each record's file's stat now, as :func:`percep_rag.sync.source_stats` gives it,
    taken by Ray tasks (the files must be reachable from the workers, as for indexing).

    Example (starts Ray, so not run here): ``stat_on_ray(load_records("catalog/"), RayOptions())``
    """
    from ray.data import TaskPoolStrategy

    found: dict[str, StatKey | None] = {record.uri: None for record in records}
    if not records:
        return found
    with ray_session(options, progress=progress) as resources:
        plan = plan_resources(options, resources, spec_batch_size=batch_size)
        # Stat-ing is cheap: a few large batches, not one per embedding batch.
        plan = replace(plan, batch_size=max(plan.batch_size, STAT_BATCH)).for_rows(len(records))
        stated = records_dataset(records, range(len(records)), plan).map_batches(
            stat_files,
            batch_size=plan.batch_size,
            batch_format="numpy",
            num_cpus=plan.read_cpus,
            compute=TaskPoolStrategy(size=plan.read_tasks),
        )
        for batch in stated.iter_batches(batch_size=None, batch_format="numpy"):
            for row, stat in zip(batch["row"], batch["stat"], strict=True):
                if stat:
                    values = json.loads(str(stat))
                    found[records[int(row)].uri] = tuple(values[key] for key in STAT_FIELDS)  # type: ignore[assignment]
    return found
