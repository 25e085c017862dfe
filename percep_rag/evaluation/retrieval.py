"""Instance retrieval: recall@k of queries against a gallery, base vs aligned vectors.

The protocol of the paper's DeepFashion2 experiment, for any data with instance ids:
each query is ranked against the whole gallery by cosine similarity, and recall@k is
the fraction of queries with **any** ground-truth match among the top k. Queries with
no match anywhere in the gallery cannot be scored; they are left out and counted.

Three entry points, one protocol:

* :func:`recall_at_k` on vectors in memory (exact, numpy, chunked);
* :func:`evaluate_records` embeds a :class:`RetrievalTask` once and scores both the base
  and the aligned vectors;
* :func:`evaluate_collection` runs the queries through a store collection, so base and
  aligned come from the same stored points.

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
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from percep_rag.datasets.records import ImageRecord
from percep_rag.errors import ConfigError, DimensionMismatchError, PercepRagError

if TYPE_CHECKING:
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.store import VectorStore

#: Role values read as "query" / "gallery" (the DeepFashion2 ``source`` values included).
QUERY_ROLES = frozenset({"query", "user", "customer", "consumer"})
GALLERY_ROLES = frozenset({"gallery", "shop"})
#: A record with this role is both a query and a gallery item (never retrieved for itself).
BOTH_ROLE = "both"
DEFAULT_KS = (1, 3, 5)

# Similarity blocks are at most this many float32 entries (64 MB), whatever the gallery size.
_BLOCK_ENTRIES = 1 << 24
_RECORD_ATTRIBUTES = ("id", "uri", "label", "prompt", "split")


class EvaluationError(PercepRagError, ValueError):
    """Evaluation data is inconsistent (a role or instance value that cannot be read,
    arrays of different lengths); the message names the record or the argument."""


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


@dataclass(frozen=True)
class EvalFailure:
    """An image left out of an evaluation because it could not be read."""

    record_id: str
    source: str
    reason: str


@dataclass
class RetrievalReport:
    """recall@k for the base and the aligned vectors of the same queries and gallery.

    >>> r = RecallAtK({1: 0.5}, {1: 1}, 2, 1)
    >>> print(RetrievalReport(ks=(1,), base=r, aligned=RecallAtK({1: 1.0}, {1: 2}, 2, 1), n_gallery=3).table())
    k      base  aligned   change
    1     0.500    1.000   +0.500
    2 queries scored, 1 skipped (no match in the gallery); gallery of 3 images
    """

    ks: tuple[int, ...]
    base: RecallAtK
    aligned: RecallAtK
    n_gallery: int
    failures: list[EvalFailure] = field(default_factory=list)
    description: str = ""

    @property
    def n_queries(self) -> int:
        return self.aligned.n_queries

    @property
    def n_skipped(self) -> int:
        return self.aligned.n_skipped

    def table(self) -> str:
        """recall@k per k as a fixed-width table, plus the counts."""
        lines = [f"{'k':<3} {'base':>7} {'aligned':>8} {'change':>8}"]
        for k in self.ks:
            base, aligned = self.base.recall[k], self.aligned.recall[k]
            lines.append(f"{k:<3} {base:>7.3f} {aligned:>8.3f} {aligned - base:>+8.3f}")
        summary = (
            f"{self.n_queries} queries scored, {self.n_skipped} skipped (no match in the gallery); "
            f"gallery of {self.n_gallery} images"
        )
        if self.failures:
            summary += f"; {len(self.failures)} unreadable images left out"
        lines.append(summary)
        return "\n".join(([self.description] if self.description else []) + lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recall keys are the k values as strings)."""

        def space(result: RecallAtK) -> dict[str, Any]:
            recall = {str(k): value for k, value in result.recall.items()}
            return {"recall": recall, "hits": {str(k): value for k, value in result.hits.items()}}

        return {
            "description": self.description,
            "ks": list(self.ks),
            "base": space(self.base),
            "aligned": space(self.aligned),
            "n_queries": self.n_queries,
            "n_skipped": self.n_skipped,
            "n_gallery": self.n_gallery,
            "failures": [asdict(failure) for failure in self.failures],
        }


