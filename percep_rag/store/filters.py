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

Example::

    >>> f = parse_filter({"label": "cat", "split": ["train", "val"], "count": {"gte": 2}})
    >>> [type(c).__name__ for c in f.must]
    ['MatchValue', 'MatchAny', 'Range']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from percep_rag.store.errors import FilterError

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
