"""The qdrant-client back end: in-memory, local path, or a Qdrant server/cluster by URL.

* ``QdrantClientStore.in_memory()``: ``QdrantClient(":memory:")``, for tests and demos.
* ``QdrantClientStore.local(path)``: qdrant-client's local mode on disk (SQLite, exact
  numpy search, loads everything on open; fine up to ~20k points).
* ``QdrantClientStore.remote(url, ...)``: a Qdrant server or cluster over REST, or gRPC
  with ``prefer_grpc=True``. Collections get ``shard_number``, ``replication_factor``
  and ``write_consistency_factor`` from :class:`~percep_rag.store.base.CollectionOptions`.
  Transient failures (connection errors, timeouts, HTTP 5xx and 429, gRPC
  UNAVAILABLE-like codes) are retried with exponential backoff; 4xx are not. When the
  server stays unreachable the call raises :class:`StoreUnavailableError` naming the URL.

Retried writes are safe because point ids are deterministic (same id = same point).

    >>> store = QdrantClientStore.in_memory()
    >>> store.list_collections()
    []
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from percep_rag.store import translate
from percep_rag.store.base import VectorStore
from percep_rag.store.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    StoreError,
    StoreLockedError,
    StoreRequestError,
    StoreUnavailableError,
)
from percep_rag.store.filters import ParsedFilter
from percep_rag.store.ids import META_POINT_ID
from percep_rag.store.retry import RetryPolicy, call_with_retries
from percep_rag.store.schema import (
    CollectionInfo,
    PayloadType,
    ScoredPoint,
    StoredPoint,
    page_from,
    scored_point_from,
    stored_point_from,
)

try:  # grpcio comes with qdrant-client, but keep the REST path importable without it
    import grpc
except ImportError:  # pragma: no cover
    grpc = None  # type: ignore[assignment]

T = TypeVar("T")

#: qdrant-client's model classes, for :mod:`~percep_rag.store.translate`.
CLIENT_MODELS = translate.QdrantModels(
    field_condition=qm.FieldCondition,
    match_value=qm.MatchValue,
    match_any=qm.MatchAny,
    range=qm.Range,
    has_id=lambda ids: qm.HasIdCondition(has_id=ids),
    filter=qm.Filter,
    search_params=qm.SearchParams,
    quantization_search_params=qm.QuantizationSearchParams,
    scalar_int8=lambda quantile, in_ram: qm.ScalarQuantization(
        scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=quantile, always_ram=in_ram or None)
    ),
    binary=lambda bits, in_ram: qm.BinaryQuantization(
        binary=qm.BinaryQuantizationConfig(
            always_ram=in_ram or None,
            encoding={
                "1": qm.BinaryQuantizationEncoding.ONE_BIT,
                "1.5": qm.BinaryQuantizationEncoding.ONE_AND_HALF_BITS,
                "2": qm.BinaryQuantizationEncoding.TWO_BITS,
            }[bits],
            query_encoding=qm.BinaryQuantizationQueryEncoding.SCALAR8BITS,
        )
    ),
    datatype=lambda name: {"float32": None, "float16": qm.Datatype.FLOAT16}[name],
    point=qm.PointStruct,
    payload_types={
        "keyword": qm.PayloadSchemaType.KEYWORD,
        "integer": qm.PayloadSchemaType.INTEGER,
        "float": qm.PayloadSchemaType.FLOAT,
        "bool": qm.PayloadSchemaType.BOOL,
    },
)
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL"}
_MAX_RETRY_AFTER_S = 60.0


class QdrantClientStore(VectorStore):
    """A :class:`VectorStore` over a ``QdrantClient``; build it with a class method.

    ``remote=True`` turns on retries and the server-only collection settings (HNSW,
    quantization, payload indexes, sharding); qdrant-client's local modes ignore them
    (they always search exactly), so they are not sent there.
    """

    upsert_batch_size = 256  # keeps REST bodies of 2 x 768-d points well under 32 MB
    query_batch_size = 64

    def __init__(
        self,
        client: QdrantClient,
        *,
        location: str,
        remote: bool,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ):
        super().__init__()
        self._client = client
        self._location = location
        self._remote = remote
        self._retry = retry or RetryPolicy()
        # A call's retries stop once ``timeout`` seconds have passed, and once a call has found the
        # server unavailable the calls of the next ``timeout`` seconds fail at once (a circuit
        # breaker): a silent server costs a command one time-out in all, not one per call, while a
        # long-lived process (``serve``) still tries again later and recovers when the server does.
        self._budget = timeout
        self._unavailable: tuple[float, StoreUnavailableError] | None = None

    # ----------------------------------------------------------------- construction

    @classmethod
    def in_memory(cls) -> QdrantClientStore:
        """A throw-away store in RAM.

        >>> QdrantClientStore.in_memory().location
        ':memory:'
        """
        return cls(QdrantClient(":memory:"), location=":memory:", remote=False)

    @classmethod
    def local(cls, path: str | os.PathLike[str]) -> QdrantClientStore:
        """qdrant-client's local mode persisted under ``path``.

        >>> import tempfile
        >>> with QdrantClientStore.local(tempfile.mkdtemp()) as store:
        ...     store.list_collections()
        []
        """
        where = str(Path(path).expanduser())
        try:
            client = QdrantClient(path=where)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLockedError(f"local Qdrant store {where} is open elsewhere: {exc}") from exc
            raise StoreError(f"cannot open local Qdrant store {where}: {exc}") from exc
        return cls(client, location=where, remote=False)

    @classmethod
    def remote(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        grpc_port: int = 6334,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> QdrantClientStore:
        """Connect to a Qdrant server and check it answers (with retries).

        Raises :class:`StoreUnavailableError` naming ``url`` when it does not.

        >>> QdrantClientStore.remote("http://127.0.0.1:9", timeout=1, retry=RetryPolicy(attempts=1))
        Traceback (most recent call last):
        ...
        percep_rag.store.errors.StoreUnavailableError: vector store at http://127.0.0.1:9 is unavailable: connect: ...
        """
        client = QdrantClient(
            url=url,
            api_key=api_key,
            prefer_grpc=prefer_grpc,
            grpc_port=grpc_port,
            timeout=timeout,  # type: ignore[arg-type]  # httpx and grpc both take floats
            check_compatibility=False,  # we ping ourselves, with retries and a clear error
        )
        where = f"{url} (gRPC port {grpc_port})" if prefer_grpc else url
        store = cls(client, location=where, remote=True, retry=retry, timeout=timeout)
        try:
            store._call("connect", None, client.get_collections)
        except (CollectionNotFoundError, StoreRequestError) as exc:  # an HTTP server answered, but not as Qdrant
            client.close()
            answer = _describe(exc.__cause__ or exc).splitlines()[0][:120]
            raise StoreUnavailableError(where, f"it does not answer as a Qdrant server ({answer})") from exc
        except BaseException:
            client.close()
            raise
        return store

    @property
    def location(self) -> str:
        return self._location

    # ----------------------------------------------------------------- error handling

    def _call(self, op: str, name: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one client call; retry (remote only) and translate its errors."""
        attempts = 0

        def once() -> T:
            nonlocal attempts
            attempts += 1
            return fn(*args, **kwargs)

        if self._unavailable is not None:
            until, error = self._unavailable
            if time.monotonic() < until:
                raise StoreUnavailableError(self._location, f"{op}: not tried, {error.reason}")
            self._unavailable = None
        try:
            if not self._remote:
                return once()
            return call_with_retries(once, self._retry, _is_transient, retry_after=_retry_after, budget=self._budget)
        except StoreError:
            raise
        except Exception as exc:
            where = f"collection {name!r}" if name else "the store"
            if self._remote and _is_transient(exc):
                error = StoreUnavailableError(self._location, f"{op}: {_describe(exc)}", attempts)
                self._unavailable = (time.monotonic() + (self._budget or 0.0), error)
                raise error from exc
            status = _status(exc)
            if status == "NOT_FOUND" or (not self._remote and "not found" in str(exc).lower()):
                raise CollectionNotFoundError(f"{where} not found in {self._location}") from exc
            if status == "ALREADY_EXISTS":
                raise CollectionExistsError(f"{where} already exists in {self._location}") from exc
            raise StoreRequestError(f"{op} on {where} at {self._location} failed: {_describe(exc)}") from exc

    # ----------------------------------------------------------------- collections

    def _exists(self, name: str) -> bool:
        return bool(self._call("collection_exists", name, self._client.collection_exists, name))

    def _list(self) -> list[str]:
        resp = self._call("list collections", None, self._client.get_collections)
        return [c.name for c in resp.collections]

    def _create(self, name: str, info: CollectionInfo) -> None:
        opts = info.options
        kwargs: dict[str, Any] = {}
        if self._remote:
            kwargs = {
                "hnsw_config": qm.HnswConfigDiff(m=opts.hnsw_m, ef_construct=opts.hnsw_ef_construct),
                "optimizers_config": qm.OptimizersConfigDiff(indexing_threshold=translate.indexing_threshold_kb(info)),
                "shard_number": opts.shard_number,
                "replication_factor": opts.replication_factor,
                "write_consistency_factor": opts.write_consistency_factor,
            }
        self._call(
            "create collection",
            name,
            self._client.create_collection,
            name,
            vectors_config={vec: self._vector_params(info, vec, dim) for vec, dim in info.vectors.items()},
            **kwargs,
        )
        try:
            for field_name, kind in info.payload_indexes.items():
                self._create_payload_index(name, field_name, kind)
            self._write_meta(name, info.to_payload())
        except BaseException:
            # Leave no collection without a fingerprint behind.
            try:
                self._client.delete_collection(name)
            except Exception:  # the original error matters more
                pass
            raise

    def _vector_params(self, info: CollectionInfo, vec: str, dim: int) -> qm.VectorParams:
        if not self._remote:
            return qm.VectorParams(size=dim, distance=qm.Distance.COSINE)
        opts = info.options
        return qm.VectorParams(
            size=dim,
            distance=qm.Distance.COSINE,
            hnsw_config=None if opts.uses_hnsw(vec) else qm.HnswConfigDiff(m=0),
            quantization_config=translate.quantization_config(CLIENT_MODELS, info, vec),
            on_disk=True if opts.on_disk else None,
            datatype=CLIENT_MODELS.datatype(opts.datatype),
        )

    def _drop(self, name: str) -> None:
        self._call("delete collection", name, self._client.delete_collection, name)

    def _read_meta(self, name: str) -> dict[str, Any] | None:
        if not self._exists(name):
            raise CollectionNotFoundError(f"collection {name!r} not found in {self._location}")
        recs = self._call(
            "read metadata", name, self._client.retrieve, name, [META_POINT_ID], with_payload=True, with_vectors=False
        )
        return dict(recs[0].payload or {}) if recs else None

    def _write_meta(self, name: str, meta: dict[str, Any]) -> None:
        point = translate.meta_point(CLIENT_MODELS, meta)
        self._call("write metadata", name, self._client.upsert, name, [point], wait=True)

    def _create_payload_index(self, name: str, field_name: str, kind: PayloadType) -> None:
        if not self._remote:
            return  # local mode has no payload indexes (it warns and ignores them)
        self._call(
            "create payload index",
            name,
            self._client.create_payload_index,
            name,
            field_name,
            translate.payload_schema(CLIENT_MODELS, kind),
            wait=True,
        )

    # ----------------------------------------------------------------- writes

    def _upsert(
        self,
        name: str,
        ids: list[str],
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]],
    ) -> None:
        batch = qm.Batch(ids=ids, vectors={v: a.tolist() for v, a in vectors.items()}, payloads=payloads)
        self._call("upsert", name, self._client.upsert, name, batch, wait=True)

    def _delete(self, name: str, ids: list[str]) -> None:
        self._call("delete points", name, self._client.delete, name, qm.PointIdsList(points=ids), wait=True)

    # ----------------------------------------------------------------- reads

    def _retrieve(
        self,
        name: str,
        ids: list[str],
        *,
        with_payload: bool,
        with_vectors: bool,
        info: CollectionInfo,
    ) -> list[StoredPoint]:
        recs = self._call(
            "retrieve", name, self._client.retrieve, name, ids, with_payload=with_payload, with_vectors=with_vectors
        )
        return [stored_point_from(r, with_vectors) for r in recs]

    def _count(self, name: str, flt: ParsedFilter) -> int:
        flt_model = translate.qdrant_filter(CLIENT_MODELS, flt)
        resp = self._call("count", name, self._client.count, name, count_filter=flt_model, exact=True)
        return int(resp.count)

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
    ) -> list[list[ScoredPoint]]:
        # Local mode is always exact and warns about search params, so send none there.
        params = translate.search_params(CLIENT_MODELS, info, using, exact) if self._remote else None
        requests = [
            qm.QueryRequest(
                query=row,
                using=using,
                filter=translate.qdrant_filter(CLIENT_MODELS, flt),
                limit=k,
                params=params,
                with_payload=with_payload,
                with_vector=with_vectors,
            )
            for row, flt in zip(vectors.tolist(), filters, strict=True)
        ]
        responses = self._call("query", name, self._client.query_batch_points, name, requests)
        return [[scored_point_from(p, with_vectors) for p in r.points] for r in responses]

    def _scroll(
        self,
        name: str,
        flt: ParsedFilter,
        *,
        limit: int,
        offset: str | None,
        with_vectors: bool,
        info: CollectionInfo,
    ) -> tuple[list[StoredPoint], str | None]:
        recs, nxt = self._call(
            "scroll",
            name,
            self._client.scroll,
            name,
            scroll_filter=translate.qdrant_filter(CLIENT_MODELS, flt),
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return page_from(recs, nxt, with_vectors)

    # ----------------------------------------------------------------- maintenance

    def _optimize(self, name: str) -> bool:
        return False  # a server indexes in the background; local mode never indexes

    def _close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------- error classes


def _status(exc: BaseException) -> str | None:
    """A transport-neutral status name: ``NOT_FOUND``, ``ALREADY_EXISTS``, ``HTTP_503``..."""
    if isinstance(exc, UnexpectedResponse) and exc.status_code is not None:
        return {404: "NOT_FOUND", 409: "ALREADY_EXISTS"}.get(exc.status_code, f"HTTP_{exc.status_code}")
    if grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return exc.code().name  # type: ignore[no-any-return]
    return None


def _is_transient(exc: BaseException) -> bool:
    """Connection problems, timeouts, 5xx and 429 are worth retrying; 4xx are not."""
    if isinstance(exc, ResponseHandlingException | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, UnexpectedResponse):
        code = exc.status_code or 0
        return code == 429 or code >= 500
    if grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return exc.code().name in _TRANSIENT_GRPC
    return False


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, UnexpectedResponse) and exc.status_code == 429:
        value = exc.headers.get("retry-after") if exc.headers is not None else None
        try:
            return min(_MAX_RETRY_AFTER_S, max(0.0, float(value))) if value is not None else None
        except ValueError:
            return None  # an HTTP date; fall back to the policy's backoff
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ResponseHandlingException):
        src = exc.source
        return f"{type(src).__name__}: {src}"
    if isinstance(exc, UnexpectedResponse):
        body = exc.content[:300].decode("utf-8", "replace") if exc.content else ""
        return f"HTTP {exc.status_code} {exc.reason_phrase}: {body}".strip()
    if grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"gRPC {exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}"
