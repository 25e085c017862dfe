"""The payload filter language, parsed once and translated by each back end.

A filter is a plain dict; every key is a payload field (dotted paths reach into
nested objects) and all conditions must hold (AND):

=================================  ==========================================
``{"label": "cat"}``               field equals a value (``str``, ``int``, ``bool``)
``{"split": ["train", "val"]}``    field equals any of the values (all ``str`` or all ``int``)
``{"count": {"gte": 2, "lt": 5}}``  numeric range; operators ``gt``, ``gte``, ``lt``, ``lte``
``{"label": {"not": "cat"}}``      field differs from the value (or from all values of a list)
=================================  ==========================================

Operators combine: ``{"count": {"gte": 2, "not": 3}}``. Floats cannot be matched
exactly (Qdrant has no float equality); write a range instead.

A qdrant-client ``models.Filter`` is accepted too, as far as this language reaches: ``must``
and ``must_not`` of ``FieldCondition`` s with ``MatchValue``, ``MatchAny``, ``MatchExcept`` or a
numeric ``Range``, nested ``must``-only filters, and ``HasIdCondition`` under ``must_not``.
Anything else (``should``, geo, text, datetime, ...) raises :class:`FilterError`.

Example::

    >>> f = parse_filter({"label": "cat", "split": ["train", "val"], "count": {"gte": 2}})
    >>> [type(c).__name__ for c in f.must]
    ['MatchValue', 'MatchAny', 'Range']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from percep_rag.store.errors import FilterError
from percep_rag.store.ids import normalize_id

#: Payload key that holds the collection metadata on the reserved point.
META_KEY = "__percep_rag_meta__"

_RANGE_OPS = ("gt", "gte", "lt", "lte")
_OPS = (*_RANGE_OPS, "not")

Scalar = str | int | bool


@dataclass(frozen=True, slots=True)
class MatchValue:
    """``key`` equals ``value``."""

    key: str
    value: Scalar


@dataclass(frozen=True, slots=True)
class MatchAny:
    """``key`` equals one of ``values``."""

    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """``key`` lies in a numeric range; unset bounds are open."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Condition = MatchValue | MatchAny | Range


@dataclass(frozen=True, slots=True)
class ParsedFilter:
    """A validated filter: ``must`` all hold, no ``must_not`` holds, no id in ``exclude_ids``."""

    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()
    exclude_ids: frozenset[str] = field(default_factory=frozenset)

    def with_excluded(self, ids: Iterable[str]) -> ParsedFilter:
        """A copy that also excludes ``ids``."""
        extra = frozenset(ids)
        if not extra:
            return self
        return ParsedFilter(self.must, self.must_not, self.exclude_ids | extra)


def parse_filter(spec: Mapping[str, object] | ParsedFilter | None) -> ParsedFilter:
    """Validate the dict form described in the module docstring.

    Raises :class:`FilterError` naming the offending field.

    >>> parse_filter({"n": {"not": [1, 2]}}).must_not
    (MatchAny(key='n', values=(1, 2)),)
    """
    if spec is None:
        return ParsedFilter()
    if isinstance(spec, ParsedFilter):
        return spec
    if type(spec).__module__.startswith("qdrant_client."):
        return _from_qdrant(spec)
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter is a dict of field -> condition, got {type(spec).__name__}")
    must: list[Condition] = []
    must_not: list[Condition] = []
    for key, cond in spec.items():
        if not isinstance(key, str) or not key:
            raise FilterError(f"filter field names are non-empty strings, got {key!r}")
        if key == META_KEY or key.startswith(META_KEY + "."):
            raise FilterError(f"{META_KEY!r} is reserved by percep-rag and cannot be filtered on")
        if isinstance(cond, Mapping):
            _parse_ops(key, cond, must, must_not)
        else:
            must.append(_match(key, cond))
    return ParsedFilter(tuple(must), tuple(must_not))


def _parse_ops(key: str, ops: Mapping[str, object], must: list[Condition], must_not: list[Condition]) -> None:
    if not ops:
        raise FilterError(f"filter on {key!r}: empty operator dict; use one of {', '.join(_OPS)}")
    unknown = sorted(set(map(str, ops)) - set(_OPS))
    if unknown:
        raise FilterError(f"filter on {key!r}: unknown operator(s) {unknown}; use one of {', '.join(_OPS)}")
    bounds: dict[str, float] = {}
    for op in _RANGE_OPS:
        if op in ops:
            value = ops[op]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FilterError(f"filter on {key!r}: {op} needs a number, got {value!r}")
            bounds[op] = float(value)
    if bounds:
        must.append(Range(key, **bounds))
    if "not" in ops:
        must_not.append(_match(key, ops["not"]))


