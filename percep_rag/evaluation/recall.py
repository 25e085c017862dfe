"""recall@k, the instance-retrieval metric, on vectors in memory or on rankings.

Each query is ranked against the whole gallery by cosine similarity, and recall@k is the
fraction of queries with **any** ground-truth match among the top k. Queries with no
match anywhere in the gallery cannot be scored; they are left out and counted.

>>> import numpy as np
>>> gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
>>> queries = np.array([[0.9, 0.1], [0.1, 0.9]])
>>> result = recall_at_k(queries, gallery, [{"a"}, {"a"}], [{"a"}, {"b"}, set()], ks=(1, 2))
>>> result.recall, result.n_queries, result.n_skipped
({1: 0.5, 2: 0.5}, 2, 0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from percep_rag.errors import ConfigError, DimensionMismatchError
from percep_rag.evaluation.errors import EvaluationError
from percep_rag.evaluation.neighbours import BLOCK_ENTRIES, nearest, unit_rows

DEFAULT_KS = (1, 3, 5)


@dataclass(frozen=True)
class RecallAtK:
    """recall@k of one vector space: ``recall[k]`` = ``hits[k] / n_queries``.

    ``n_queries`` counts the scored queries (those with a match in the gallery);
    ``n_skipped`` the queries left out because nothing in the gallery matches them.
    """

    recall: dict[int, float]
    hits: dict[int, int]
    n_queries: int
    n_skipped: int


def recall_at_k(
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    query_instances: Sequence[Iterable[str]],
    gallery_instances: Sequence[Iterable[str]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    query_ids: Sequence[Hashable] | None = None,
    gallery_ids: Sequence[Hashable] | None = None,
    exclude_same_id: bool = True,
    block_entries: int = BLOCK_ENTRIES,
) -> RecallAtK:
    """Exact cosine recall@k: the share of queries with a gallery item sharing one of
    their instance ids among their ``k`` most similar gallery items.

    Vectors need not be normalised (cosine is computed). With ``query_ids`` and
    ``gallery_ids`` and ``exclude_same_id``, a gallery item with the query's own id is
    neither ranked nor counted as a match (for data where an image is both a query and a
    gallery item). Ties rank the earlier gallery item first
    (:func:`~percep_rag.evaluation.neighbours.nearest`). Queries without any match are
    skipped (``n_skipped``); with none left every recall is ``nan``.

    Every image as query and gallery (leave-one-out); ``b`` has no other ``y`` so it is
    skipped, ``a`` ties ``b`` and ``c`` at 0 and gets ``b`` first (a miss), ``c`` gets ``a``:

    >>> import numpy as np
    >>> v, ids, inst = np.eye(3), ["a", "b", "c"], [{"x"}, {"y"}, {"x"}]
    >>> r = recall_at_k(v, v, inst, inst, ks=(1,), query_ids=ids, gallery_ids=ids)
    >>> r.recall, r.n_queries, r.n_skipped
    ({1: 0.5}, 2, 1)
    """
    ks = check_ks(ks)
    queries = unit_rows(query_vectors, "query_vectors")
    gallery = unit_rows(gallery_vectors, "gallery_vectors")
    if queries.shape[1] != gallery.shape[1]:
        raise DimensionMismatchError(f"queries are {queries.shape[1]}-d but the gallery is {gallery.shape[1]}-d")
    _check_length(query_instances, len(queries), "query_instances")
    _check_length(gallery_instances, len(gallery), "gallery_instances")
    own = _own_gallery_rows(query_ids, gallery_ids, len(queries), len(gallery), exclude_same_id)
    relevant = _relevant_rows(query_instances, gallery_instances, own)
    scored = [i for i, rows in enumerate(relevant) if rows]
    rankings = (
        nearest(queries[scored], gallery, max(ks), exclude=[own[i] for i in scored], block_entries=block_entries)
        if scored
        else []
    )
    return recall_from_rankings(rankings, [relevant[i] for i in scored], ks, n_skipped=len(queries) - len(scored))


def recall_from_rankings(
    rankings: Iterable[Sequence[Hashable]],
    relevant: Sequence[set[Hashable]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    n_skipped: int = 0,
) -> RecallAtK:
    """recall@k of rankings made elsewhere (e.g. by a store): ``rankings[i]`` lists the
    items retrieved for query ``i``, best first, and ``relevant[i]`` its matches.

    >>> recall_from_rankings([["x", "y"], ["z", "y"]], [{"y"}, {"z"}], ks=(1, 2)).recall
    {1: 0.5, 2: 1.0}
    """
    ks = check_ks(ks)
    hits = dict.fromkeys(ks, 0)
    n_queries = 0
    for ranked, wanted in zip(rankings, relevant, strict=True):
        n_queries += 1
        first = next((rank for rank, item in enumerate(ranked) if _item(item) in wanted), None)
        if first is None:
            continue
        for k in ks:
            if first < k:
                hits[k] += 1
    recall = {k: (hits[k] / n_queries if n_queries else math.nan) for k in ks}
    return RecallAtK(recall=recall, hits=hits, n_queries=n_queries, n_skipped=n_skipped)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """The cut-offs sorted and de-duplicated; anything but positive integers is a :class:`ConfigError`.

    >>> check_ks([5, 1, 3, 1])
    (1, 3, 5)
    """
    values = tuple(sorted(set(ks)))
    if not values or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in values):
        raise ConfigError(f"ks must be positive integers, got {list(ks)!r}")
    return tuple(int(k) for k in values)


def parse_instances(value: object, *, where: str = "") -> set[str]:
    """Instance ids from a field value: one id, a ``;``-separated string or a list.

    >>> sorted(parse_instances("3:1; 3:2")), parse_instances(7), parse_instances(None)
    (['3:1', '3:2'], {'7'}, set())
    """
    if value is None:
        return set()
    if isinstance(value, str):
        return {part.strip() for part in value.split(";") if part.strip()}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return {str(value)}
    if isinstance(value, list | tuple | set | frozenset):
        out: set[str] = set()
        for item in value:
            if isinstance(item, list | tuple | set | frozenset | dict):
                raise EvaluationError(
                    f"{where}instance ids must be strings or integers, got a nested {type(item).__name__}"
                )
            out |= parse_instances(item, where=where)
        return out
    raise EvaluationError(f"{where}instance ids must be a string, an integer or a list, got {type(value).__name__}")


def _item(value: Hashable) -> Hashable:
    return int(value) if isinstance(value, np.integer) else value


def _own_gallery_rows(
    query_ids: Sequence[Hashable] | None,
    gallery_ids: Sequence[Hashable] | None,
    n_queries: int,
    n_gallery: int,
    exclude: bool,
) -> list[list[int]]:
    if not exclude or query_ids is None or gallery_ids is None:
        if exclude and (query_ids is None) != (gallery_ids is None):
            raise ConfigError("give both query_ids and gallery_ids, or neither")
        return [[] for _ in range(n_queries)]
    _check_length(query_ids, n_queries, "query_ids")
    _check_length(gallery_ids, n_gallery, "gallery_ids")
    rows: dict[Hashable, list[int]] = defaultdict(list)
    for row, gid in enumerate(gallery_ids):
        rows[gid].append(row)
    return [rows.get(qid, []) for qid in query_ids]


def _relevant_rows(
    query_instances: Sequence[Iterable[str]], gallery_instances: Sequence[Iterable[str]], own: list[list[int]]
) -> list[set[int]]:
    by_instance: dict[str, list[int]] = defaultdict(list)
    for row, instances in enumerate(gallery_instances):
        for instance in _as_set(instances):
            by_instance[instance].append(row)
    relevant = []
    for instances, excluded in zip(query_instances, own, strict=True):
        rows = {row for instance in _as_set(instances) for row in by_instance.get(instance, ())}
        relevant.append(rows.difference(excluded))
    return relevant


def _as_set(instances: Iterable[str]) -> set[str]:
    if isinstance(instances, str):  # a bare string would otherwise be read letter by letter
        return {instances}
    return set(instances)


def _check_length(values: Sequence[Any], expected: int, name: str) -> None:
    if len(values) != expected:
        raise EvaluationError(f"{name} has {len(values)} entries for {expected} vectors")
