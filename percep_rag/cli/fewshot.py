"""``percep-rag classify`` and ``percep-rag eval fewshot``: a VLM prompted with retrieved examples."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import (
    CollectionOption,
    EmbedderOptions,
    FilterOption,
    ProgressBarsOption,
    StoreOption,
    UsingOption,
    VlmOption,
    VlmOptions,
    store_spec,
    with_options,
)
from percep_rag.cli.stored import (
    CollectionEmbedderOptions,
    checked_filter,
    collection_embedder,
    existing_collection,
    open_existing_store,
)
from percep_rag.config import DEFAULT_FEWSHOT_METHODS, FEWSHOT_METHODS, ZeroShotStyle

DiversityOption = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="Trade similarity for variety in the examples (MMR; 0 = nearest)."),
]


@dataclass(frozen=True)
class ChosenVlmOptions(VlmOptions):
    """VLM options where ``--vlm`` must be given: a forgotten flag must not answer with a random model."""

    vlm: VlmOption = None  # type: ignore[assignment]


ZeroShotStyleOption = Annotated[
    ZeroShotStyle,
    typer.Option(
        help="With --shots 0: 'plain' (the query alone) or 'openflamingo' (its eval: 2 text-only demonstrations)."
    ),
]


def _method_list(methods: tuple[str, ...]) -> str:
    return ",".join(methods)


@with_options(ChosenVlmOptions)
@with_options(CollectionEmbedderOptions, without=("batch_size",))
def classify(
    query: Annotated[list[Path], typer.Argument(help="Query image(s).")],
    collection: CollectionOption,
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated class names (default: the pool's labels).")
    ] = None,
    store: StoreOption = None,
    shots: Annotated[int, typer.Option(min=0, help="Retrieved examples per query (0: zero-shot).")] = 3,
    using: UsingOption = "aligned",
    diversity: DiversityOption = 0.0,
    filter: FilterOption = None,
    zero_shot_style: ZeroShotStyleOption = "plain",
    *,
    vlm_options: ChosenVlmOptions,
    embedder_options: CollectionEmbedderOptions,
) -> None:
    """Classify query images with a VLM prompted by retrieved examples (most similar last).

    Examples come from the collection's labelled points (a label or a prompt); unlabelled
    images in the same collection are never shown.

    --shots 0 --zero-shot-style openflamingo prompts as open_flamingo's 0-shot evaluation: the
    two retrieved examples' text without their images, then the query image.

    ``--vlm`` is required. The embedder options default to the ones the collection was written with.
    """
    from percep_rag.fewshot.prompt import demonstrations_needed, prompt_examples
    from percep_rag.retrieval import ExampleRetriever

    if vlm_options.vlm is None:
        fail(
            "classify needs --vlm: smolvlm:<dir or hub id>, a released OpenFlamingo, or tiny-smolvlm-random / "
            "tiny-flamingo-random for a test run",
            USAGE,
        )
    missing = [str(path) for path in query if not path.is_file()]
    if missing:
        fail(f"query images not found: {', '.join(missing)}", USAGE)
    with open_existing_store(store) as opened:
        info = existing_collection(opened, collection)
        flt = checked_filter(opened, collection, filter)
        embedder = collection_embedder(embedder_options, info)
        classifier = vlm_options.load(str(embedder.device), embedder_options.precision)
        retriever = ExampleRetriever(opened, collection, embedder)
        if classes:
            names = [name.strip() for name in classes.split(",") if name.strip()]
        else:
            labelled = opened.iterate(collection, flt)
            names = sorted({p.payload["label"] for p in labelled if p.payload.get("label")})
        if not names:
            fail(f"no class names: pass --classes or index labelled images into {collection!r}")
        demos = demonstrations_needed(shots, zero_shot_style)
        found = (
            retriever.examples_batch(
                [str(q) for q in query], k=demos, using=using, diversity=diversity, filter=flt, labelled_only=True
            )
            if demos
            else [[] for _ in query]
        )
    for image, examples in zip(query, found, strict=True):
        pairs = [(example.uri, example.label or example.text) for example in examples]
        prediction = classifier.predict(prompt_examples(pairs, shots), str(image), names)
        typer.echo(f"{image}: {prediction}   (examples: {', '.join(label for _, label in pairs)})")
    if embedder.backbone.random_weights or getattr(classifier, "random_weights", False):
        typer.echo("note: random weights were used; predictions are meaningless outside tests")


@with_options(VlmOptions)
@with_options(EmbedderOptions)
def eval_fewshot(
    task: Annotated[Path, typer.Argument(help="root/<split>/<class>/<image> folder, or a manifest with label+split.")],
    shots: Annotated[
        int,
        typer.Option(
            min=0, max=10_000, help="Retrieved (or random) examples per query (0: zero-shot, see --zero-shot-style)."
        ),
    ] = 3,
    zero_shot_style: ZeroShotStyleOption = "plain",
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..n-1).")] = 5,
    queries: Annotated[
        int | None,
        typer.Option(min=1, help="Distinct queries per seed (default: a bootstrap sample as large as the test split)."),
    ] = None,
    methods: Annotated[
        str, typer.Option(help=f"Comma-separated subset of {_method_list(FEWSHOT_METHODS)}.")
    ] = _method_list(DEFAULT_FEWSHOT_METHODS),
    diversity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Diversity of the mmr-* methods' examples (MMR; 0 = nearest).")
    ] = 0.5,
    store: Annotated[str, typer.Option(help="Store for the example pool (default: in memory).")] = ":memory:",
    collection: Annotated[
        str,
        typer.Option(
            help="Prefix of the example pool's collection: the pool goes into <prefix>-<digest of its images, "
            "labels and embedder>, so tasks sharing a --store never mix and a rerun reuses it."
        ),
    ] = "fewshot-pool",
    *,
    vlm_options: VlmOptions,
    embedder_options: EmbedderOptions,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the per-seed accuracies here.")] = None,
    progress: ProgressBarsOption = True,
) -> None:
    """Retrieval-augmented few-shot accuracy for each method: the mean over seeds, with a 95% interval over queries."""
    from percep_rag.datasets.vtab import read_task
    from percep_rag.errors import ConfigError
    from percep_rag.fewshot.evaluate import (
        VLM_METHODS,
        PoolTooSmallError,
        check_pool_size,
        checked_methods,
        evaluate_fewshot,
        example_pool,
    )
    from percep_rag.fewshot.prompt import demonstrations_needed
    from percep_rag.store import open_store

    try:
        chosen = checked_methods([m.strip() for m in methods.split(",") if m.strip()])
    except ConfigError as error:
        fail(f"--methods: {error}", USAGE)
    classification = read_task(task)
    embedder = embedder_options.build()
    demos = demonstrations_needed(shots, zero_shot_style)
    try:  # before the VLM loads: a pool too small for --shots is a usage error
        check_pool_size(example_pool(classification, collection, embedder), shots, demos)
    except PoolTooSmallError as error:
        fail(f"{error}: lower --shots", USAGE)
    classifier = None
    if VLM_METHODS & set(chosen):
        classifier = vlm_options.load(embedder_options.device, embedder_options.precision)
    try:
        with open_store(store_spec(store)) as opened:
            report = evaluate_fewshot(
                classification, embedder=embedder, store=opened, collection=collection, classifier=classifier,
                shots=shots, seeds=range(seeds), queries=queries, methods=chosen, diversity=diversity,
                progress=progress, zero_shot_style=zero_shot_style,
            )  # fmt: skip
    except PoolTooSmallError as error:  # a query whose copies in the pool leave too few examples
        fail(f"{error}: lower --shots", USAGE)
    if getattr(classifier, "random_weights", False):
        report.random_weights = True
    typer.echo(report.table())
    if json_out is not None:
        json_out.write_text(json.dumps({"task": report.task, "shots": shots, "accuracy": report.accuracy}, indent=1))
