"""Value types of the store layer: points in and out, collection options and metadata.

Example::

    >>> import numpy as np
    >>> p = StorePoint("0b8e2a5e-3a3c-5d8e-9a0f-4f1f2b7c9d11", {"aligned": np.ones(4)}, {"label": "cat"})
    >>> p.payload["label"]
    'cat'
    >>> CollectionOptions().index_threshold
    10000
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from percep_rag.config import Fingerprint
from percep_rag.store.errors import StoreError
from percep_rag.store.filters import META_KEY

#: Version of the metadata layout on the reserved point; bump on incompatible changes.
META_FORMAT = 1

PayloadType = Literal["keyword", "integer", "float", "bool"]
#: Quantized copy searched before rescoring: int8 scalar, binary with 1, 1.5 or 2 bits a dimension, or none.
Quantization = Literal["int8", "binary1", "binary1.5", "binary2", "none"]


@dataclass(frozen=True, slots=True)
class StorePoint:
    """A point to write: UUID ``id``, one vector per name, a JSON-able ``payload``."""

    id: str
    vectors: Mapping[str, Any]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point read back; ``vectors`` is ``None`` unless asked for (cosine back ends
    return them L2-normalised)."""

    id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] | None = None


@dataclass(frozen=True, slots=True)
class ScoredPoint:
    """A query hit; ``score`` is the cosine similarity (higher is closer).

    ``copy_of_query`` is set by :class:`~percep_rag.retrieval.Retriever`: ``"exact"`` when the
    hit's pixels are the query's (another file of the same image), ``"near"`` when its cosine
    reaches the collection's calibrated (or a given) near-copy threshold, else ``None``
    (:mod:`percep_rag.duplicates` says what the words mean). ``duplicate_of_query`` is
    ``copy_of_query is not None``, kept for older readers.
    """

    id: str
    score: float
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] | None = None
    duplicate_of_query: bool = False
    copy_of_query: Literal["exact", "near"] | None = None


def _record_vectors(raw: Any) -> dict[str, np.ndarray]:
    # Named vectors come back as a dict; anything else (no vectors, an unnamed one) has none of ours.
    if not isinstance(raw, Mapping):
        return {}
    return {name: np.asarray(value, dtype=np.float32) for name, value in raw.items()}


def stored_point_from(record: Any, with_vectors: bool) -> StoredPoint:
    """A back end's record (``.id``, ``.payload``, ``.vector``) as a :class:`StoredPoint`."""
    return StoredPoint(
        id=str(record.id),
        payload=dict(record.payload or {}),
        vectors=_record_vectors(record.vector) if with_vectors else None,
    )


def page_from(records: Any, next_offset: Any, with_vectors: bool) -> tuple[list[StoredPoint], str | None]:
    """A back end's scroll result (records, next offset or ``None``) as one page of :class:`StoredPoint`.

    >>> from types import SimpleNamespace as R
    >>> page_from([R(id="a", payload=None, vector=None)], None, with_vectors=False)
    ([StoredPoint(id='a', payload={}, vectors=None)], None)
    """
    points = [stored_point_from(r, with_vectors) for r in records]
    return points, (str(next_offset) if next_offset is not None else None)


def scored_point_from(hit: Any, with_vectors: bool) -> ScoredPoint:
    """A back end's query hit (``.id``, ``.score``, ``.payload``, ``.vector``) as a :class:`ScoredPoint`."""
    return ScoredPoint(
        id=str(hit.id),
        score=float(hit.score),
        payload=dict(hit.payload or {}),
        vectors=_record_vectors(hit.vector) if with_vectors else None,
    )


