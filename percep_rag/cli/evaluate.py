"""``percep-rag eval retrieval|deepfashion2``: instance-retrieval recall@k, base vs aligned vectors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import (
    EmbedderOptions,
    FilterOption,
    ProgressOption,
    StoreOption,
    store_spec,
    with_options,
)
from percep_rag.cli.output import echo_skipped, random_note
from percep_rag.cli.stored import CollectionEmbedderOptions, checked_filter, collection_embedder, default_options

KsOption = Annotated[str, typer.Option("--ks", help="Comma-separated k values for recall@k.")]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")]


@dataclass(frozen=True)
class RecallOptions:
    """Which recall@k to report, and where to write the report as JSON."""

    ks: KsOption = "1,3,5"
    json_out: JsonOption = None

    def ks_values(self) -> tuple[int, ...]:
        """``--ks`` as integers (a usage error when it is not)."""
        return parse_ks(self.ks)

    def finish(self, report: Any) -> None:
        """Print the report and its left-out images, write the JSON; exit 1 when no query counted."""
        typer.echo(report.table())
        echo_skipped(report.failures)
        if self.json_out is not None:
            self.json_out.write_text(json.dumps(report.to_dict(), indent=1))
            typer.echo(f"report written to {self.json_out}")
        if report.n_queries == 0:
            fail("no query has a matching gallery image: check the role and instance fields")


@with_options(RecallOptions)
@with_options(EmbedderOptions)
def eval_retrieval(
    manifest: Annotated[Path, typer.Argument(help="A .csv or .jsonl manifest with image, instance and role columns.")],
    instance_field: Annotated[str, typer.Option(help="Column of instance ids (an id, a list, 'a;b').")] = "instance_id",
    role_field: Annotated[
        str | None, typer.Option(help="Column of roles: query/gallery/both (default: 'role', else DF2's 'source').")
    ] = None,
    *,
    recall: RecallOptions,
    embedder_options: EmbedderOptions,
    progress: ProgressOption = True,
) -> None:
    """recall@k of query images against a gallery, base vs aligned vectors (exact cosine)."""
    from percep_rag.datasets.records import read_manifest
    from percep_rag.evaluation import evaluate_records, retrieval_task

    wanted = recall.ks_values()
    task = retrieval_task(read_manifest(manifest), instance_field=instance_field, role_field=role_field)
    if not task.queries or not task.gallery:
        fail(f"{manifest}: {len(task.queries)} queries and {len(task.gallery)} gallery images; need both")
    embedder = embedder_options.build()
    description = f"{manifest.name}: {_described(embedder)}"
    report = evaluate_records(task, embedder, ks=wanted, progress=progress, description=description)
    recall.finish(report)


@with_options(RecallOptions)
@with_options(CollectionEmbedderOptions)
def eval_deepfashion2(
    root: Annotated[Path, typer.Argument(help="DeepFashion2 root (holding <split>/image and <split>/annos).")],
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "validation",
    max_pairs: Annotated[int | None, typer.Option(min=1, help="Only the first N pair ids (quick runs).")] = None,
    collection: Annotated[
        str | None,
        typer.Option(help="Index into this collection (resumable) and score every record with its stored vectors."),
    ] = None,
    store: StoreOption = None,
    filter: FilterOption = None,
    *,
    recall: RecallOptions,
    embedder_options: CollectionEmbedderOptions,
    progress: ProgressOption = True,
) -> None:
    """Consumer-to-shop recall@k on DeepFashion2: customer images query the shop images.

    With an existing ``--collection`` the embedder options default to the collection's;
    ``--filter`` (with ``--collection``) narrows both queries and gallery to the records
    whose stored point it matches. Each record is scored, also one whose image bytes another
    record shares (the store keeps one point for both): the numbers equal the in-memory run's.
    """
    from percep_rag.datasets.deepfashion2 import DATASET_NAME, PAYLOAD_INDEXES, read_deepfashion2
    from percep_rag.evaluation import evaluate_records, retrieval_task

    wanted = recall.ks_values()
    records = read_deepfashion2(root, split, max_pairs=max_pairs)
    if not records:
        fail(f"no annotated images in {root / split}")
    if filter and collection is None:
        fail("--filter needs --collection (it filters stored points)", USAGE)
    task = retrieval_task(records, instance_field="instances", role_field="source")
    if collection is None:
        embedder = default_options(embedder_options).build()
        description = f"DeepFashion2 {split}: {_described(embedder)}"
        report = evaluate_records(task, embedder, ks=wanted, progress=progress, description=description)
    else:
        from percep_rag.evaluation import EvalFailure
        from percep_rag.evaluation.retrieval import evaluate_records_in_collection, record_points
        from percep_rag.indexing import index_records
        from percep_rag.store import open_store

        with open_store(store_spec(store)) as opened:
            if opened.has_collection(collection):
                embedder = collection_embedder(embedder_options, opened.collection_info(collection))
            else:
                embedder = default_options(embedder_options).build()
            description = f"DeepFashion2 {split}: {_described(embedder)}"
            indexed = index_records(
                records,
                embedder=embedder,
                store=opened,
                collection=collection,
                dataset=DATASET_NAME,
                payload_indexes=PAYLOAD_INDEXES,
                progress=progress,
            )
            typer.echo(str(indexed))
            narrowed = checked_filter(opened, collection, filter)
            allowed = None if narrowed is None else [point.id for point in opened.iterate(collection, narrowed)]
            # The records say what is a query and what its matches are; the store gives their vectors.
            points, _ = record_points(records, collection)
            shared = sum(1 for record in records if record.id in points) - len(set(points.values()))
            if shared:
                typer.echo(
                    f"{shared} records have the image bytes of another record (one stored point for both): "
                    "each is scored as its own record"
                )
            report = evaluate_records_in_collection(
                task, opened, collection, points=points, allowed_points=allowed, ks=wanted, description=description
            )
        unreadable = {f.record_id for f in indexed.failures}
        report.failures = [
            EvalFailure(record_id=f.record_id, source=f.source, reason=f.reason) for f in indexed.failures
        ] + [f for f in report.failures if f.record_id not in unreadable]
    recall.finish(report)


def _described(embedder: Any) -> str:
    return f"{embedder.backbone.name}, {embedder.alignment.kind} alignment{random_note(embedder)}"


def parse_ks(text: str) -> tuple[int, ...]:
    """``--ks 1,3,5`` as ``(1, 3, 5)``; anything else is a usage error (exit code 2).

    >>> parse_ks("1, 5")
    (1, 5)
    """
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        fail(f"--ks must be positive integers separated by commas, got {text!r}", USAGE)
    return ks
