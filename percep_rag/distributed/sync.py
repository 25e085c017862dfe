"""``index --sync --engine ray``: index on Ray, then the same removal and relinking as the local sync.

The steps and their crash-safe order are :func:`percep_rag.sync.sync_after`'s; only the
indexing step runs on the cluster. The driver reads the source once more to learn each
file's content id (the files must be readable from the driver, as they are for the hash pass
of a local Ray or a shared file system).

Example (starts Ray, so not run here)::

    report = sync_with_ray(load_records("catalog/"), spec=EmbedderSpec(backbone="clip-vit-b-32"),
                           store="edge:./qdrant_edge", collection="catalog")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext

from percep_rag.config import EmbedderSpec
from percep_rag.datasets.records import ImageRecord
from percep_rag.distributed.index import index_with_ray
from percep_rag.distributed.options import RayOptions
from percep_rag.indexing import IndexReport
from percep_rag.store import CollectionOptions, PayloadType, StoreSpec, VectorStore, open_store
from percep_rag.sync import SyncReport, sync_after


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
    progress: bool = True,
    collection_options: CollectionOptions | None = None,
) -> SyncReport:
    """:func:`percep_rag.sync.sync_records` with the indexing on Ray (see :func:`index_with_ray`).

    ``store``: a spec, opened for each step, or a store the caller holds open for all of them.
    """
    store_spec = store if isinstance(store, VectorStore) else StoreSpec.parse(store)

    def index() -> IndexReport:
        return index_with_ray(
            records,
            spec=spec,
            store=store_spec,
            collection=collection,
            dataset=dataset,
            payload_indexes=payload_indexes,
            options=options,
            progress=progress,
            collection_options=collection_options,
        )

    def opened():
        return nullcontext(store_spec) if isinstance(store_spec, VectorStore) else open_store(store_spec)

    return sync_after(opened, collection, records, None if dry_run else index, dataset=dataset, progress=progress)