def _match(key: str, value: object) -> Condition:
    if isinstance(value, list | tuple | set | frozenset):
        values = list(value)
        if not values:
            raise FilterError(f"filter on {key!r}: an empty list matches nothing")
        if all(isinstance(v, str) for v in values):
            return MatchAny(key, tuple(values))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return MatchAny(key, tuple(values))
        raise FilterError(f"filter on {key!r}: a list must hold only strings or only integers, got {values!r}")
    if isinstance(value, str | bool | int):
        return MatchValue(key, value)
    if isinstance(value, float):
        raise FilterError(
            f"filter on {key!r}: floats cannot be matched exactly; "
            f"write a range such as {{'gte': {value}, 'lte': {value}}}"
        )
    raise FilterError(
        f"filter on {key!r}: expected a str/int/bool, a list of them or an operator dict, got {type(value).__name__}"
    )


# --------------------------------------------------------------------------- filters written as text
# ``key=value`` / ``key=v1,v2`` strings (the CLI's ``--filter``) become the dict form above.
# Text has no types, so each field's values are read as the type the stored field holds.

#: How text is read for each payload index kind; other kinds (``float``) are read as text.
TEXT_VALUE_TYPES: dict[str, type] = {"integer": int, "bool": bool, "keyword": str}


def parse_filter_texts(
    texts: Iterable[str], value_type: Callable[[str], type] = lambda key: str, *, name: str = "filter"
) -> dict[str, object]:
    """``key=value`` / ``key=v1,v2`` (any of) texts as a filter dict; all of them must hold.

    ``value_type(key)`` says whether the field holds ``int``, ``bool`` or ``str`` values;
    ``name`` is how error messages call a text (the CLI passes ``"--filter"``). Raises
    :class:`FilterError` for a malformed text, a key given twice or a value of the wrong type.

    >>> parse_filter_texts(["label=cat, dog", "pair_id=3"], lambda key: int if key == "pair_id" else str)
    {'label': ['cat', 'dog'], 'pair_id': 3}
    >>> parse_filter_texts(["pair_id=x"], lambda key: int)
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.FilterError: filter 'pair_id=x': field 'pair_id' holds int values
    """
    parsed: dict[str, object] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        values = [value.strip() for value in raw.split(",") if value.strip()]
        if not sep or not key or not values:
            raise FilterError(f"{name} {text!r}: write key=value, or key=v1,v2 for any of several values")
        if key in parsed:
            raise FilterError(f"{name} {key} given twice; write {key}=v1,v2 for any of several values")
        kind = value_type(key)
        try:
            converted = [_from_text(value, kind) for value in values]
        except (ValueError, KeyError):
            raise FilterError(f"{name} {text!r}: field {key!r} holds {kind.__name__} values") from None
        parsed[key] = converted[0] if len(converted) == 1 else converted
    return parsed


def _from_text(value: str, kind: type) -> Scalar:
    if kind is bool:
        return {"true": True, "false": False}[value.lower()]
    return int(value) if kind is int else value


def payload_value_type(indexes: Mapping[str, str], payloads: Iterable[Mapping[str, object]]) -> Callable[[str], type]:
    """How a field's text values are read: by its payload index kind, else by the first stored value.

    ``indexes`` maps fields to payload index kinds; ``payloads`` are sample stored payloads.
    Fields that are neither indexed nor seen hold ``str``.

    >>> value_type = payload_value_type({"pair_id": "integer"}, [{"flags": [True]}, {"label": "cat"}])
    >>> [value_type(key).__name__ for key in ("pair_id", "flags", "label", "unknown")]
    ['int', 'bool', 'str', 'str']
    """
    samples = list(payloads)

    def value_type(key: str) -> type:
        if key in indexes:
            return TEXT_VALUE_TYPES.get(indexes[key], str)
        for payload in samples:
            value = payload.get(key)
            sample = value[0] if isinstance(value, list) and value else value
            if isinstance(sample, bool):
                return bool
            if isinstance(sample, int):
                return int
            if sample is not None:
                return str
        return str

    return value_type


