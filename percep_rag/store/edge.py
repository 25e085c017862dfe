"""The embedded default: collections on local disk with Qdrant Edge (``qdrant-edge-py``).

Each collection is one ``EdgeShard`` in its own directory ``<root>/<collection>/``
(Edge shards are single collections). Edge is Qdrant's engine in-process: segments,
a write-ahead log, HNSW, payload indexes and quantization, but no background
optimizer, so this module decides when to build indexes:

* after an upsert, when the points not yet indexed reach both
  ``options.index_threshold`` and the number already indexed (the indexed part at
  least doubles each time, so the total build work stays O(n log n) during a bulk
  load, with a plain exact scan in between);
* on :meth:`EdgeStore.optimize` (always) and on :meth:`EdgeStore.close` (when the
  unindexed points reach ``index_threshold``).

Durability: ``update`` appends to the WAL through a memory map before returning,
so a process killed with ``kill -9`` after :meth:`upsert` returned loses nothing
(the page cache survives the process; tested). Surviving an OS crash or power loss
needs the WAL on the platter: pass ``sync_writes=True`` to flush after every upsert
(~25 ms per call measured on this machine), or call :meth:`EdgeStore.flush`.

Collection creation is atomic: the shard is built and its metadata point written in
a hidden temporary directory that is renamed into place.

>>> import tempfile
>>> with EdgeStore(tempfile.mkdtemp()) as store:
...     store.list_collections()
[]
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from percep_rag.store import translate
from percep_rag.store.base import VectorStore
from percep_rag.store.errors import CollectionExistsError, CollectionNotFoundError, StoreError, StoreLockedError
from percep_rag.store.filters import ParsedFilter
from percep_rag.store.ids import META_POINT_ID
from percep_rag.store.schema import (
    CollectionInfo,
    PayloadType,
    ScoredPoint,
    StoredPoint,
    page_from,
    scored_point_from,
    stored_point_from,
)

_CONFIG_FILE = "edge_config.json"
# Hidden folders of a collection being created or deleted: ``<prefix><name>-<pid>-<random>``.
_CREATING, _DELETING = ".creating-", ".deleting-"
# A hidden folder whose name has no live process id is abandoned once it is this old (older layouts).
_ABANDONED_AFTER_S = 3600.0
# Qdrant's default: filtered searches whose candidates fit in 10 MB are scanned exactly.
_FULL_SCAN_THRESHOLD_KB = 10_000

_BINARY_ENCODINGS = {
    "1": qe.BinaryQuantizationEncoding.OneBit,
    "1.5": qe.BinaryQuantizationEncoding.OneAndHalfBits,
    "2": qe.BinaryQuantizationEncoding.TwoBits,
}


def _edge_scalar(value: str | int | bool) -> str | int | np.bool_:
    """A match value as the binding keeps its type: a Python ``bool`` is an ``int`` to it.

    ``qe.MatchValue(value=True).value == 1`` (the binding tries its integer variant first, and
    ``bool`` is a subclass of ``int``), so a filter ``{"flag": True}`` would match the points whose
    ``flag`` is ``1`` and none whose ``flag`` is ``true``. A ``numpy.bool_`` is no ``int`` and is
    extracted as the binding's bool.

    >>> qe.MatchValue(value=_edge_scalar(True)).value is True, qe.MatchValue(value=_edge_scalar(1)).value
    (True, 1)
    """
    return np.bool_(value) if isinstance(value, bool) else value


#: Qdrant Edge's model classes, for :mod:`~percep_rag.store.translate`.
EDGE_MODELS = translate.QdrantModels(
    field_condition=qe.FieldCondition,
    match_value=lambda value: qe.MatchValue(value=_edge_scalar(value)),
    match_any=qe.MatchAny,
    range=qe.RangeFloat,
    has_id=lambda ids: qe.HasIdCondition(point_ids=set(ids)),
    filter=qe.Filter,
    search_params=qe.SearchParams,
    quantization_search_params=qe.QuantizationSearchParams,
    scalar_int8=lambda quantile, in_ram: qe.ScalarQuantizationConfig(
        type=qe.ScalarType.Int8, quantile=quantile, memory=qe.Memory.Pinned if in_ram else None
    ),
    binary=lambda bits, in_ram: qe.BinaryQuantizationConfig(
        encoding=_BINARY_ENCODINGS[bits],
        # Queries stay 8-bit against the 1-2-bit points (asymmetric): better ranking at the same memory.
        query_encoding=qe.BinaryQuantizationQueryEncoding.Scalar8Bits,
        memory=qe.Memory.Pinned if in_ram else None,
    ),
    datatype=lambda name: {"float32": None, "float16": qe.VectorStorageDatatype.Float16}[name],
    point=qe.Point,
    payload_types={
        "keyword": qe.PayloadSchemaType.Keyword,
        "integer": qe.PayloadSchemaType.Integer,
        "float": qe.PayloadSchemaType.Float,
        "bool": qe.PayloadSchemaType.Bool,
    },
)


class EdgeStore(VectorStore):
    """Collections under directory ``path``, one Qdrant Edge shard each.

    ``auto_optimize`` builds indexes after large upserts and on close (see the module
    docstring); turn it off to call :meth:`optimize` yourself. ``sync_writes`` flushes
    after every upsert for power-loss durability.

    Only one store may have a collection open at a time: a second process (or a second
    store object) opening it gets :class:`StoreLockedError`.
    """

    upsert_batch_size = 1024
    query_batch_size = 256

    def __init__(self, path: str | os.PathLike[str], *, auto_optimize: bool = True, sync_writes: bool = False):
        super().__init__()
        self._root = Path(path).expanduser()
        if self._root.exists() and not self._root.is_dir():
            raise StoreError(f"Edge store path {self._root} exists and is not a directory")
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((p for p in self._root.parents if p.exists() and not p.is_dir()), None)
            why = f"{blocker} is a file, not a folder" if blocker is not None else (exc.strerror or str(exc))
            raise StoreError(f"cannot open Edge store {self._root}: {why}") from exc
        _remove_abandoned(self._root)
        self._auto_optimize = auto_optimize
        self._sync_writes = sync_writes
        self._shards: dict[str, qe.EdgeShard] = {}
        self._lock = threading.RLock()  # guards opening/closing shards, not reads

    @property
    def location(self) -> str:
        return str(self._root)

    def flush(self) -> None:
        """Persist everything written so far to disk (WAL and segments)."""
        with self._lock:
            for name, shard in self._shards.items():
                with _edge_errors(name, "flush"):
                    shard.flush()

    # ----------------------------------------------------------------- shards

    def _dir(self, name: str) -> Path:
        return self._root / name

    def _shard(self, name: str) -> qe.EdgeShard:
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                if not self._exists(name):
                    raise CollectionNotFoundError(f"collection {name!r} not found in {self.location}")
                with _edge_errors(name, "open"):
                    shard = qe.EdgeShard.load(str(self._dir(name)))
                self._shards[name] = shard
            return shard

    def _close_shard(self, name: str, *, finish: bool) -> None:
        shard = self._shards.pop(name, None)
        if shard is None:
            return
        with _edge_errors(name, "close"):
            try:
                if finish:
                    info = self._infos.get(name)
                    if info is not None and self._auto_optimize:
                        unindexed, _ = _index_state(shard, info)
                        if unindexed >= info.options.index_threshold:
                            shard.optimize()
                    shard.flush()
            finally:
                shard.close()  # always release the WAL lock

    # ----------------------------------------------------------------- collections

    def _exists(self, name: str) -> bool:
        return (self._dir(name) / _CONFIG_FILE).is_file()

    def _list(self) -> list[str]:
        return [
            d.name
            for d in self._root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and (d / _CONFIG_FILE).is_file()
        ]

    def _create(self, name: str, info: CollectionInfo) -> None:
        tmp = self._root / f"{_CREATING}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with _edge_errors(name, "create"):
                shard = qe.EdgeShard.create(str(tmp), _edge_config(info))
                try:
                    for field_name, kind in info.payload_indexes.items():
                        shard.update(_index_field(field_name, kind))
                    shard.update(_put_meta(info.to_payload()))
                    shard.flush()
                finally:
                    shard.close()
            try:
                # Atomic on POSIX: a crash leaves either no collection or a complete one.
                os.rename(tmp, self._dir(name))
            except OSError as exc:
                if self._exists(name):
                    raise CollectionExistsError(
                        f"collection {name!r} was created in {self.location} by another process at the same time"
                    ) from exc
                raise StoreError(f"cannot create collection {name!r} in {self.location}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _drop(self, name: str) -> None:
        with self._lock:
            self._close_shard(name, finish=False)
            trash = self._root / f"{_DELETING}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(self._dir(name), trash)  # the collection vanishes atomically
            shutil.rmtree(trash, ignore_errors=True)

    def _read_meta(self, name: str) -> dict[str, Any] | None:
        shard = self._shard(name)
        with _edge_errors(name, "read metadata"):
            recs = shard.retrieve([META_POINT_ID], True, False)
        return dict(recs[0].payload or {}) if recs else None

    def _write_meta(self, name: str, meta: dict[str, Any]) -> None:
        shard = self._shard(name)
        with _edge_errors(name, "write metadata"):
            shard.update(_put_meta(meta))

    def _create_payload_index(self, name: str, field_name: str, kind: PayloadType) -> None:
        shard = self._shard(name)
        with _edge_errors(name, f"index payload field {field_name!r}"):
            shard.update(_index_field(field_name, kind))

    # ----------------------------------------------------------------- writes

    def _upsert(
        self,
        name: str,
        ids: list[str],
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]],
    ) -> None:
        shard = self._shard(name)
        names = list(vectors)
        # The binding converts lists of floats ~7% faster than numpy rows (measured, 768-d).
        cols = [vectors[v].tolist() for v in names]
        points = [
            qe.Point(pid, {v: col[i] for v, col in zip(names, cols, strict=True)}, payloads[i])
            for i, pid in enumerate(ids)
        ]
        with _edge_errors(name, "upsert"):
            shard.update(qe.UpdateOperation.upsert_points(points))
            if self._sync_writes:
                shard.flush()

    def _after_upsert(self, name: str, n_written: int) -> None:
        if not self._auto_optimize or n_written == 0:
            return
        shard = self._shard(name)
        info = self.collection_info(name)
        with _edge_errors(name, "optimize"):
            unindexed, indexed = _index_state(shard, info)
            if unindexed >= info.options.index_threshold and unindexed >= indexed:
                shard.optimize()

    def _delete(self, name: str, ids: list[str]) -> None:
        shard = self._shard(name)
        with _edge_errors(name, "delete"):
            shard.update(qe.UpdateOperation.delete_points(ids))
            if self._sync_writes:
                shard.flush()

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
        shard = self._shard(name)
        with _edge_errors(name, "retrieve"):
            recs = shard.retrieve(ids, with_payload, with_vectors)
        return [stored_point_from(r, with_vectors) for r in recs]

    def _count(self, name: str, flt: ParsedFilter) -> int:
        shard = self._shard(name)
        with _edge_errors(name, "count"):
            return int(shard.count(qe.CountRequest(exact=True, filter=translate.qdrant_filter(EDGE_MODELS, flt))))

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
        shard = self._shard(name)
        params = translate.search_params(EDGE_MODELS, info, using, exact)
        requests = [
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(row, using=using),
                filter=translate.qdrant_filter(EDGE_MODELS, flt),
                params=params,
                with_payload=with_payload,
                with_vector=with_vectors,
            )
            for row, flt in zip(vectors.tolist(), filters, strict=True)
        ]
        with _edge_errors(name, "query"):
            if len(requests) == 1:
                results = [shard.query(requests[0])]
            else:
                results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [[scored_point_from(h, with_vectors) for h in hits] for hits in results]

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
        shard = self._shard(name)
        with _edge_errors(name, "scroll"):
            recs, nxt = shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=limit,
                    filter=translate.qdrant_filter(EDGE_MODELS, flt),
                    with_payload=True,
                    with_vector=with_vectors,
                )
            )
        return page_from(recs, nxt, with_vectors)

    # ----------------------------------------------------------------- maintenance

    def _optimize(self, name: str) -> bool:
        shard = self._shard(name)
        with _edge_errors(name, "optimize"):
            return bool(shard.optimize())

    def _close(self) -> None:
        errors: list[BaseException] = []
        with self._lock:
            for name in list(self._shards):
                try:
                    self._close_shard(name, finish=True)
                except StoreError as exc:  # close the others anyway, then report
                    errors.append(exc)
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------- binding specifics


@contextmanager
def _edge_errors(name: str, op: str) -> Iterator[None]:
    """Turn the binding's bare ``Exception`` into a store error naming the collection."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # the binding raises plain Exception for everything
        text = str(exc)
        if "WouldBlock" in text:  # a second open of the same shard's WAL
            raise StoreLockedError(f"collection {name!r} is open in another process or store object ({text})") from exc
        raise StoreError(f"Qdrant Edge failed to {op} collection {name!r}: {text}") from exc


