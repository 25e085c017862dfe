"""Retrieval-augmented few-shot classification, the paper's VTAB protocol.

The task's train split is indexed as the example pool; for each test query the top-k
examples (most similar last) are interleaved into the VLM prompt and the class names are
ranked by mean token log-probability. Methods compared on the same queries:

* ``aligned`` / ``base``: examples retrieved with the aligned / base vectors;
* ``random``: ``shots`` examples drawn at random from the pool (per seed);
* ``mmr-aligned`` / ``mmr-base``: examples picked for similarity AND variety (maximal marginal
  relevance with ``diversity``, see :meth:`~percep_rag.retrieval.ExampleRetriever.examples`), to
  see whether diverse examples beat plain nearest neighbours (not run unless asked for);
* ``knn-aligned`` / ``knn-base``: no VLM, the majority label of the retrieved examples.

Every method draws its examples under one rule: never the query itself nor a copy of it (its
point, its file, or a pool image with its vector; see :class:`~percep_rag.retrieval.ExampleRetriever`),
so duplicates across the splits inflate no baseline. Each prompt holds exactly ``shots`` examples:
a pool too small for that is refused before any prompt (:class:`PoolTooSmallError`).

The pool goes into a collection of its own, named by its content (:func:`example_pool`): tasks
sharing a store never mix, a relabelled pool is indexed afresh, and rerunning a task reuses it.

Each seed draws its own query sample and random examples. The sample is ``queries``
distinct queries; with ``queries=None`` it is a bootstrap sample (as many queries as the
task has, drawn with replacement), so that seeds differ even when every query is used; a
single seed uses every query once. Accuracies are reported as the mean over seeds with a
95% Wilson interval over the task's queries
(:func:`~percep_rag.evaluation.stats.sampled_share_ci95`): the seeds re-draw the same
queries, so a t-interval over them would shrink with the number of seeds, not the data.
For ``random`` the seeds also re-draw the examples, which the mean averages over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from percep_rag.config import DEFAULT_FEWSHOT_METHODS, FEWSHOT_METHODS, FewShotMethod, Precision
from percep_rag.datasets.records import ImageRecord
from percep_rag.datasets.vtab import ClassificationTask
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ConfigError, ImageDecodeError
from percep_rag.evaluation.neighbours import majority_vote
from percep_rag.evaluation.stats import Interval, sampled_share_ci95
from percep_rag.evaluation.tables import markdown_table
from percep_rag.fewshot.prompt import ZeroShotStyle, demonstrations_needed, prompt_examples
from percep_rag.indexing import index_records, record_payload
from percep_rag.io.images import read_image_bytes
from percep_rag.retrieval import Example, ExampleRetriever
from percep_rag.store import VectorStore, content_hash, point_id

Method = FewShotMethod
#: What :func:`evaluate_fewshot` runs when no methods are named.
DEFAULT_METHODS: tuple[Method, ...] = DEFAULT_FEWSHOT_METHODS
ALL_METHODS: tuple[Method, ...] = FEWSHOT_METHODS
VLM_METHODS = frozenset({"aligned", "base", "random", "mmr-aligned", "mmr-base"})


class PoolTooSmallError(ConfigError):
    """The pool cannot give a query as many examples as its prompt needs (a usage error: fewer shots)."""


@dataclass
class FewShotReport:
    """Accuracy per method and seed; :meth:`interval` is their mean with a 95% interval over queries.

    ``task_queries`` is the number of queries the task has (each seed samples
    ``queries_per_seed`` of them, with replacement when ``bootstrap``); 0 means
    ``queries_per_seed``.

    >>> report = FewShotReport("demo", 3, [0, 1, 2, 3, 4], 80, False, {"knn-base": [0.6, 0.65, 0.6, 0.6, 0.6]},
    ...                        task_queries=80, bootstrap=True)
    >>> print(report.interval("knn-base"), report.interval("knn-base").over)
    0.6100 (0.4900 to 0.7180) 80 queries (5 seeds of 80 with replacement)
    """

    task: str
    shots: int
    seeds: list[int]
    queries_per_seed: int
    random_weights: bool
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    zero_shot_style: str = "plain"
    task_queries: int = 0
    bootstrap: bool = False

    def interval(self, method: str) -> Interval:
        """The mean accuracy over seeds and its 95% Wilson interval over the task's queries
        (not over seeds: the seeds re-draw the same queries)."""
        return sampled_share_ci95(
            self.accuracy[method],
            sample=self.queries_per_seed,
            population=max(self.task_queries, self.queries_per_seed),
            with_replacement=self.bootstrap,
        )

    def table(self) -> str:
        """A markdown table of the results, and what its intervals are over."""
        note = " (RANDOM weights: not a finding)" if self.random_weights else ""
        population = max(self.task_queries, self.queries_per_seed)
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''}"
        if self.bootstrap:
            sample = f"{seeds}, each a bootstrap resample (with replacement) of the task's {population} queries"
        elif self.queries_per_seed == population:
            sample = f"{seeds} x all {population} queries"
        else:
            sample = f"{seeds} x {self.queries_per_seed} of the task's {population} queries"
        title = f"few-shot classification on {self.task}: {self.shots} shots{self._style()}, {sample}{note}"
        rows = [[method, self.interval(method)] for method in self.accuracy]
        column = f"accuracy: mean over seeds (95% interval over the {population} queries)"
        footnote = (
            "95% Wilson intervals over the sampling of the test queries; the seeds re-draw the same queries "
            "(and random's examples), so the seeds' spread is resampling noise, not an interval."
        )
        return title + "\n" + markdown_table(["method", column], rows) + "\n" + footnote

    def _style(self) -> str:
        if self.shots or self.zero_shot_style == "plain":
            return ""
        return " (open_flamingo style: 2 text-only demonstrations)"


def majority_label(examples: Sequence[Example]) -> str:
    """Most frequent label; ties go to the label of the most similar example among them
    (:func:`~percep_rag.evaluation.neighbours.majority_vote` over the examples ranked by score).

    >>> from percep_rag.retrieval import Example
    >>> ex = [Example(str(i), "", lab, None, s, {}) for i, (lab, s) in enumerate([("a", .1), ("b", .2), ("a", .3)])]
    >>> majority_label(ex)
    'a'
    """
    # Retrieved examples come most-similar-last; the vote wants the best first.
    ranked = sorted(examples, key=lambda example: example.score, reverse=True)
    return majority_vote([example.label for example in ranked])


def checked_methods(methods: Sequence[str]) -> tuple[Method, ...]:
    """``methods`` as given, refused when one is unknown or named more than once (each method is
    one row of the table: a repeat would count its hits twice per seed).

    >>> checked_methods(["knn-base", "aligned"])
    ('knn-base', 'aligned')
    >>> checked_methods(["knn-base", "knn-base"])
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: methods named more than once: knn-base
    """
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; choose from {list(ALL_METHODS)}")
    repeated = sorted({method for method in methods if list(methods).count(method) > 1})
    if repeated:
        raise ConfigError(f"methods named more than once: {', '.join(repeated)}")
    return tuple(methods)  # type: ignore[return-value]


@dataclass(frozen=True)
class ExamplePool:
    """A task's example pool as stored: its collection and each pool record's point id there."""

    collection: str
    point_ids: tuple[str, ...]

    @property
    def distinct(self) -> int:
        """Distinct images in the pool (files with the same bytes are one point)."""
        return len(set(self.point_ids))


def example_pool(task: ClassificationTask, prefix: str, embedder: AlignedEmbedder) -> ExamplePool:
    """The collection ``task``'s pool goes into: ``<prefix>-<digest>``, where the digest covers what
    each pool point stores (file, content hash, label, split, in pool order) and the embedder.

    A pool with other images, labels or files, or another embedder, gets a collection of its
    own: two tasks in one store never mix, a renamed class is never answered with its old name,
    and running a task again reuses its collection (nothing embedded twice).

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from percep_rag import EmbedderSpec
    >>> from percep_rag.datasets.vtab import read_task
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for split in ("train", "test"):
    ...     (root / split / "cat").mkdir(parents=True)
    ...     Image.new("RGB", (8, 8)).save(root / split / "cat" / "0.png")
    >>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    >>> pool = example_pool(read_task(root), "fewshot-pool", embedder)
    >>> pool.collection.startswith("fewshot-pool-"), pool.distinct
    (True, 1)
    """
    digests, unreadable = [], []
    fingerprint = hashlib.sha256(embedder.fingerprint.model_dump_json().encode())
    for record in task.pool:
        try:
            digest = content_hash(read_image_bytes(record.uri))
        except ImageDecodeError as error:
            unreadable.append(error)
            continue
        digests.append(digest)
        fingerprint.update(json.dumps(record_payload(record, digest, None), sort_keys=True).encode() + b"\n")
    if unreadable:
        first = unreadable[0]
        raise ConfigError(f"{len(unreadable)} pool images could not be read, e.g. {first.source}: {first.reason}")
    collection = f"{prefix}-{fingerprint.hexdigest()[:16]}"
    return ExamplePool(collection, tuple(point_id(digest, collection) for digest in digests))


def index_pool(
    task: ClassificationTask, *, embedder: AlignedEmbedder, store: VectorStore, collection: str, progress: bool = False
) -> None:
    """Index the task's example pool into ``collection`` (idempotent: an indexed pool is not embedded
    again); :func:`evaluate_fewshot` names the collection with :func:`example_pool`."""
    report = index_records(task.pool, embedder=embedder, store=store, collection=collection, progress=progress)
    if report.failures:
        first = report.failures[0]
        raise ConfigError(
            f"{len(report.failures)} pool images could not be indexed, e.g. {first.source}: {first.reason}"
        )


def check_pool_size(pool: ExamplePool, shots: int, demos: int) -> None:
    """Refuse a prompt of ``demos`` examples (for ``shots``) from a pool with fewer distinct images.

    >>> check_pool_size(ExamplePool("c", ("a", "b", "b")), 3, 3)
    Traceback (most recent call last):
    ...
    percep_rag.fewshot.evaluate.PoolTooSmallError: 3 shots need 3 examples per prompt; the pool holds 2 distinct images
    """
    if demos > pool.distinct:
        raise PoolTooSmallError(f"{_shots_text(shots, demos)}; the pool holds {pool.distinct} distinct images")


def evaluate_fewshot(
    task: ClassificationTask,
    *,
    embedder: AlignedEmbedder,
    store: VectorStore,
    collection: str,
    classifier=None,
    shots: int = 3,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    queries: int | None = None,
    methods: Sequence[Method] = DEFAULT_METHODS,
    diversity: float = 0.5,
    progress: bool = False,
    zero_shot_style: ZeroShotStyle = "plain",
) -> FewShotReport:
    """Run the protocol; ``classifier`` (a :class:`~percep_rag.fewshot.classify.FewShotClassifier`)
    is needed for the VLM methods, the ``knn-*`` methods run without one. ``diversity`` is the
    ``mmr-*`` methods' trade of similarity for variety (0 = the plain nearest neighbours).

    ``collection`` is the prefix of the pool's collection (see :func:`example_pool`). Every
    method's examples leave out the query and its copies, and each prompt holds exactly ``shots``
    of them: :class:`PoolTooSmallError` (before any prompt) when the pool cannot give that.

    ``shots=0``: the query alone (``zero_shot_style="plain"``), or as open_flamingo's
    evaluation (``"openflamingo"``): each method's two demonstrations, text only (see
    :mod:`percep_rag.fewshot.prompt`); the ``knn-*`` methods vote with those two."""
    methods = checked_methods(methods)
    if classifier is None and VLM_METHODS & set(methods):
        raise ConfigError(f"methods {sorted(VLM_METHODS & set(methods))} need a VLM classifier")
    demos = demonstrations_needed(shots, zero_shot_style)
    if demos == 0 and {"knn-aligned", "knn-base"} & set(methods):
        raise ConfigError("the knn-* methods need examples: use shots > 0 or zero_shot_style='openflamingo'")
    if queries is not None and queries > len(task.queries):
        raise ConfigError(f"asked for {queries} queries per seed, the task has {len(task.queries)}")
    pool = example_pool(task, collection, embedder)
    check_pool_size(pool, shots, demos)
    index_pool(task, embedder=embedder, store=store, collection=pool.collection, progress=progress)
    retriever = ExampleRetriever(store, pool.collection, embedder)
    uris = [record.uri for record in task.queries]
    retrieved = {
        using: retriever.examples_batch(uris, k=demos, using=using) if demos else [[]] * len(uris)
        for using in ("aligned", "base")
        if {using, f"knn-{using}"} & set(methods)
    }
    for using in ("aligned", "base"):
        if f"mmr-{using}" in methods:
            retrieved[f"mmr-{using}"] = (
                retriever.examples_batch(uris, k=demos, using=using, diversity=diversity) if demos else [[]] * len(uris)
            )
    if "random" in methods:
        retrieved["random"] = _random_candidates(retriever, pool, task, uris, demos)
    _check_every_query_has(demos, shots, retrieved, task.queries)
    class_names = task.class_names
    report = FewShotReport(task.name, shots, list(seeds), queries or len(uris), embedder.backbone.random_weights)
    report.zero_shot_style = zero_shot_style
    report.task_queries, report.bootstrap = len(uris), queries is None and len(seeds) > 1
    for method in methods:
        report.accuracy[method] = []
    total = len(seeds) * report.queries_per_seed
    with tqdm(total=total, desc="few-shot", unit="query", disable=not progress) as bar:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            bootstrap = queries is None and len(seeds) > 1
            chosen = np.sort(rng.choice(len(uris), report.queries_per_seed, replace=bootstrap))
            correct = {method: 0 for method in methods}
            for q in chosen:
                query = task.queries[q]
                for method in methods:
                    prediction = _predict(method, query, retrieved, q, rng, (demos, shots), classifier, class_names)
                    correct[method] += prediction == query.label
                bar.update(1)
            for method in methods:
                report.accuracy[method].append(correct[method] / len(chosen))
    return report


def _random_candidates(
    retriever: ExampleRetriever, pool: ExamplePool, task: ClassificationTask, uris: list[str], demos: int
) -> list[list[Example]]:
    """Per query, the pool images the random baseline may draw (each once, in pool order): all but
    the query and its copies, by the retriever's rule (:meth:`~percep_rag.retrieval.ExampleRetriever.query_copies`)."""
    if not demos:
        return [[]] * len(uris)
    first: dict[str, ImageRecord] = {}
    for pid, record in zip(pool.point_ids, task.pool, strict=True):
        first.setdefault(pid, record)  # files with the same bytes are one image, as in the store
    images = [Example(pid, record.uri, record.label, None, 0.0, {}) for pid, record in first.items()]
    return [[image for image in images if image.id not in excluded] for excluded in retriever.query_copies(uris)]


