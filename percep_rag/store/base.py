"""The one vector-store interface (value types and errors are re-exported here).

Every back end (:mod:`~percep_rag.store.edge`, :mod:`~percep_rag.store.client`) is a
:class:`VectorStore`. The public methods here validate arguments (with
:mod:`~percep_rag.store.checks`), handle the reserved metadata point and chunk large
requests; back ends implement only the ``_``-prefixed primitives, so the checks behave
the same everywhere.

Where the fingerprint lives
---------------------------
Each collection holds one **reserved point** with id :data:`~percep_rag.store.ids.META_POINT_ID`,
**no vectors** and the payload ``{"__percep_rag_meta__": {...}}`` (fingerprint, vector
sizes, payload indexes, options, format version). Having no vectors, it can never be a
nearest neighbour; ``count``/``scroll``/``iterate`` exclude it with a ``must_not has_id``
condition and ``retrieve``/``existing_ids`` drop it. This works identically on Qdrant Edge,
qdrant-client's local modes and a Qdrant server (Edge has no collection-level metadata),
and the fingerprint travels with the data through snapshots and copies.

A tour of the interface is in :mod:`percep_rag.store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from percep_rag.config import Fingerprint
from percep_rag.errors import ConfigError, DimensionMismatchError, FingerprintMismatchError
from percep_rag.store.backend import StoreBackend
from percep_rag.store.checks import (
    canonical_id,
    check_index_field,
    check_matrix,
    check_name,
    check_payload,
    check_point_id,
    check_queries,
    check_same_embedder,
    check_vector_names,
    new_collection_info,
    point_vectors,
)
from percep_rag.store.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    FilterError,
    InvalidPointError,
    InvalidVectorError,
    StoreError,
    StoreLockedError,
    StoreRequestError,
    StoreUnavailableError,
    UnknownVectorNameError,
)
from percep_rag.store.filters import ParsedFilter, parse_filter, stored_value_types
from percep_rag.store.ids import META_POINT_ID
from percep_rag.store.schema import (
    META_FORMAT,
    CollectionInfo,
    CollectionOptions,
    PayloadType,
    ScoredPoint,
    StoredPoint,
    StorePoint,
)
from percep_rag.store.value_types import PayloadTypeCache

__all__ = [
    "META_FORMAT",
    "CollectionExistsError",
    "CollectionInfo",
    "CollectionNotFoundError",
    "CollectionOptions",
    "FilterError",
    "Filter",
    "InvalidPointError",
    "InvalidVectorError",
    "PayloadType",
    "ScoredPoint",
    "StoreError",
    "StoreLockedError",
    "StorePoint",
    "StoreRequestError",
    "StoreUnavailableError",
    "StoredPoint",
    "UnknownVectorNameError",
    "VectorStore",
]

#: A filter in the dict language of :mod:`percep_rag.store.filters`.
Filter = Mapping[str, object]


class VectorStore(StoreBackend):
    """A set of named collections of points with named cosine vectors and a payload.

    Use as a context manager, or call :meth:`close`. Open one store object per on-disk
    location. Queries may run from several threads; serialise writes.

    Filters (``filter=``) use the dict language of :mod:`percep_rag.store.filters`:
    ``{"label": "cat", "split": ["train", "val"], "count": {"gte": 2}}``.
    """

    #: Points per back-end write call; back ends override.
    upsert_batch_size: int = 256
    #: Requests per back-end batch-query call.
    query_batch_size: int = 256

    def __init__(self) -> None:
        self._infos: dict[str, CollectionInfo] = {}
        self._closed = False
        self._value_types = PayloadTypeCache()

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Flush and release everything; idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._close()  # back ends may still need the cached metadata here
            finally:
                self._infos.clear()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # ----------------------------------------------------------------- collections

    def create_collection(
        self,
        name: str,
        fingerprint: Fingerprint,
        *,
        vectors: Mapping[str, int] | None = None,
        payload_indexes: Mapping[str, PayloadType] | None = None,
        options: CollectionOptions | None = None,
    ) -> CollectionInfo:
        """Create ``name`` recording ``fingerprint``; :class:`CollectionExistsError` if it exists.

        ``vectors`` defaults to ``{"base": fingerprint.base_dim, "aligned": fingerprint.dim}``;
        ``payload_indexes`` maps a payload field to ``keyword|integer|float|bool``.
        """
        self._check_open()
        check_name(name)
        info = new_collection_info(name, fingerprint, vectors, payload_indexes, options)
        if self._exists(name):
            raise CollectionExistsError(f"collection {name!r} already exists in {self.location}")
        try:
            self._create(name, info)
        finally:
            self._changed(name)
        self._infos[name] = info
        return info

    def ensure_collection(
        self,
        name: str,
        fingerprint: Fingerprint,
        *,
        vectors: Mapping[str, int] | None = None,
        payload_indexes: Mapping[str, PayloadType] | None = None,
        options: CollectionOptions | None = None,
    ) -> CollectionInfo:
        """Create ``name``, or check that the existing one was made by the same embedder.

        Raises :class:`~percep_rag.errors.FingerprintMismatchError` listing every differing
        field (``"dim: 768 != 512"``). Missing payload indexes are added; the options of an
        existing collection are the recorded ones (``options`` only applies on creation).
        """
        self._check_open()
        check_name(name)
        if not self._exists(name):
            try:
                return self.create_collection(
                    name, fingerprint, vectors=vectors, payload_indexes=payload_indexes, options=options
                )
            except CollectionExistsError:
                pass  # another process created it meanwhile: check it like any existing collection
        wanted = new_collection_info(name, fingerprint, vectors, payload_indexes, options)
        info = self.collection_info(name)
        check_same_embedder(name, info.fingerprint, fingerprint)
        if info.vectors != wanted.vectors:
            raise ConfigError(f"collection {name!r} has vectors {info.vectors}, requested {wanted.vectors}")
        for field_name, kind in (payload_indexes or {}).items():
            if field_name not in info.payload_indexes:
                info = self.create_payload_index(name, field_name, kind)
        return info

    def collection_info(self, name: str) -> CollectionInfo:
        """The metadata recorded for ``name``; :class:`CollectionNotFoundError` if absent."""
        self._check_open()
        cached = self._infos.get(name)
        if cached is not None:
            return cached
        check_name(name)
        payload = self._read_meta(name)  # raises CollectionNotFoundError
        if payload is None:
            raise FingerprintMismatchError(
                f"collection {name!r} in {self.location} has no percep-rag fingerprint: it is damaged or was "
                "not created by percep-rag; delete it (and re-index) or use another name"
            )
        info = CollectionInfo.from_payload(name, payload)
        self._infos[name] = info
        return info

    def get_fingerprint(self, name: str) -> Fingerprint:
        """The fingerprint recorded when ``name`` was created."""
        return self.collection_info(name).fingerprint

    def has_collection(self, name: str) -> bool:
        """Whether a collection called ``name`` exists."""
        self._check_open()
        check_name(name)
        return self._exists(name)

    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""
        self._check_open()
        return sorted(self._list())

    def delete_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        """Delete ``name`` and all its points; returns whether it existed."""
        self._check_open()
        check_name(name)
        self._infos.pop(name, None)
        if not self._exists(name):
            if missing_ok:
                return False
            raise CollectionNotFoundError(f"collection {name!r} not found in {self.location}")
        try:
            self._drop(name)
        finally:
            self._changed(name)
        return True

    def create_payload_index(self, name: str, field_name: str, kind: PayloadType) -> CollectionInfo:
        """Index payload ``field_name`` as ``kind`` (``keyword|integer|float|bool``)."""
        info = self.collection_info(name)
        check_index_field(field_name, kind)
        self._create_payload_index(name, field_name, kind)
        return self.update_collection_info(name, payload_indexes={**info.payload_indexes, field_name: kind})

    def update_collection_info(self, name: str, **changes: Any) -> CollectionInfo:
        """``name``'s metadata with ``changes`` (:class:`CollectionInfo` fields: ``copy_thresholds``...), written."""
        self._infos[name] = info = self.collection_info(name).model_copy(update=changes)
        self._write_meta(name, info.to_payload())
        return info

    def optimize(self, name: str) -> bool:
        """Build indexes now (blocking); returns whether anything changed.

        A no-op where the back end indexes by itself (server) or never (local client).
        """
        self.collection_info(name)
        return self._optimize(name)

    def payload_value_types(self, name: str) -> Mapping[str, frozenset[type]]:
        """Field -> the types (``bool``, ``int``, ``str``) of every value it holds in ``name``.

        What ``key=value`` filter texts are read as (see
        :func:`~percep_rag.store.filters.stored_value_types`). One pass over the payloads,
        kept until this store object next writes to the collection; writes by another
        process (to a shared server) are seen once this store writes or is reopened.
        """
        return self._value_types.get(name, lambda: stored_value_types(p.payload for p in self.iterate(name, batch=512)))

    def _changed(self, name: str) -> None:
        """Forget what was read from ``name``'s payloads: this store has just written to it."""
        self._value_types.changed(name)

    # ----------------------------------------------------------------- writes

    def upsert(
        self,
        name: str,
        points: Iterable[StorePoint],
        *,
        progress: bool = False,
    ) -> int:
        """Insert or replace ``points`` (same id = same point); returns how many were written.

        Returns only once the write is durable against a killed process.
        """
        pts = list(points)
        if not pts:
            return 0
        arrays = point_vectors(name, self.collection_info(name), pts)
        return self.upsert_arrays(name, [p.id for p in pts], arrays, [dict(p.payload) for p in pts], progress=progress)

    def upsert_arrays(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Mapping[str, Any],
        payloads: Sequence[Mapping[str, Any]] | None = None,
        *,
        progress: bool = False,
    ) -> int:
        """Bulk form of :meth:`upsert`: ``vectors[name]`` is an ``(n, d)`` array per vector name."""
        info = self.collection_info(name)
        n = len(ids)
        if payloads is not None and len(payloads) != n:
            raise InvalidPointError(f"{n} ids but {len(payloads)} payloads")
        check_vector_names(name, info.vectors, vectors)
        arrays = {vec: check_matrix(name, vec, vectors[vec], info.vectors[vec], n) for vec in info.vectors}
        norm_ids = [check_point_id(i) for i in ids]
        clean_payloads = [check_payload(p) for p in payloads] if payloads is not None else [{}] * n
        step = self.upsert_batch_size
        starts = range(0, n, step)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=(n + step - 1) // step, desc=f"upsert {name}", unit="batch")
        try:
            for s in starts:
                e = min(s + step, n)
                self._upsert(name, norm_ids[s:e], {k: a[s:e] for k, a in arrays.items()}, clean_payloads[s:e])
        finally:
            self._changed(name)
        self._after_upsert(name, n)
        return n

    def delete(self, name: str, ids: Iterable[str]) -> None:
        """Delete points by id (absent ids are ignored)."""
        self.collection_info(name)
        norm = [check_point_id(i) for i in ids]
        if norm:
            try:
                self._delete(name, norm)
            finally:
                self._changed(name)

    # ----------------------------------------------------------------- reads

    def retrieve(self, name: str, ids: Iterable[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points with these ids, in no particular order; absent ids are skipped."""
        return self._retrieve_stored(name, ids, with_payload=True, with_vectors=with_vectors)

    def existing_ids(self, name: str, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` already stored (canonical form); for resumable indexing."""
        return {p.id for p in self._retrieve_stored(name, ids, with_payload=False, with_vectors=False)}

    def _retrieve_stored(
        self, name: str, ids: Iterable[str], *, with_payload: bool, with_vectors: bool
    ) -> list[StoredPoint]:
        """Stored points among ``ids``, fetched in chunks, never the reserved point."""
        info = self.collection_info(name)
        wanted = [i for i in map(canonical_id, ids) if i != META_POINT_ID]
        step = 1024
        found: list[StoredPoint] = []
        for s in range(0, len(wanted), step):
            chunk = wanted[s : s + step]
            found.extend(self._retrieve(name, chunk, with_payload=with_payload, with_vectors=with_vectors, info=info))
        return [p for p in found if p.id != META_POINT_ID]

    def count(self, name: str, filter: Filter | None = None) -> int:
        """Exact number of points (matching ``filter``), the reserved point excluded."""
        self.collection_info(name)
        return self._count(name, _user_filter(filter))

    def query(
        self,
        name: str,
        vector: Any,
        *,
        using: str = "aligned",
        k: int = 10,
        filter: Filter | None = None,
        exclude_ids: Iterable[str] = (),
        with_vectors: bool = False,
        with_payload: bool = True,
        exact: bool = False,
    ) -> list[ScoredPoint]:
        """The ``k`` nearest points to ``vector`` by cosine over named vector ``using``.

        ``exclude_ids`` drops given points (e.g. the query itself); ``exact=True`` bypasses
        HNSW and quantization. Raises :class:`DimensionMismatchError` or
        :class:`UnknownVectorNameError` on a bad query.
        """
        q = np.asarray(vector, dtype=np.float32)
        if q.ndim != 1:
            raise DimensionMismatchError(f"query vector must be 1-D, got shape {q.shape}")
        return self.query_batch(
            name,
            q[None, :],
            using=using,
            k=k,
            filter=filter,
            exclude_ids=exclude_ids,
            with_vectors=with_vectors,
            with_payload=with_payload,
            exact=exact,
        )[0]

    def query_batch(
        self,
        name: str,
        vectors: Any,
        *,
        using: str = "aligned",
        k: int = 10,
        filter: Filter | None = None,
        exclude_ids: Iterable[str] = (),
        exclude_per_query: Sequence[Iterable[str]] | None = None,
        with_vectors: bool = False,
        with_payload: bool = True,
        exact: bool = False,
    ) -> list[list[ScoredPoint]]:
        """:meth:`query` for each row of an ``(n, d)`` array, run as back-end batches.

        ``exclude_per_query[i]`` adds ids to exclude for row ``i`` only (leave-one-out).
        """
        info = self.collection_info(name)
        q = check_queries(name, info, using, k, vectors)
        if exclude_per_query is not None and len(exclude_per_query) != len(q):
            raise ValueError(f"exclude_per_query has {len(exclude_per_query)} entries for {len(q)} queries")
        base = parse_filter(filter).with_excluded(map(canonical_id, exclude_ids))
        filters = (
            [base.with_excluded(map(canonical_id, ex)) for ex in exclude_per_query]
            if exclude_per_query is not None
            else [base] * len(q)
        )
        out: list[list[ScoredPoint]] = []
        step = self.query_batch_size
        for s in range(0, len(q), step):
            out.extend(
                self._query_batch(
                    name,
                    q[s : s + step],
                    using=using,
                    k=int(k),
                    filters=filters[s : s + step],
                    with_vectors=with_vectors,
                    with_payload=with_payload,
                    exact=exact,
                    info=info,
                )
            )
        # The reserved point has no vectors, so it cannot be a hit; this is belt and braces.
        return [[h for h in hits if h.id != META_POINT_ID] for hits in out]

    def scroll(
        self,
        name: str,
        filter: Filter | None = None,
        *,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[StoredPoint], str | None]:
        """One page of points in id order and the offset of the next page (``None`` at the end)."""
        info = self.collection_info(name)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        start = canonical_id(offset) if offset is not None else None
        points, nxt = self._scroll(
            name, _user_filter(filter), limit=limit, offset=start, with_vectors=with_vectors, info=info
        )
        return [p for p in points if p.id != META_POINT_ID], nxt

    def iterate(
        self,
        name: str,
        filter: Filter | None = None,
        *,
        batch: int = 256,
        with_vectors: bool = False,
    ) -> Iterator[StoredPoint]:
        """Every point (matching ``filter``), fetched ``batch`` at a time."""
        offset: str | None = None
        while True:
            points, offset = self.scroll(name, filter, limit=batch, offset=offset, with_vectors=with_vectors)
            yield from points
            if offset is None:
                return

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store at {self.location} is closed")


def _user_filter(filter: Filter | None) -> ParsedFilter:
    """A user filter that also hides the reserved point (for count/scroll)."""
    return parse_filter(filter).with_excluded([META_POINT_ID])