def _edge_config(info: CollectionInfo) -> qe.EdgeConfig:
    opts = info.options
    no_graph = qe.HnswIndexConfig(m=0, ef_construct=opts.hnsw_ef_construct, full_scan_threshold=_FULL_SCAN_THRESHOLD_KB)
    vectors = {
        vec: qe.EdgeVectorParams(
            size=dim,
            distance=qe.Distance.Cosine,
            quantization_config=translate.quantization_config(EDGE_MODELS, info, vec),
            hnsw_config=None if opts.uses_hnsw(vec) else no_graph,
            memory=qe.Memory.Cold if opts.on_disk else None,
            datatype=EDGE_MODELS.datatype(opts.datatype),
        )
        for vec, dim in info.vectors.items()
    }
    return qe.EdgeConfig(
        vectors=vectors,
        hnsw_config=qe.HnswIndexConfig(
            m=opts.hnsw_m,
            ef_construct=opts.hnsw_ef_construct,
            full_scan_threshold=_FULL_SCAN_THRESHOLD_KB,
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=translate.indexing_threshold_kb(info)),
    )


def _index_state(shard: qe.EdgeShard, info: CollectionInfo) -> tuple[int, int]:
    """(points not yet in optimized segments, points in them), the meta point aside."""
    stats = shard.info()
    indexed = stats.indexed_vectors_count // max(1, len(info.vectors))
    total = max(0, stats.points_count - 1)
    return max(0, total - indexed), indexed


