"""Instance retrieval: recall@k of queries against a gallery, base vs aligned vectors.

The protocol of the paper's DeepFashion2 experiment, for any data with instance ids:
each query is ranked against the whole gallery by cosine similarity, and recall@k is
the fraction of queries with **any** ground-truth match among the top k. Queries with
no match anywhere in the gallery cannot be scored; they are left out and counted.

Three entry points, one protocol (the metric itself is :mod:`percep_rag.evaluation.recall`):

* :func:`~percep_rag.evaluation.recall.recall_at_k` on vectors in memory (exact, numpy, chunked);
* :func:`evaluate_records` embeds a :class:`RetrievalTask` once and scores both the base
  and the aligned vectors;
* :func:`evaluate_records_in_collection` scores a task's records with the vectors stored
  in a collection (every record, also those whose image bytes another record shares);
* :func:`evaluate_collection` runs the queries through a store collection, so base and
  aligned come from the same stored points (one per distinct image).

>>> recs = [ImageRecord(id="q", uri="q.jpg", extra={"role": "query", "instance_id": "1"}),
...         ImageRecord(id="g", uri="g.jpg", extra={"role": "shop", "instance_id": "1"})]
>>> [len(part) for part in (retrieval_task(recs).queries, retrieval_task(recs).gallery)]
[1, 1]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from percep_rag.datasets.records import ImageRecord
from percep_rag.errors import ConfigError
from percep_rag.evaluation.errors import EvaluationError
from percep_rag.evaluation.recall import (
    DEFAULT_KS,
    RecallAtK,
    check_ks,
    parse_instances,
    recall_at_k,
    recall_from_rankings,
)
from percep_rag.failures import Failure

if TYPE_CHECKING:
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.store import VectorStore

#: Role values read as "query" / "gallery" (the DeepFashion2 ``source`` values included).
QUERY_ROLES = frozenset({"query", "user", "customer", "consumer"})
GALLERY_ROLES = frozenset({"gallery", "shop"})
#: A record with this role is both a query and a gallery item (never retrieved for itself).
BOTH_ROLE = "both"
_RECORD_ATTRIBUTES = ("id", "uri", "label", "prompt", "split")

#: An image left out of an evaluation because it could not be read (``record_id`` names it).
EvalFailure = Failure

# The metric's names stay importable from here, where they used to live.
__all__ = [
    "BOTH_ROLE",
    "DEFAULT_KS",
    "GALLERY_ROLES",
    "QUERY_ROLES",
    "EvalFailure",
    "EvaluationError",
    "RecallAtK",
    "RetrievalReport",
    "RetrievalTask",
    "evaluate_collection",
    "evaluate_records",
    "evaluate_records_in_collection",
    "parse_instances",
    "recall_at_k",
    "recall_in_collection",
    "record_points",
    "retrieval_task",
]


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
    failures: list[Failure] = field(default_factory=list)
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
            "failures": [
                {"record_id": failure.record_id, "source": failure.source, "reason": failure.reason}
                for failure in self.failures
            ],
        }


@dataclass(frozen=True)
class RetrievalTask:
    """Queries and gallery as records, each with its set of instance ids.

    A record with role ``both`` is in both lists under the same id.
    """

    queries: list[ImageRecord]
    gallery: list[ImageRecord]
    query_instances: list[set[str]]
    gallery_instances: list[set[str]]


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
    ks = check_ks(ks)
    ordered = _distinct_records(task)
    result = embedder.embed_many([r.uri for r in ordered], progress="embedding" if progress else False)
    row_of = {ordered[index].id: row for row, index in enumerate(result.indices)}
    failures = [Failure(source=f.source, reason=f.reason, record_id=ordered[f.index].id) for f in result.failures]
    return _score_task(task, result.base, result.aligned, row_of, ks, failures, description)


def _distinct_records(task: RetrievalTask) -> list[ImageRecord]:
    unique: dict[str, ImageRecord] = {}
    for record in [*task.queries, *task.gallery]:
        unique.setdefault(record.id, record)
    return list(unique.values())


def _score_task(
    task: RetrievalTask,
    base: np.ndarray,
    aligned: np.ndarray,
    row_of: Mapping[str, int],
    ks: tuple[int, ...],
    failures: list[Failure],
    description: str,
) -> RetrievalReport:
    """recall@k of both spaces, every record of ``task`` with a vector row (``row_of``) scored."""
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
    spaces = {}
    for name, vectors in (("base", base), ("aligned", aligned)):
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        spaces[name] = recall_at_k(
            vectors[q_rows].reshape(len(q_rows), dim), vectors[g_rows].reshape(len(g_rows), dim), **common
        )
    return RetrievalReport(
        ks, spaces["base"], spaces["aligned"], n_gallery=len(keep_g), failures=failures, description=description
    )


def record_points(records: Sequence[ImageRecord], collection: str) -> tuple[dict[str, str], list[Failure]]:
    """The point id each record's image has in ``collection`` (the id indexing gives it:
    byte-identical images share one), and the records whose file could not be read.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a", "b"):
    ...     _ = (folder / f"{name}.png").write_bytes(b"same bytes")
    >>> points, failures = record_points([ImageRecord(id=n, uri=str(folder / f"{n}.png")) for n in "ab"], "c")
    >>> points["a"] == points["b"], failures
    (True, [])
    """
    from percep_rag.errors import ImageDecodeError
    from percep_rag.indexing import read_record

    points: dict[str, str] = {}
    failures: list[Failure] = []
    for record in records:
        if record.id in points:
            continue
        try:
            points[record.id] = read_record(record, collection)[2]
        except ImageDecodeError as error:
            failures.append(Failure(source=record.uri, reason=str(error), record_id=record.id))
    return points, failures


def evaluate_records_in_collection(
    task: RetrievalTask,
    store: VectorStore,
    collection: str,
    *,
    points: Mapping[str, str] | None = None,
    allowed_points: Iterable[str] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    description: str = "",
) -> RetrievalReport:
    """:func:`evaluate_records` on the vectors stored in ``collection``: every record of
    ``task`` is scored as its own query or gallery item, with its point's stored vectors.

    A store keeps one point per distinct image, so two records with the same bytes but
    different annotations (two DeepFashion2 pairs sharing a shop photo) are one point
    carrying one record's payload; scoring the points (:func:`recall_in_collection`) would
    drop the other record. Here the records come from ``task`` and only their vectors from
    the store, so the numbers equal :func:`~percep_rag.evaluation.recall.recall_at_k`'s on
    the records (exact cosine, ties to the earlier gallery record).

    ``points`` maps record id -> point id (:func:`record_points`, read from the files when
    not given); ``allowed_points`` keeps only records whose point is among them (the
    points a filter matches). A record whose file cannot be read or whose point is not
    stored is left out and listed in the report's ``failures``.
    """
    ks = check_ks(ks)
    ordered = _distinct_records(task)
    failures: list[Failure] = []
    if points is None:
        points, failures = record_points(ordered, collection)
    allowed = None if allowed_points is None else set(allowed_points)
    wanted = [
        record for record in ordered if record.id in points and (allowed is None or points[record.id] in allowed)
    ]
    needed = {points[record.id] for record in wanted}
    stored = {point.id: point for point in store.retrieve(collection, needed, with_vectors=True)}
    row_of: dict[str, int] = {}
    rows: dict[str, list[np.ndarray]] = {"base": [], "aligned": []}
    for record in wanted:
        point = stored.get(points[record.id])
        if point is None or point.vectors is None:
            failures.append(Failure(source=record.uri, reason=f"no point in {collection!r}", record_id=record.id))
            continue
        row_of[record.id] = len(row_of)
        for name in rows:
            rows[name].append(np.asarray(point.vectors[name], dtype=np.float32))
    base, aligned = (np.stack(rows[name]) if rows[name] else np.zeros((0, 0), np.float32) for name in rows)
    return _score_task(task, base, aligned, row_of, ks, failures, description)


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
    """recall@k with the stored ``using`` vectors, ranked by the store's own search, over
    the stored **points**.

    Queries are the points matching ``query_filter`` (their stored vectors), the gallery
    the points matching ``gallery_filter``; a query point never retrieves itself.
    ``exact=True`` bypasses HNSW/quantization so the numbers equal :func:`recall_at_k`'s on
    the points. A point is one distinct image: records with the same bytes were indexed as
    one point with one record's payload, so they are not scored one by one here; to score
    every record (e.g. DeepFashion2 pairs sharing a photo) use
    :func:`evaluate_records_in_collection`.
    """
    ks = check_ks(ks)
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
    return recall_from_rankings(rankings, relevant, ks, n_skipped=skipped)


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
    collection's points. The defaults are DeepFashion2's (``source`` user vs shop), e.g.
    ``print(evaluate_collection(store, "df2-val").table())`` after indexing
    :func:`~percep_rag.datasets.deepfashion2.read_deepfashion2` records into ``df2-val``.
    With the records at hand, :func:`evaluate_records_in_collection` scores each of them
    (byte-identical records included).
    """
    query_filter = {"source": "user"} if query_filter is None else query_filter
    gallery_filter = {"source": "shop"} if gallery_filter is None else gallery_filter
    ks = check_ks(ks)
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
