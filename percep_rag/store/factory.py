"""``open_store``: from a :class:`~percep_rag.store.spec.StoreSpec` (or its text) to a store.

Example::

    >>> with open_store(":memory:") as store:
    ...     store.list_collections()
    []
"""

from __future__ import annotations

from percep_rag.store.base import VectorStore
from percep_rag.store.spec import StoreSpec


def open_store(spec: StoreSpec | str) -> VectorStore:
    """Open the store ``spec`` describes (text is parsed with :meth:`StoreSpec.parse`).

    Raises :class:`~percep_rag.store.base.StoreUnavailableError` for an unreachable
    server and :class:`~percep_rag.store.base.StoreLockedError` for an on-disk store
    that another process holds.

    Example: open_store("edge:/data/percep-store")
    EdgeStore('/data/percep-store')
    """
    spec = StoreSpec.parse(spec)
    if spec.kind == "edge":
        from percep_rag.store.edge import EdgeStore  # imported lazily: a 36 MB native module

        assert spec.path is not None
        return EdgeStore(spec.path, auto_optimize=spec.auto_optimize, sync_writes=spec.sync_writes)

    from percep_rag.store.client import QdrantClientStore

    if spec.kind == "memory":
        return QdrantClientStore.in_memory()
    if spec.kind == "local":
        assert spec.path is not None
        return QdrantClientStore.local(spec.path)
    assert spec.url is not None
    return QdrantClientStore.remote(
        spec.url,
        api_key=spec.api_key.get_secret_value() if spec.api_key else None,
        prefer_grpc=spec.prefer_grpc,
        grpc_port=spec.grpc_port,
        timeout=spec.timeout,
        retry=spec.retry,
    )
