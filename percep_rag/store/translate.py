"""Neutral store requests -> Qdrant models, written once for both Qdrant bindings.

``qdrant-edge-py`` (:mod:`~percep_rag.store.edge`) and ``qdrant-client``
(:mod:`~percep_rag.store.client`) speak the same Qdrant concepts through two distinct
sets of model classes (Edge's are native classes, not ``qdrant_client.models``). Each back
end describes its binding in one :class:`QdrantModels`; the decisions (how a parsed
filter becomes conditions, when a vector is quantized, which search parameters a query
gets, how the reserved point looks) live here.

>>> from percep_rag.store.client import CLIENT_MODELS
>>> from percep_rag.store.filters import parse_filter
>>> flt = qdrant_filter(CLIENT_MODELS, parse_filter({"label": "cat"}))
>>> flt.must[0].key, flt.must[0].match.value, flt.must_not
('label', 'cat', None)
>>> qdrant_filter(CLIENT_MODELS, parse_filter(None)) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from percep_rag.store.filters import META_KEY, Condition, MatchAny, MatchValue, ParsedFilter
from percep_rag.store.ids import META_POINT_ID
from percep_rag.store.schema import CollectionInfo, PayloadType

#: Quantile of the int8 scalar quantization: clips the 1% most extreme components.
INT8_QUANTILE = 0.99


@dataclass(frozen=True)
class QdrantModels:
    """The model constructors of one Qdrant binding, called with qdrant-client's keyword names.

    Most fields are the binding's classes themselves; where a binding spells a model
    differently (Edge's ``HasIdCondition(point_ids=set)``), the field is a small adapter.
    """

    field_condition: Callable[..., Any]  # key=, match= | range=
    match_value: Callable[..., Any]  # value=
    match_any: Callable[..., Any]  # any=
    range: Callable[..., Any]  # gt=, gte=, lt=, lte=
    has_id: Callable[[list[str]], Any]  # sorted point ids
    filter: Callable[..., Any]  # must=, must_not=
    search_params: Callable[..., Any]  # hnsw_ef=, exact=, quantization=
    quantization_search_params: Callable[..., Any]  # rescore=, oversampling=
    scalar_int8: Callable[[float, bool], Any]  # quantile, in RAM -> int8 scalar quantization config
    binary: Callable[[str, bool], Any]  # "1" | "1.5" | "2" bits, in RAM -> binary quantization config
    datatype: Callable[[str], Any]  # "float32" | "float16" -> the storage datatype
    point: Callable[..., Any]  # id=, vector=, payload=
    payload_types: Mapping[PayloadType, Any]


def condition(models: QdrantModels, cond: Condition) -> Any:
    """One parsed condition as the binding's ``FieldCondition``.

    >>> from percep_rag.store.client import CLIENT_MODELS
    >>> condition(CLIENT_MODELS, MatchAny("split", ("train", "val"))).match.any
    ['train', 'val']
    """
    if isinstance(cond, MatchValue):
        return models.field_condition(key=cond.key, match=models.match_value(value=cond.value))
    if isinstance(cond, MatchAny):
        return models.field_condition(key=cond.key, match=models.match_any(any=list(cond.values)))
    bounds = models.range(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte)
    return models.field_condition(key=cond.key, range=bounds)


def qdrant_filter(models: QdrantModels, flt: ParsedFilter) -> Any | None:
    """A parsed filter (with its excluded ids) as the binding's ``Filter``; ``None`` when empty.

    >>> from percep_rag.store.client import CLIENT_MODELS
    >>> flt = ParsedFilter().with_excluded([META_POINT_ID])
    >>> qdrant_filter(CLIENT_MODELS, flt).must_not[0].has_id == [META_POINT_ID]
    True
    """
    must = [condition(models, c) for c in flt.must]
    must_not = [condition(models, c) for c in flt.must_not]
    if flt.exclude_ids:
        must_not.append(models.has_id(sorted(flt.exclude_ids)))
    if not must and not must_not:
        return None
    return models.filter(must=must or None, must_not=must_not or None)


def quantized(info: CollectionInfo, vec: str) -> bool:
    """Whether vector ``vec`` is quantized: only HNSW vectors are, when the options ask for it.

    >>> from percep_rag.store.schema import CollectionOptions
    >>> opts = CollectionOptions(hnsw_vectors=("aligned",))
    >>> info = CollectionInfo.model_construct(vectors={"base": 2, "aligned": 2}, options=opts)
    >>> quantized(info, "aligned"), quantized(info, "base")
    (True, False)
    """
    return info.options.quantization != "none" and info.options.uses_hnsw(vec)


def quantization_config(models: QdrantModels, info: CollectionInfo, vec: str) -> Any | None:
    """The quantization config of vector ``vec``, or ``None`` when it is not quantized.

    With the originals on disk the quantized copy is pinned in RAM: it is what every
    query scans, while the originals are read only to rescore the few candidates.

    >>> from percep_rag.store.client import CLIENT_MODELS
    >>> from percep_rag.store.schema import CollectionOptions
    >>> info = CollectionInfo.model_construct(vectors={"aligned": 2})
    >>> quantization_config(CLIENT_MODELS, info, "aligned").scalar.quantile
    0.99
    >>> low = CollectionInfo.model_construct(vectors={"aligned": 2},
    ...     options=CollectionOptions(quantization="binary2", on_disk=True))
    >>> quantization_config(CLIENT_MODELS, low, "aligned").binary.encoding.value
    'two_bits'
    """
    if not quantized(info, vec):
        return None
    kind, in_ram = info.options.quantization, info.options.on_disk
    if kind == "int8":
        return models.scalar_int8(INT8_QUANTILE, in_ram)
    return models.binary(kind.removeprefix("binary"), in_ram)


def search_params(models: QdrantModels, info: CollectionInfo, using: str, exact: bool) -> Any:
    """Search parameters for a query over ``using``: an exact scan, or HNSW with rescored quantization.

    >>> from percep_rag.store.client import CLIENT_MODELS
    >>> info = CollectionInfo.model_construct(vectors={"aligned": 2})
    >>> search_params(CLIENT_MODELS, info, "aligned", exact=True).exact
    True
    >>> search_params(CLIENT_MODELS, info, "aligned", exact=False).quantization.rescore
    True
    """
    if exact:
        return models.search_params(exact=True)
    quant = (
        models.quantization_search_params(rescore=True, oversampling=info.options.oversampling)
        if quantized(info, using)
        else None
    )
    return models.search_params(hnsw_ef=info.options.hnsw_ef, quantization=quant)


def indexing_threshold_kb(info: CollectionInfo) -> int:
    """``options.index_threshold`` (points) as Qdrant's indexing threshold (KB of one vector storage).

    The largest HNSW vector decides, since only HNSW vectors are worth indexing.

    >>> indexing_threshold_kb(CollectionInfo.model_construct(vectors={"base": 768, "aligned": 512}))
    30000
    """
    opts = info.options
    hnsw_dims = [d for v, d in info.vectors.items() if opts.uses_hnsw(v)] or list(info.vectors.values())
    return max(1, math.ceil(opts.index_threshold * max(hnsw_dims) * 4 / 1024))


def payload_schema(models: QdrantModels, kind: PayloadType) -> Any:
    """The binding's payload schema type for a neutral payload index ``kind``.

    >>> from percep_rag.store.client import CLIENT_MODELS
    >>> payload_schema(CLIENT_MODELS, "keyword").value
    'keyword'
    """
    return models.payload_types[kind]


def meta_point(models: QdrantModels, meta: dict[str, Any]) -> Any:
    """The reserved metadata point holding ``meta``.

    It has no vectors, so it can never be a nearest neighbour.

    >>> from percep_rag.store.client import CLIENT_MODELS
    >>> point = meta_point(CLIENT_MODELS, {"format": 1})
    >>> point.id == META_POINT_ID, point.vector, point.payload
    (True, {}, {'__percep_rag_meta__': {'format': 1}})
    """
    return models.point(id=META_POINT_ID, vector={}, payload={META_KEY: meta})