# --------------------------------------------------------------------------- the metric


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
    block_entries: int = _BLOCK_ENTRIES,
) -> RecallAtK:
    """Exact cosine recall@k: the share of queries with a gallery item sharing one of
    their instance ids among their ``k`` most similar gallery items.

    Vectors need not be normalised (cosine is computed). With ``query_ids`` and
    ``gallery_ids`` and ``exclude_same_id``, a gallery item with the query's own id is
    neither ranked nor counted as a match (for data where an image is both a query and a
    gallery item). Ties rank the earlier gallery item first. Queries without any match
    are skipped (``n_skipped``); with none left every recall is ``nan``.

    Every image as query and gallery (leave-one-out); ``b`` has no other ``y`` so it is
    skipped, ``a`` ties ``b`` and ``c`` at 0 and gets ``b`` first (a miss), ``c`` gets ``a``:

    >>> import numpy as np
    >>> v, ids, inst = np.eye(3), ["a", "b", "c"], [{"x"}, {"y"}, {"x"}]
    >>> r = recall_at_k(v, v, inst, inst, ks=(1,), query_ids=ids, gallery_ids=ids)
    >>> r.recall, r.n_queries, r.n_skipped
    ({1: 0.5}, 2, 1)
    """
    ks = _check_ks(ks)
    queries = _unit_rows(query_vectors, "query_vectors")
    gallery = _unit_rows(gallery_vectors, "gallery_vectors")
    if queries.shape[1] != gallery.shape[1]:
        raise DimensionMismatchError(f"queries are {queries.shape[1]}-d but the gallery is {gallery.shape[1]}-d")
    _check_length(query_instances, len(queries), "query_instances")
    _check_length(gallery_instances, len(gallery), "gallery_instances")
    own = _own_gallery_rows(query_ids, gallery_ids, len(queries), len(gallery), exclude_same_id)
    relevant = _relevant_rows(query_instances, gallery_instances, own)
    scored = [i for i, rows in enumerate(relevant) if rows]
    depth = min(max(ks), len(gallery))
    rankings: list[np.ndarray] = []
    if scored and depth:
        step = max(1, block_entries // max(len(gallery), 1))
        for start in range(0, len(scored), step):
            block = scored[start : start + step]
            similarity = queries[block] @ gallery.T
            for row, query in enumerate(block):
                similarity[row, own[query]] = -np.inf
            rankings.extend(_top_rows(similarity, depth))
    hits = _count_hits(rankings, [relevant[i] for i in scored], ks)
    return _result(hits, len(scored), len(queries) - len(scored), ks)


def _top_rows(similarity: np.ndarray, depth: int) -> list[np.ndarray]:
    """Indices of the ``depth`` largest entries per row, best first, earlier index on ties."""
    if depth < similarity.shape[1]:
        candidates = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
    else:
        candidates = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape)
    values = np.take_along_axis(similarity, candidates, axis=1)
    # lexsort's last key is primary: score descending, then gallery index ascending.
    order = np.lexsort((candidates, -values), axis=1)
    return list(np.take_along_axis(candidates, order, axis=1))


def _count_hits(
    rankings: Iterable[Sequence[Hashable]], relevant: Iterable[set[Hashable]], ks: tuple[int, ...]
) -> dict[int, int]:
    hits = dict.fromkeys(ks, 0)
    for ranked, wanted in zip(rankings, relevant, strict=True):
        first = next((rank for rank, item in enumerate(ranked) if _item(item) in wanted), None)
        if first is None:
            continue
        for k in ks:
            if first < k:
                hits[k] += 1
    return hits


def _item(value: Hashable) -> Hashable:
    return int(value) if isinstance(value, np.integer) else value


def _result(hits: dict[int, int], scored: int, skipped: int, ks: tuple[int, ...]) -> RecallAtK:
    recall = {k: (hits[k] / scored if scored else math.nan) for k in ks}
    return RecallAtK(recall=recall, hits=hits, n_queries=scored, n_skipped=skipped)


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