def _index_field(field_name: str, kind: PayloadType) -> qe.UpdateOperation:
    return qe.UpdateOperation.create_field_index(field_name, translate.payload_schema(EDGE_MODELS, kind))


def _put_meta(meta: dict[str, Any]) -> qe.UpdateOperation:
    return qe.UpdateOperation.upsert_points([translate.meta_point(EDGE_MODELS, meta)])


def _remove_abandoned(root: Path) -> None:
    """Delete the hidden creating/deleting folders of processes that died (killed mid-create).

    A folder's process id is in its name; one whose process still runs is left alone, and
    one without an id is removed once it is an hour old.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / ".creating-pets-999999999-0a1b2c3d").mkdir()
    >>> (root / f".creating-pets-{os.getpid()}-0a1b2c3d").mkdir()
    >>> _remove_abandoned(root)
    >>> sorted(p.name for p in root.iterdir()) == [f".creating-pets-{os.getpid()}-0a1b2c3d"]
    True
    """
    import time

    for folder in root.iterdir():
        if not folder.name.startswith((_CREATING, _DELETING)) or not folder.is_dir():
            continue
        parts = folder.name.rsplit("-", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if pid is not None:
            abandoned = not _process_alive(pid)
        else:
            abandoned = time.time() - folder.stat().st_mtime > _ABANDONED_AFTER_S
        if abandoned:
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True