class CollectionOptions(BaseModel):
    """How a collection is indexed and searched (recorded in its metadata).

    Below ``index_threshold`` points a collection is searched by an exact scan, which on
    a 2-core CPU costs ~2.5 ms per query at 10k x 768-d (measured with Qdrant Edge 0.9)
    and needs no build. Past it, segments get an HNSW graph (``hnsw_m``,
    ``hnsw_ef_construct``) over ``hnsw_vectors`` (all named vectors when ``None``) with
    int8 scalar quantization (``quantization="int8"``) searched with rescoring
    (``oversampling``), measured at ~0.5 ms per query and ~2 s of build per 10k points.
    The threshold is where the build pays for itself within a few thousand queries
    while an exact scan is still fast. Non-HNSW vectors are always scanned exactly.

    Memory: ``on_disk=True`` (the default, the ``low`` layout) keeps the float originals on
    disk, read only to rescore the ``oversampling x k`` candidates, while the int8 copies and
    the graph stay in RAM (2.0 KB a point at 1M for two 768-d vectors, against 8.0 KB with
    ``on_disk=False``, the ``balanced`` layout; measured in ``benchmarks/RESULTS.md``).
    ``quantization`` may also be binary (``"binary1"``, ``"binary1.5"``, ``"binary2"`` bits
    per dimension) and ``datatype="float16"`` halves the originals. The named presets users
    choose between are in :mod:`percep_rag.store.layouts`.

    ``shard_number``, ``replication_factor`` and ``write_consistency_factor`` apply to a
    Qdrant server or cluster only; embedded back ends record and ignore them.

    >>> CollectionOptions(index_threshold=50_000).quantization
    'int8'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    index_threshold: int = Field(10_000, ge=1)
    hnsw_m: int = Field(16, ge=4, le=128)
    hnsw_ef_construct: int = Field(100, ge=4)
    hnsw_vectors: tuple[str, ...] | None = None
    quantization: Quantization = "int8"
    hnsw_ef: int = Field(128, ge=1)
    oversampling: float = Field(2.0, ge=1.0)
    on_disk: bool = True
    datatype: Literal["float32", "float16"] = "float32"
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    write_consistency_factor: int | None = Field(None, ge=1)

    def uses_hnsw(self, vector_name: str) -> bool:
        """Whether ``vector_name`` gets an HNSW graph once the collection is large."""
        return self.hnsw_vectors is None or vector_name in self.hnsw_vectors


class CopyThreshold(BaseModel):
    """The cosine at or above which two images of one vector space of a collection are near
    copies, chosen from labelled pairs (``duplicates --calibrate``), with how it was chosen:
    ``pairs`` labelled pairs (``same`` of one image, ``different`` of two) and the
    ``precision`` / ``recall`` of the threshold on those pairs.

    >>> CopyThreshold(threshold=0.93, pairs=4, same=2, different=2, precision=1.0, recall=1.0,
    ...               source="pairs.csv").describe()
    '0.9300, calibrated from pairs.csv (4 pairs: 2 same, 2 different; precision 1.00, recall 1.00)'
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    threshold: float = Field(ge=-1.0, le=1.0)
    pairs: int = Field(ge=0)
    same: int = Field(ge=0)
    different: int = Field(ge=0)
    precision: float
    recall: float
    source: str = ""
    calibrated_at: str = ""

    def describe(self) -> str:
        """One line: the threshold and where it came from."""
        return (
            f"{self.threshold:.4f}, calibrated from {self.source or 'labelled pairs'} ({self.pairs} pairs: "
            f"{self.same} same, {self.different} different; precision {self.precision:.2f}, recall {self.recall:.2f})"
        )


class CollectionInfo(BaseModel):
    """What percep-rag records about a collection on its reserved point (``copy_thresholds``:
    the calibrated near-copy threshold per vector space, see :class:`CopyThreshold`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = ""
    fingerprint: Fingerprint
    vectors: dict[str, int]
    payload_indexes: dict[str, PayloadType] = Field(default_factory=dict)
    options: CollectionOptions = CollectionOptions()
    format: int = META_FORMAT
    created_at: str = ""
    library_version: str = ""
    copy_thresholds: dict[str, CopyThreshold] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_vectors(self) -> CollectionInfo:
        if not self.vectors:
            raise ValueError("a collection needs at least one named vector")
        for vec_name, dim in self.vectors.items():
            if not vec_name or dim < 1:
                raise ValueError(f"vector {vec_name!r}: dimension must be >= 1, got {dim}")
        if self.options.hnsw_vectors is not None:
            unknown = sorted(set(self.options.hnsw_vectors) - set(self.vectors))
            if unknown:
                raise ValueError(f"hnsw_vectors names unknown vectors {unknown}")
        return self

    def to_payload(self) -> dict[str, Any]:
        """The JSON stored under ``__percep_rag_meta__`` (without the name)."""
        return self.model_dump(mode="json", exclude={"name"})

    @classmethod
    def from_payload(cls, name: str, payload: Mapping[str, Any]) -> CollectionInfo:
        """Parse the reserved point's payload; :class:`StoreError` if unreadable."""
        meta = payload.get(META_KEY)
        if not isinstance(meta, Mapping):
            raise StoreError(f"collection {name!r}: reserved metadata point has no {META_KEY!r}")
        if meta.get("format", META_FORMAT) > META_FORMAT:
            raise StoreError(
                f"collection {name!r} was written by a newer percep-rag "
                f"(metadata format {meta.get('format')}); upgrade percep-rag to read it"
            )
        try:
            return cls.model_validate({**meta, "name": name})
        except ValidationError as exc:
            raise StoreError(f"collection {name!r}: unreadable metadata: {exc}") from exc


def default_vectors(fingerprint: Fingerprint) -> dict[str, int]:
    """``{"base": base_dim, "aligned": dim}`` from a fingerprint."""
    return {"base": fingerprint.base_dim, "aligned": fingerprint.dim}