def _unit_rows(vectors: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise DimensionMismatchError(f"{name} must be an (n, d) array, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if len(array) and not (np.isfinite(norms).all() and (norms > 0).all()):
        raise EvaluationError(f"{name} has a zero, NaN or infinite row; cosine is undefined for it")
    return array / np.where(norms > 0, norms, 1.0)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    values = tuple(sorted(set(ks)))
    if not values or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in values):
        raise ConfigError(f"ks must be positive integers, got {list(ks)!r}")
    return tuple(int(k) for k in values)


def _check_length(values: Sequence[Any], expected: int, name: str) -> None:
    if len(values) != expected:
        raise EvaluationError(f"{name} has {len(values)} entries for {expected} vectors")


# --------------------------------------------------------------------------- records -> task


@dataclass(frozen=True)
class RetrievalTask:
    """Queries and gallery as records, each with its set of instance ids.

    A record with role ``both`` is in both lists under the same id.
    """

    queries: list[ImageRecord]
    gallery: list[ImageRecord]
    query_instances: list[set[str]]
    gallery_instances: list[set[str]]


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


def retrieval_task(
    records: Sequence[ImageRecord],
    *,
    instance_field: str = "instance_id",
    role_field: str | None = None,
    query_roles: Iterable[str] = QUERY_ROLES,
    gallery_roles: Iterable[str] = GALLERY_ROLES,
) -> RetrievalTask:
    """Split ``records`` into queries and gallery by their ``role_field`` value and read
    their ``instance_field`` ids (:func:`parse_instances`).

    ``role_field=None`` uses ``role`` when a record has it, else DeepFashion2's
    ``source`` (``user``/``shop``). Role values are compared case-insensitively;
    ``both`` puts a record in both lists. A record with another role value, or none,
    raises :class:`EvaluationError` naming it. Records without instance ids stay in the
    gallery as distractors.

    >>> recs = [ImageRecord(id="q", uri="q.jpg", extra={"role": "query", "instance_id": "1"}),
    ...         ImageRecord(id="g", uri="g.jpg", extra={"role": "gallery", "instance_id": ["1", "2"]})]
    >>> task = retrieval_task(recs)
    >>> [r.id for r in task.queries], sorted(task.gallery_instances[0])
    (['q'], ['1', '2'])
    """
    queries_wanted = {role.lower() for role in query_roles}
    gallery_wanted = {role.lower() for role in gallery_roles}
    overlap = queries_wanted & gallery_wanted
    if overlap:
        raise ConfigError(f"role values {sorted(overlap)} are both query and gallery roles; use 'both' instead")
    if role_field is None:
        role_field = "role" if any(_field(r, "role") is not None for r in records) else "source"
    queries, gallery, query_instances, gallery_instances = [], [], [], []
    for record in records:
        where = f"record {record.id!r}: "
        role = _field(record, role_field)
        role_text = str(role).strip().lower() if role is not None else ""
        instances = parse_instances(_field(record, instance_field), where=where)
        is_query = role_text in queries_wanted or role_text == BOTH_ROLE
        is_gallery = role_text in gallery_wanted or role_text == BOTH_ROLE
        if not (is_query or is_gallery):
            raise EvaluationError(
                f"{where}{role_field}={role!r} is not a role; use one of {sorted(queries_wanted)} (query), "
                f"{sorted(gallery_wanted)} (gallery) or {BOTH_ROLE!r}"
            )
        if is_query:
            queries.append(record)
            query_instances.append(instances)
        if is_gallery:
            gallery.append(record)
            gallery_instances.append(instances)
    return RetrievalTask(queries, gallery, query_instances, gallery_instances)


def _field(record: ImageRecord, name: str) -> Any:
    if name in _RECORD_ATTRIBUTES:
        return getattr(record, name)
    return record.extra.get(name)


# --------------------------------------------------------------------------- embed and score


def evaluate_records(
    task: RetrievalTask,
    embedder: AlignedEmbedder,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    progress: bool = False,
    description: str = "",
) -> RetrievalReport:
    """Embed every image of ``task`` once (base and aligned) and score both spaces.

    Unreadable images are left out (listed in the report's ``failures``); a query whose
    only matches were unreadable is then skipped like any query without a match.
    """
    ks = _check_ks(ks)
    unique: dict[str, ImageRecord] = {}
    for record in [*task.queries, *task.gallery]:
        unique.setdefault(record.id, record)
    ordered = list(unique.values())
    result = embedder.embed_many([r.uri for r in ordered], progress="embedding" if progress else False)
    row_of = {ordered[index].id: row for row, index in enumerate(result.indices)}
    failures = [EvalFailure(ordered[f.index].id, f.source, f.reason) for f in result.failures]
    keep_q = [i for i, r in enumerate(task.queries) if r.id in row_of]
    keep_g = [i for i, r in enumerate(task.gallery) if r.id in row_of]
    q_rows = [row_of[task.queries[i].id] for i in keep_q]
    g_rows = [row_of[task.gallery[i].id] for i in keep_g]
    common: dict[str, Any] = {
        "query_instances": [task.query_instances[i] for i in keep_q],
        "gallery_instances": [task.gallery_instances[i] for i in keep_g],
        "ks": ks,
        "query_ids": [task.queries[i].id for i in keep_q],
        "gallery_ids": [task.gallery[i].id for i in keep_g],
    }
    base = recall_at_k(result.base[q_rows], result.base[g_rows], **common)
    aligned = recall_at_k(result.aligned[q_rows], result.aligned[g_rows], **common)
    return RetrievalReport(ks, base, aligned, n_gallery=len(keep_g), failures=failures, description=description)


def recall_in_collection(
    store: VectorStore,
    collection: str,
    *,
    using: str = "aligned",
    query_filter: Mapping[str, object] | None = None,
    gallery_filter: Mapping[str, object] | None = None,
    instance_field: str = "instances",
    ks: Sequence[int] = DEFAULT_KS,
    exact: bool = True,
) -> RecallAtK:
    """recall@k with the stored ``using`` vectors, ranked by the store's own search.

    Queries are the points matching ``query_filter`` (their stored vectors), the gallery
    the points matching ``gallery_filter``; a query point never retrieves itself.
    ``exact=True`` bypasses HNSW/quantization so the numbers equal :func:`recall_at_k`'s.
    """
    ks = _check_ks(ks)
    gallery_instances: dict[str, set[str]] = {}
    by_instance: dict[str, set[str]] = defaultdict(set)
    for point in store.iterate(collection, gallery_filter):
        instances = parse_instances(point.payload.get(instance_field), where=f"point {point.id}: ")
        gallery_instances[point.id] = instances
        for instance in instances:
            by_instance[instance].add(point.id)
    query_ids, vectors, relevant = [], [], []
    skipped = 0
    for point in store.iterate(collection, query_filter, with_vectors=True):
        instances = parse_instances(point.payload.get(instance_field), where=f"point {point.id}: ")
        matches = {gid for instance in instances for gid in by_instance.get(instance, ())} - {point.id}
        if not matches:
            skipped += 1
            continue
        assert point.vectors is not None  # asked for with_vectors
        query_ids.append(point.id)
        vectors.append(point.vectors[using])
        relevant.append(matches)
    rankings: list[list[str]] = []
    if vectors:
        hits = store.query_batch(
            collection,
            np.stack(vectors),
            using=using,
            k=max(ks),
            filter=gallery_filter,
            exclude_per_query=[[qid] for qid in query_ids],
            with_payload=False,
            exact=exact,
        )
        rankings = [[hit.id for hit in found] for found in hits]
    return _result(_count_hits(rankings, relevant, ks), len(query_ids), skipped, ks)


def evaluate_collection(
    store: VectorStore,
    collection: str,
    *,
    query_filter: Mapping[str, object] | None = None,
    gallery_filter: Mapping[str, object] | None = None,
    instance_field: str = "instances",
    ks: Sequence[int] = DEFAULT_KS,
    exact: bool = True,
    description: str = "",
) -> RetrievalReport:
    """:func:`recall_in_collection` for both ``base`` and ``aligned``: one report from one
    collection. The defaults are DeepFashion2's (``source`` user vs shop), e.g.
    ``print(evaluate_collection(store, "df2-val").table())`` after indexing
    :func:`~percep_rag.datasets.deepfashion2.read_deepfashion2` records into ``df2-val``.
    """
    query_filter = {"source": "user"} if query_filter is None else query_filter
    gallery_filter = {"source": "shop"} if gallery_filter is None else gallery_filter
    ks = _check_ks(ks)
    spaces = {
        using: recall_in_collection(
            store,
            collection,
            using=using,
            query_filter=query_filter,
            gallery_filter=gallery_filter,
            instance_field=instance_field,
            ks=ks,
            exact=exact,
        )
        for using in ("base", "aligned")
    }
    n_gallery = store.count(collection, gallery_filter)
    return RetrievalReport(ks, spaces["base"], spaces["aligned"], n_gallery=n_gallery, description=description)