def _check_every_query_has(
    demos: int, shots: int, candidates: dict[str, list[list[Example]]], queries: Sequence[ImageRecord]
) -> None:
    """Refuse the run when some method has fewer than ``demos`` examples for a query (its copies in
    the pool leave too few), so that every prompt of every method holds the same count."""
    for found in candidates.values():
        for query, examples in zip(queries, found, strict=True):
            if len(examples) < demos:
                raise PoolTooSmallError(
                    f"query {query.id} has only {len(examples)} pool examples that are neither it nor a copy of "
                    f"it; {_shots_text(shots, demos)}"
                )


def _shots_text(shots: int, demos: int) -> str:
    return f"{shots} shots need {demos} examples per prompt"


def _predict(
    method: str,
    query: ImageRecord,
    candidates: dict[str, list[list[Example]]],
    index: int,
    rng: np.random.Generator,
    demos_and_shots: tuple[int, int],
    classifier,
    class_names: list[str],
) -> str:
    demos, shots = demos_and_shots
    if method.startswith("knn-"):
        return majority_label(candidates[method.removeprefix("knn-")][index])
    if method == "random":
        allowed = candidates["random"][index]
        picks = rng.choice(len(allowed), demos, replace=False)
        examples = [(allowed[i].uri, allowed[i].label) for i in picks]
    else:
        examples = [(example.uri, example.label or example.text) for example in candidates[method][index]]
    # 0 shots: the demonstrations' text only (open_flamingo style), or none at all (plain).
    return classifier.predict(prompt_examples(examples, shots), query.uri, class_names)


def load_vlm(
    name: str = "tiny-flamingo-random",
    *,
    checkpoint: str | None = None,
    lang: str | None = None,
    vision_weights: str | None = None,
    device: str = "cpu",
    precision: Precision = "auto",
):
    """The few-shot VLM ``name`` names (a ``--vlm`` spec, see :func:`percep_rag.vlm.load_vlm`): the tiny
    random-weight test models, a released OpenFlamingo loaded from local files, or ``smolvlm:<dir>``.

    ``precision="auto"`` loads bf16 weights on CUDA and on CPUs with native bf16 (AMX,
    AVX-512 BF16), fp32 elsewhere (:func:`percep_rag.precision.resolve_precision`).

    >>> load_vlm("tiny-flamingo-random").predict([], "nonexistent.png", ["a"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    percep_rag.errors.ImageDecodeError: nonexistent.png: ...
    """
    from percep_rag.vlm.registry import load_vlm as load_any

    return load_any(
        name, device=device, precision=precision, checkpoint=checkpoint, lang=lang, vision_weights=vision_weights
    )
