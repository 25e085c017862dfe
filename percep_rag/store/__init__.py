"""The store layer: collections of points with ``base`` and ``aligned`` vectors in Qdrant.

One interface (:class:`VectorStore`), three back ends behind :func:`open_store`:
Qdrant Edge on disk (default), qdrant-client in memory or local path, and a Qdrant
server/cluster by URL.

Example::

    >>> from percep_rag.store import open_store
    >>> with open_store(":memory:") as store:
    ...     store.list_collections()
    []
"""

from percep_rag.store.base import (
    CollectionExistsError,
    CollectionInfo,
    CollectionNotFoundError,
    CollectionOptions,
    FilterError,
    InvalidPointError,
    InvalidVectorError,
    PayloadType,
    ScoredPoint,
    StoredPoint,
    StoreError,
    StoreLockedError,
    StorePoint,
    StoreRequestError,
    StoreUnavailableError,
    UnknownVectorNameError,
    VectorStore,
)
from percep_rag.store.factory import open_store
from percep_rag.store.ids import META_POINT_ID, content_hash, point_id
from percep_rag.store.retry import RetryPolicy
from percep_rag.store.spec import StoreSpec

__all__ = [
    "META_POINT_ID",
    "CollectionExistsError",
    "CollectionInfo",
    "CollectionNotFoundError",
    "CollectionOptions",
    "FilterError",
    "InvalidPointError",
    "InvalidVectorError",
    "PayloadType",
    "RetryPolicy",
    "ScoredPoint",
    "StoreError",
    "StoreLockedError",
    "StorePoint",
    "StoreRequestError",
    "StoreSpec",
    "StoreUnavailableError",
    "StoredPoint",
    "UnknownVectorNameError",
    "VectorStore",
    "content_hash",
    "open_store",
    "point_id",
]