def collection_value_type(store: Any, collection: str, *, sample: int = 64) -> Callable[[str], type]:
    """:func:`payload_value_type` of a stored collection: its payload indexes and first ``sample`` payloads.

    ``store`` is a :class:`~percep_rag.store.base.VectorStore`.

    >>> from percep_rag.config import Fingerprint
    >>> from percep_rag.store import open_store
    >>> fp = Fingerprint(backbone="tiny", weights_digest="0", random_weights=True, pooling="cls",
    ...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=4, dim=4)
    >>> with open_store(":memory:") as store:
    ...     _ = store.ensure_collection("imgs", fp, payload_indexes={"pair_id": "integer"})
    ...     parse_filter_texts(["pair_id=7"], collection_value_type(store, "imgs"))
    {'pair_id': 7}
    """
    indexes = store.collection_info(collection).payload_indexes
    points, _ = store.scroll(collection, limit=sample)
    return payload_value_type(indexes, [point.payload for point in points])


def _from_qdrant(spec: object) -> ParsedFilter:
    """A qdrant-client ``models.Filter`` in this language (see the module docstring).

    >>> from qdrant_client import models
    >>> parse_filter(models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=2))]))
    ParsedFilter(must=(Range(key='n', gt=None, gte=2.0, lt=None, lte=None),), must_not=(), exclude_ids=frozenset())
    """
    from qdrant_client import models

    if not isinstance(spec, models.Filter):
        raise FilterError(f"a qdrant-client filter must be a models.Filter, got {type(spec).__name__}")
    if spec.should or spec.min_should:
        raise FilterError("qdrant filters with 'should' or 'min_should' (OR) are not supported; use must/must_not")
    must: list[Condition] = []
    must_not: list[Condition] = []
    excluded: set[str] = set()
    for condition in _listed(spec.must):
        if isinstance(condition, models.Filter):
            nested = _from_qdrant(condition)
            must.extend(nested.must)
            must_not.extend(nested.must_not)
            excluded.update(nested.exclude_ids)
        else:
            parsed, negated = _qdrant_field(condition)
            (must_not if negated else must).append(parsed)
    for condition in _listed(spec.must_not):
        if isinstance(condition, models.HasIdCondition):
            excluded.update(_uuid(point) for point in condition.has_id)
        else:
            parsed, negated = _qdrant_field(condition)
            (must if negated else must_not).append(parsed)
    return ParsedFilter(tuple(must), tuple(must_not), frozenset(excluded))


def _uuid(point: object) -> str:
    try:
        return normalize_id(point)
    except ValueError as error:
        raise FilterError(f"HasIdCondition: {error}") from None


def _listed(conditions: object) -> list[object]:
    if conditions is None:
        return []
    return list(conditions) if isinstance(conditions, list | tuple) else [conditions]


def _qdrant_field(condition: object) -> tuple[Condition, bool]:
    """One ``FieldCondition`` and whether it is negated (``MatchExcept``)."""
    from qdrant_client import models

    if not isinstance(condition, models.FieldCondition):
        raise FilterError(f"qdrant condition {type(condition).__name__} is not supported; use FieldCondition")
    key = condition.key
    if key == META_KEY or key.startswith(META_KEY + "."):
        raise FilterError(f"{META_KEY!r} is reserved by percep-rag and cannot be filtered on")
    others = ("geo_bounding_box", "geo_radius", "geo_polygon", "values_count", "is_empty", "is_null")
    used = [name for name in others if getattr(condition, name) is not None]
    if used or (condition.match is None) == (condition.range is None):
        raise FilterError(f"qdrant condition on {key!r}: give exactly one of match or a numeric range (got {used})")
    if isinstance(condition.range, models.Range):
        bounds = {op: getattr(condition.range, op) for op in _RANGE_OPS}
        return Range(key, **{op: float(v) for op, v in bounds.items() if v is not None}), False
    match = condition.match
    if isinstance(match, models.MatchValue):
        return _match(key, match.value), False
    if isinstance(match, models.MatchAny):
        return _match(key, list(match.any)), False
    if isinstance(match, models.MatchExcept):
        return _match(key, list(match.except_)), True
    raise FilterError(f"qdrant condition on {key!r}: {type(condition.range or match).__name__} is not supported")
