"""The one vector-store interface (value types and errors are re-exported here).

Every back end (:mod:`~percep_rag.store.edge`, :mod:`~percep_rag.store.client`) is a
:class:`VectorStore`. The public methods here validate arguments, handle the reserved
metadata point and chunk large requests; back ends implement only the ``_``-prefixed
primitives, so the checks behave the same everywhere.

Where the fingerprint lives
---------------------------
Each collection holds one **reserved point** with id :data:`~percep_rag.store.ids.META_POINT_ID`,
**no vectors** and the payload ``{"__percep_rag_meta__": {...}}`` (fingerprint, vector
sizes, payload indexes, options, format version). Having no vectors, it can never be a
nearest neighbour; ``count``/``scroll``/``iterate`` exclude it with a ``must_not has_id``
condition and ``retrieve``/``existing_ids`` drop it. This works identically on Qdrant Edge,
qdrant-client's local modes and a Qdrant server (Edge has no collection-level metadata),
and the fingerprint travels with the data through snapshots and copies.

Example::

    >>> import numpy as np
    >>> from percep_rag.store import open_store, StorePoint, point_id, content_hash
    >>> fp = Fingerprint(backbone="tiny", weights_digest="0", random_weights=True,
    ...     pooling="cls", normalization="l2", alignment="identity", alignment_digest="-",
    ...     base_dim=4, dim=4)
    >>> with open_store(":memory:") as store:
    ...     _ = store.ensure_collection("imgs", fp, payload_indexes={"label": "keyword"})
    ...     pid = point_id(content_hash(b"img-bytes"), "imgs")
    ...     v = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    ...     _ = store.upsert("imgs", [StorePoint(pid, {"base": v, "aligned": v}, {"label": "cat"})])
    ...     hits = store.query("imgs", v, k=1, filter={"label": "cat"})
    ...     (hits[0].id == pid, store.count("imgs"))
    (True, 1)
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np
from pydantic import ValidationError

from percep_rag._version import __version__
from percep_rag.config import Fingerprint
from percep_rag.errors import ConfigError, DimensionMismatchError, FingerprintMismatchError
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
from percep_rag.store.filters import META_KEY, ParsedFilter, parse_filter
from percep_rag.store.ids import META_POINT_ID, normalize_id
from percep_rag.store.schema import (
    META_FORMAT,
    CollectionInfo,
    CollectionOptions,
    PayloadType,
    ScoredPoint,
    StoredPoint,
    StorePoint,
    default_vectors,
)

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

Filter = Mapping[str, object]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


# --------------------------------------------------------------------------- interface


class VectorStore(ABC):
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

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is (``:memory:``, a path or a URL); for messages."""

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

        Example: store.create_collection("imgs", fp, payload_indexes={"label": "keyword"})
        """
        self._check_open()
        _check_name(name)
        info = _make_info(name, fingerprint, vectors, payload_indexes, options)
        if self._exists(name):
            raise CollectionExistsError(f"collection {name!r} already exists in {self.location}")
        self._create(name, info)
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

        Example: store.ensure_collection("imgs", fp)
        """
        self._check_open()
        _check_name(name)
        wanted = _make_info(name, fingerprint, vectors, payload_indexes, options)
        if not self._exists(name):
            return self.create_collection(
                name, fingerprint, vectors=vectors, payload_indexes=payload_indexes, options=options
            )
        info = self.collection_info(name)
        diffs = info.fingerprint.differences(fingerprint)
        if diffs:
            raise FingerprintMismatchError(
                f"collection {name!r} was written by a different embedder; stored vs requested: {'; '.join(diffs)}"
            )
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
        _check_name(name)
        payload = self._read_meta(name)  # raises CollectionNotFoundError
        if payload is None:
            raise FingerprintMismatchError(
                f"collection {name!r} in {self.location} has no percep-rag fingerprint "
                "(it was not created by percep-rag); use another name or delete it"
            )
        info = CollectionInfo.from_payload(name, payload)
        self._infos[name] = info
        return info

    def get_fingerprint(self, name: str) -> Fingerprint:
        """The fingerprint recorded when ``name`` was created.

        Example: store.get_fingerprint("imgs").dim
        768
        """
        return self.collection_info(name).fingerprint

    def has_collection(self, name: str) -> bool:
        """Whether a collection called ``name`` exists."""
        self._check_open()
        _check_name(name)
        return self._exists(name)

    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""
        self._check_open()
        return sorted(self._list())

    def delete_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        """Delete ``name`` and all its points; returns whether it existed."""
        self._check_open()
        _check_name(name)
        self._infos.pop(name, None)
        if not self._exists(name):
            if missing_ok:
                return False
            raise CollectionNotFoundError(f"collection {name!r} not found in {self.location}")
        self._drop(name)
        return True

    def create_payload_index(self, name: str, field_name: str, kind: PayloadType) -> CollectionInfo:
        """Index payload ``field_name`` as ``kind`` (``keyword|integer|float|bool``)."""
        info = self.collection_info(name)
        if kind not in ("keyword", "integer", "float", "bool"):
            raise ConfigError(f"payload index type must be keyword/integer/float/bool, got {kind!r}")
        if field_name == META_KEY or not field_name:
            raise ConfigError(f"cannot index payload field {field_name!r}")
        self._create_payload_index(name, field_name, kind)
        info = info.model_copy(update={"payload_indexes": {**info.payload_indexes, field_name: kind}})
        self._write_meta(name, info.to_payload())
        self._infos[name] = info
        return info

    def optimize(self, name: str) -> bool:
        """Build indexes now (blocking); returns whether anything changed.

        A no-op where the back end indexes by itself (server) or never (local client).
        """
        self.collection_info(name)
        return self._optimize(name)

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

        Example: store.upsert("imgs", [StorePoint(pid, {"base": v, "aligned": v}, {"label": "cat"})])
        1
        """
        pts = list(points)
        if not pts:
            return 0
        info = self.collection_info(name)
        for p in pts:
            unknown = sorted(set(p.vectors) - set(info.vectors))
            if unknown:
                raise UnknownVectorNameError(
                    f"point {p.id}: collection {name!r} has no vector(s) {unknown}; it has {sorted(info.vectors)}"
                )
            missing = sorted(set(info.vectors) - set(p.vectors))
            if missing:
                raise InvalidPointError(f"point {p.id}: missing vector(s) {missing}")
        arrays: dict[str, np.ndarray] = {}
        for vec, dim in info.vectors.items():
            rows = [np.asarray(p.vectors[vec], dtype=np.float32) for p in pts]
            for p, row in zip(pts, rows, strict=True):
                if row.shape != (dim,):
                    raise DimensionMismatchError(
                        f"point {p.id}: collection {name!r} vector {vec!r} has dimension {dim}, got shape {row.shape}"
                    )
            arrays[vec] = np.stack(rows)
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
        """Bulk form of :meth:`upsert`: ``vectors[name]`` is an ``(n, d)`` array per vector name.

        Example: store.upsert_arrays("imgs", ids, {"base": B, "aligned": A}, payloads)
        """
        info = self.collection_info(name)
        n = len(ids)
        if payloads is not None and len(payloads) != n:
            raise InvalidPointError(f"{n} ids but {len(payloads)} payloads")
        unknown = sorted(set(vectors) - set(info.vectors))
        if unknown:
            raise UnknownVectorNameError(
                f"collection {name!r} has no vector(s) {unknown}; it has {sorted(info.vectors)}"
            )
        missing = sorted(set(info.vectors) - set(vectors))
        if missing:
            raise InvalidPointError(f"collection {name!r}: missing vector(s) {missing}")
        arrays = {vec: _check_matrix(name, vec, vectors[vec], info.vectors[vec], n) for vec in info.vectors}
        norm_ids = [_check_point_id(i) for i in ids]
        clean_payloads = [_check_payload(p) for p in payloads] if payloads is not None else [{}] * n
        step = self.upsert_batch_size
        starts = range(0, n, step)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=(n + step - 1) // step, desc=f"upsert {name}", unit="batch")
        for s in starts:
            e = min(s + step, n)
            self._upsert(name, norm_ids[s:e], {k: a[s:e] for k, a in arrays.items()}, clean_payloads[s:e])
        self._after_upsert(name, n)
        return n

    def delete(self, name: str, ids: Iterable[str]) -> None:
        """Delete points by id (absent ids are ignored)."""
        self.collection_info(name)
        norm = [_check_point_id(i) for i in ids]
        if norm:
            self._delete(name, norm)

    # ----------------------------------------------------------------- reads

    def retrieve(self, name: str, ids: Iterable[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points with these ids, in no particular order; absent ids are skipped.

        Example: [p.payload["label"] for p in store.retrieve("imgs", [pid])]
        ['cat']
        """
        info = self.collection_info(name)
        norm = [i for i in map(_canonical_id, ids) if i != META_POINT_ID]
        if not norm:
            return []
        return [
            p
            for p in self._retrieve(name, norm, with_payload=True, with_vectors=with_vectors, info=info)
            if p.id != META_POINT_ID
        ]

    def existing_ids(self, name: str, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` already stored (canonical form); for resumable indexing."""
        info = self.collection_info(name)
        norm = [i for i in map(_canonical_id, ids) if i != META_POINT_ID]
        found: set[str] = set()
        step = 1024
        for s in range(0, len(norm), step):
            found.update(
                p.id
                for p in self._retrieve(name, norm[s : s + step], with_payload=False, with_vectors=False, info=info)
            )
        found.discard(META_POINT_ID)
        return found

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

        Example: hits = store.query("imgs", v, using="base", k=5, filter={"split": ["train", "val"]})
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

        Example: per_row = store.query_batch("imgs", Q, k=3, exclude_per_query=[[i] for i in ids])
        """
        info = self.collection_info(name)
        if using not in info.vectors:
            raise UnknownVectorNameError(f"collection {name!r} has no vector {using!r}; it has {sorted(info.vectors)}")
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim != 2:
            raise DimensionMismatchError(f"query vectors must be an (n, d) array, got shape {q.shape}")
        dim = info.vectors[using]
        if q.shape[1] != dim:
            raise DimensionMismatchError(
                f"collection {name!r} vector {using!r} has dimension {dim}, the query has {q.shape[1]}"
            )
        if not np.isfinite(q).all():
            raise InvalidVectorError("query vectors contain NaN or infinity")
        if exclude_per_query is not None and len(exclude_per_query) != len(q):
            raise ValueError(f"exclude_per_query has {len(exclude_per_query)} entries for {len(q)} queries")
        base = parse_filter(filter).with_excluded(map(_canonical_id, exclude_ids))
        filters = (
            [base.with_excluded(map(_canonical_id, ex)) for ex in exclude_per_query]
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
        start = _canonical_id(offset) if offset is not None else None
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
        """Every point (matching ``filter``), fetched ``batch`` at a time.

        Example: labels = {p.payload["label"] for p in store.iterate("imgs")}
        """
        offset: str | None = None
        while True:
            points, offset = self.scroll(name, filter, limit=batch, offset=offset, with_vectors=with_vectors)
            yield from points
            if offset is None:
                return

    # ----------------------------------------------------------------- back-end primitives

    @abstractmethod
    def _exists(self, name: str) -> bool: ...

    @abstractmethod
    def _list(self) -> list[str]: ...

    @abstractmethod
    def _create(self, name: str, info: CollectionInfo) -> None:
        """Create the collection, its payload indexes and its reserved point."""

    @abstractmethod
    def _drop(self, name: str) -> None: ...

    @abstractmethod
    def _read_meta(self, name: str) -> dict[str, Any] | None:
        """Payload of the reserved point, ``None`` if absent; CollectionNotFoundError if no collection."""

    @abstractmethod
    def _write_meta(self, name: str, meta: dict[str, Any]) -> None: ...

    @abstractmethod
    def _create_payload_index(self, name: str, field_name: str, kind: PayloadType) -> None: ...

    @abstractmethod
    def _upsert(
        self,
        name: str,
        ids: list[str],
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]],
    ) -> None: ...

    def _after_upsert(self, name: str, n_written: int) -> None:  # noqa: B027 - optional hook
        """Hook after a whole upsert call (e.g. to start indexing); nothing by default."""

    @abstractmethod
    def _delete(self, name: str, ids: list[str]) -> None: ...

    @abstractmethod
    def _retrieve(
        self,
        name: str,
        ids: list[str],
        *,
        with_payload: bool,
        with_vectors: bool,
        info: CollectionInfo,
    ) -> list[StoredPoint]: ...

    @abstractmethod
    def _count(self, name: str, flt: ParsedFilter) -> int: ...

    @abstractmethod
    def _query_batch(
        self,
        name: str,
        vectors: np.ndarray,
        *,
        using: str,
        k: int,
        filters: list[ParsedFilter],
        with_vectors: bool,
        with_payload: bool,
        exact: bool,
        info: CollectionInfo,
    ) -> list[list[ScoredPoint]]: ...

    @abstractmethod
    def _scroll(
        self,
        name: str,
        flt: ParsedFilter,
        *,
        limit: int,
        offset: str | None,
        with_vectors: bool,
        info: CollectionInfo,
    ) -> tuple[list[StoredPoint], str | None]: ...

    @abstractmethod
    def _optimize(self, name: str) -> bool: ...

    @abstractmethod
    def _close(self) -> None: ...

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store at {self.location} is closed")


# --------------------------------------------------------------------------- helpers


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"collection name {name!r} must be 1-128 characters of letters, digits, '_', '-', '.' "
            "starting with a letter or digit"
        )


def _make_info(
    name: str,
    fingerprint: Fingerprint,
    vectors: Mapping[str, int] | None,
    payload_indexes: Mapping[str, PayloadType] | None,
    options: CollectionOptions | None,
) -> CollectionInfo:
    vecs = dict(vectors) if vectors is not None else default_vectors(fingerprint)
    expected = default_vectors(fingerprint)
    for vec_name in ("base", "aligned"):
        if vec_name in vecs and vecs[vec_name] != expected[vec_name]:
            raise DimensionMismatchError(
                f"vector {vec_name!r} of size {vecs[vec_name]} disagrees with the fingerprint "
                f"({'base_dim' if vec_name == 'base' else 'dim'}={expected[vec_name]})"
            )
    for field_name in payload_indexes or {}:
        if field_name == META_KEY or not field_name:
            raise ConfigError(f"cannot index payload field {field_name!r}")
    try:
        return CollectionInfo(
            name=name,
            fingerprint=fingerprint,
            vectors=vecs,
            payload_indexes=dict(payload_indexes or {}),
            options=options or CollectionOptions(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            library_version=__version__,
        )
    except ValidationError as exc:
        raise ConfigError(f"collection {name!r}: {exc}") from exc


def _user_filter(filter: Filter | None) -> ParsedFilter:
    """A user filter that also hides the reserved point (for count/scroll)."""
    return parse_filter(filter).with_excluded([META_POINT_ID])


def _canonical_id(value: object) -> str:
    try:
        return normalize_id(value)
    except ValueError as exc:
        raise InvalidPointError(str(exc)) from None


def _check_point_id(value: object) -> str:
    pid = _canonical_id(value)
    if pid == META_POINT_ID:
        raise InvalidPointError(f"point id {pid} is reserved for percep-rag metadata")
    return pid


def _check_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise InvalidPointError(f"a payload is a dict, got {type(payload).__name__}")
    if META_KEY in payload:
        raise InvalidPointError(f"payload key {META_KEY!r} is reserved for percep-rag metadata")
    return _json_value(payload, "payload")  # type: ignore[return-value]


def _json_value(value: Any, path: str) -> Any:
    """``value`` as plain JSON types; numpy scalars and arrays are converted.

    Back ends disagree on anything else (Edge rejects sets, qdrant-client rejects numpy
    ints), so payloads are made portable here rather than failing differently there.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidPointError(f"{path}: keys must be strings, got {key!r}")
            out[key] = _json_value(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidPointError(f"{path}: {type(value).__name__} is not JSON (use str, int, float, bool, list, dict)")


def _check_matrix(collection: str, vec: str, value: Any, dim: int, n: int) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise DimensionMismatchError(f"vector {vec!r}: expected an array of shape ({n}, {dim}), got {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"collection {collection!r} vector {vec!r} has dimension {dim}, got {arr.shape[1]}"
        )
    if n and not np.isfinite(arr).all():
        raise InvalidVectorError(f"vector {vec!r} contains NaN or infinity")
    if n and not (np.einsum("ij,ij->i", arr, arr) > 0).all():
        raise InvalidVectorError(f"vector {vec!r} has a zero vector; cosine is undefined for it")
    return arr
