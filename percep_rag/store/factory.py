"""``open_store``: from a :class:`~percep_rag.store.spec.StoreSpec` (or its text) to a store.

Each store kind (:data:`~percep_rag.store.spec.StoreKind`) has one opener in
:data:`STORE_KINDS`; back ends are imported only when their kind is opened.

>>> from typing import get_args
>>> from percep_rag.store.spec import StoreKind
>>> STORE_KINDS.names() == list(get_args(StoreKind))
True
>>> STORE_KINDS.get("s3")
Traceback (most recent call last):
...
percep_rag.errors.UnknownNameError: unknown store kind 's3'; known store kinds: edge, memory, local, url
>>> with open_store(":memory:") as store:
...     store.list_collections()
[]
"""

from __future__ import annotations

from collections.abc import Callable

from percep_rag.registry import Registry
from percep_rag.store.base import VectorStore
from percep_rag.store.spec import StoreSpec

#: Store kind -> function opening a store of that kind from its spec.
STORE_KINDS: Registry[Callable[[StoreSpec], VectorStore]] = Registry("store kind")


def _open_edge(spec: StoreSpec) -> VectorStore:
    from percep_rag.store.edge import EdgeStore  # imported lazily: a 36 MB native module

    assert spec.path is not None  # StoreSpec guarantees it
    return EdgeStore(spec.path, auto_optimize=spec.auto_optimize, sync_writes=spec.sync_writes)


def _open_memory(spec: StoreSpec) -> VectorStore:
    from percep_rag.store.client import QdrantClientStore

    return QdrantClientStore.in_memory()


def _open_local(spec: StoreSpec) -> VectorStore:
    from percep_rag.store.client import QdrantClientStore

    assert spec.path is not None  # StoreSpec guarantees it
    return QdrantClientStore.local(spec.path)


def _open_url(spec: StoreSpec) -> VectorStore:
    from percep_rag.store.client import QdrantClientStore

    assert spec.url is not None  # StoreSpec guarantees it
    return QdrantClientStore.remote(
        spec.url,
        api_key=spec.api_key.get_secret_value() if spec.api_key else None,
        prefer_grpc=spec.prefer_grpc,
        grpc_port=spec.grpc_port,
        timeout=spec.timeout,
        retry=spec.retry,
    )


STORE_KINDS.register("edge", _open_edge)
STORE_KINDS.register("memory", _open_memory)
STORE_KINDS.register("local", _open_local)
STORE_KINDS.register("url", _open_url)


def open_store(spec: StoreSpec | str) -> VectorStore:
    """Open the store ``spec`` describes (text is parsed with :meth:`StoreSpec.parse`).

    Raises :class:`~percep_rag.store.errors.StoreUnavailableError` for an unreachable
    server and :class:`~percep_rag.store.errors.StoreLockedError` for an on-disk store
    that another process holds.

    >>> import tempfile
    >>> with open_store(f"edge:{tempfile.mkdtemp()}") as store:
    ...     type(store).__name__
    'EdgeStore'
    """
    spec = StoreSpec.parse(spec)
    return STORE_KINDS.get(spec.kind)(spec)
