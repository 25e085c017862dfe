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
# Text has no types, so each field's values are read as the type(s) the stored field holds.

#: How text is read for each payload index kind; other kinds (``float``) are read as text.
TEXT_VALUE_TYPES: dict[str, type] = {"integer": int, "bool": bool, "keyword": str}

#: What a text can be read as, in the order error messages list them.
_TEXT_TYPES = (bool, int, str)

ValueTypes = type | tuple[type, ...]


def parse_filter_texts(
    texts: Iterable[str], value_type: Callable[[str], ValueTypes] = lambda key: str, *, name: str = "filter"
) -> dict[str, object]:
    """``key=value`` / ``key=v1,v2`` (any of) texts as a filter dict; all of them must hold.

    ``value_type(key)`` says which of ``bool``, ``int`` and ``str`` the field holds (one type,
    or a tuple when its values have several); ``name`` is how error messages call a text (the
    CLI passes ``"--filter"``). Raises :class:`FilterError` for a malformed text, a key given
    twice, a value of none of the field's types, or one that reads as two of them (``5`` of a
    field holding both ``5`` and ``"5"``: ambiguous).

    >>> parse_filter_texts(["label=cat, dog", "pair_id=3"], lambda key: int if key == "pair_id" else str)
    {'label': ['cat', 'dog'], 'pair_id': 3}
    >>> parse_filter_texts(["flag=true"], lambda key: (bool, int))
    {'flag': True}
    >>> parse_filter_texts(["pair_id=x"], lambda key: int)
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.FilterError: filter 'pair_id=x': field 'pair_id' holds int values
    >>> parse_filter_texts(["rating=5"], lambda key: (int, str))
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.FilterError: filter 'rating=5' is ambiguous: field 'rating' holds both int and str ...
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
        kinds = value_type(key)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        converted = [_from_text(value, kinds, f"{name} {text!r}", key) for value in values]
        parsed[key] = converted[0] if len(converted) == 1 else converted
    return parsed


def _from_text(value: str, kinds: tuple[type, ...], where: str, key: str) -> Scalar:
    readings: dict[type, Scalar] = {}
    for kind in kinds:
        try:
            if kind is bool:
                readings[bool] = {"true": True, "false": False}[value.lower()]
            elif kind is int:
                readings[int] = int(value)
            else:
                readings[str] = value
        except (ValueError, KeyError):
            continue
    names = " and ".join(kind.__name__ for kind in kinds)
    if not readings:
        raise FilterError(f"{where}: field {key!r} holds {names} values")
    if len(readings) > 1:
        raise FilterError(
            f"{where} is ambiguous: field {key!r} holds both {names} values and {value!r} reads as either; "
            "give the field a payload index (its type decides) or filter with a typed dict"
        )
    return next(iter(readings.values()))


def stored_value_types(payloads: Iterable[Mapping[str, object]]) -> dict[str, frozenset[type]]:
    """Field -> the text-matchable types (``bool``, ``int``, ``str``) of every value it holds in ``payloads``.

    Nested objects give dotted fields (``colour.hue``), list items count as values of their
    field (a filter matches any of them); floats, nulls and objects match no text, so they
    add no type.

    >>> types = stored_value_types([{"flags": [True], "n": 1, "o": {"k": "a"}}, {"n": "1", "x": 0.5}])
    >>> {key: sorted(t.__name__ for t in kinds) for key, kinds in types.items()}
    {'flags': ['bool'], 'n': ['int', 'str'], 'o.k': ['str'], 'x': []}
    """
    found: dict[str, set[type]] = {}

    def add(path: str, value: object) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                add(f"{path}.{key}", inner)
            return
        kinds = found.setdefault(path, set())
        for item in value if isinstance(value, list) else [value]:
            kind = type(item)
            if kind in _TEXT_TYPES:
                kinds.add(kind)

    for payload in payloads:
        for key, value in payload.items():
            add(key, value)
    return {key: frozenset(kinds) for key, kinds in found.items()}


def payload_value_type(
    indexes: Mapping[str, str], stored: Callable[[], Mapping[str, frozenset[type]]]
) -> Callable[[str], tuple[type, ...]]:
    """How a field's text values are read: by its payload index kind, else as every type its values have.

    ``indexes`` maps fields to payload index kinds; ``stored()`` gives :func:`stored_value_types`
    of the collection (called only for a field that has no index). A field with no stored value
    that text can match reads as ``str``.

    >>> value_type = payload_value_type({"pair_id": "integer"}, lambda: {"flag": frozenset({bool, int})})
    >>> [[t.__name__ for t in value_type(key)] for key in ("pair_id", "flag", "unknown")]
    [['int'], ['bool', 'int'], ['str']]
    """

    def value_type(key: str) -> tuple[type, ...]:
        if key in indexes:
            return (TEXT_VALUE_TYPES.get(indexes[key], str),)
        kinds = stored().get(key, frozenset())
        return tuple(kind for kind in _TEXT_TYPES if kind in kinds) or (str,)

    return value_type


def collection_value_type(store: Any, collection: str) -> Callable[[str], tuple[type, ...]]:
    """:func:`payload_value_type` of a stored collection: its payload indexes, else every stored value.

    ``store`` is a :class:`~percep_rag.store.base.VectorStore`; the value types come from
    its :meth:`~percep_rag.store.base.VectorStore.payload_value_types` (one pass over the
    collection, kept until the store next writes to it), read only when a field has no index.

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
    return payload_value_type(indexes, lambda: store.payload_value_types(collection))


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
