"""The store layer: collections of points with ``base`` and ``aligned`` vectors in Qdrant.

One interface (:class:`VectorStore`), three back ends behind :func:`open_store`:
Qdrant Edge on disk (default), qdrant-client in memory or local path, and a Qdrant
server/cluster by URL.

A tour of the interface (every back end behaves the same):

>>> import numpy as np
>>> from percep_rag.config import Fingerprint
>>> from percep_rag.store import open_store, StorePoint, point_id, content_hash
>>> fp = Fingerprint(backbone="tiny", weights_digest="0", random_weights=True,
...     pooling="cls", normalization="l2", alignment="identity", alignment_digest="-",
...     base_dim=4, dim=4)
>>> store = open_store(":memory:")
>>> _ = store.ensure_collection("imgs", fp, payload_indexes={"label": "keyword"})
>>> store.get_fingerprint("imgs").dim
4
>>> pid = point_id(content_hash(b"img-bytes"), "imgs")
>>> v = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
>>> store.upsert("imgs", [StorePoint(pid, {"base": v, "aligned": v}, {"label": "cat"})])
1
>>> store.upsert_arrays("imgs", [point_id("ab", "imgs")], {"base": [[0, 1, 0, 0]], "aligned": [[0, 1, 0, 0]]},
...     [{"label": "dog"}])
1
>>> hits = store.query("imgs", v, using="base", k=1, filter={"label": ["cat", "dog"]})
>>> hits[0].id == pid, store.count("imgs"), store.count("imgs", {"label": "dog"})
(True, 2, 1)
>>> [[h.payload["label"] for h in row] for row in store.query_batch("imgs", [v, v], k=2, exclude_per_query=[[], [pid]])]
[['cat', 'dog'], ['dog']]
>>> [p.payload["label"] for p in store.retrieve("imgs", [pid])]
['cat']
>>> sorted(p.payload["label"] for p in store.iterate("imgs", batch=1))
['cat', 'dog']
>>> store.close()
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
from percep_rag.store.schema import CopyThreshold
from percep_rag.store.spec import StoreSpec

__all__ = [
    "META_POINT_ID",
    "CollectionExistsError",
    "CollectionInfo",
    "CollectionNotFoundError",
    "CollectionOptions",
    "CopyThreshold",
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
