"""``percep-rag classify`` and ``percep-rag eval fewshot``: a VLM prompted with retrieved examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from percep_rag.cli.errors import fail
from percep_rag.cli.options import (
    CollectionOption,
    EmbedderOptions,
    ProgressBarsOption,
    StoreOption,
    VlmOptions,
    store_spec,
    with_options,
)
from percep_rag.config import DEFAULT_FEWSHOT_METHODS, FEWSHOT_METHODS

DiversityOption = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="Trade similarity for variety in the examples (MMR; 0 = nearest)."),
]


ZeroShotStyleOption = Annotated[
    str,
    typer.Option(
        help="With --shots 0: 'plain' (the query alone) or 'openflamingo' (its eval: 2 text-only demonstrations)."
    ),
]


def _method_list(methods: tuple[str, ...]) -> str:
    return ",".join(methods)


@with_options(VlmOptions)
@with_options(EmbedderOptions, without=("batch_size",))
def classify(
    query: Annotated[list[Path], typer.Argument(help="Query image(s).")],
    collection: CollectionOption,
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated class names (default: the pool's labels).")
    ] = None,
    store: StoreOption = None,
    shots: Annotated[int, typer.Option(min=0, help="Retrieved examples per query (0: zero-shot).")] = 3,
    using: Annotated[str, typer.Option(help="'aligned' or 'base' vectors for retrieval.")] = "aligned",
    diversity: DiversityOption = 0.0,
    zero_shot_style: ZeroShotStyleOption = "plain",
    *,
    vlm_options: VlmOptions,
    embedder_options: EmbedderOptions,
) -> None:
    """Classify query images with a VLM prompted by retrieved examples (most similar last).

    --shots 0 --zero-shot-style openflamingo prompts as open_flamingo's 0-shot evaluation: the
    two retrieved examples' text without their images, then the query image.
    """
    from percep_rag.fewshot.prompt import demonstrations_needed, prompt_examples
    from percep_rag.retrieval import ExampleRetriever
    from percep_rag.store import open_store

    embedder = embedder_options.build()
    classifier = vlm_options.load(embedder_options.device)
    with open_store(store_spec(store)) as opened:
        retriever = ExampleRetriever(opened, collection, embedder)
        if classes:
            names = [name.strip() for name in classes.split(",") if name.strip()]
        else:
            names = sorted({p.payload["label"] for p in opened.iterate(collection) if p.payload.get("label")})
        if not names:
            fail(f"no class names: pass --classes or index labelled images into {collection!r}")
        demos = demonstrations_needed(shots, zero_shot_style)
        found = (
            retriever.examples_batch([str(q) for q in query], k=demos, using=using, diversity=diversity)
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
    shots: Annotated[int, typer.Option(min=0, help="Examples per query (0: zero-shot, see --zero-shot-style).")] = 3,
    zero_shot_style: ZeroShotStyleOption = "plain",
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..n-1).")] = 5,
    queries: Annotated[int | None, typer.Option(min=1, help="Queries per seed (default: all).")] = None,
    methods: Annotated[
        str, typer.Option(help=f"Comma-separated subset of {_method_list(FEWSHOT_METHODS)}.")
    ] = _method_list(DEFAULT_FEWSHOT_METHODS),
    diversity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Diversity of the mmr-* methods' examples (MMR; 0 = nearest).")
    ] = 0.5,
    store: Annotated[str, typer.Option(help="Store for the example pool (default: in memory).")] = ":memory:",
    collection: Annotated[str, typer.Option(help="Collection of the example pool.")] = "fewshot-pool",
    *,
    vlm_options: VlmOptions,
    embedder_options: EmbedderOptions,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the per-seed accuracies here.")] = None,
    progress: ProgressBarsOption = True,
) -> None:
    """Retrieval-augmented few-shot accuracy (mean ± 95% CI over seeds) for each method."""
    from percep_rag.datasets.vtab import read_task
    from percep_rag.fewshot.evaluate import VLM_METHODS, evaluate_fewshot
    from percep_rag.store import StoreSpec, open_store

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    classification = read_task(task)
    embedder = embedder_options.build()
    classifier = None
    if VLM_METHODS & set(chosen):
        classifier = vlm_options.load(embedder_options.device)
    with open_store(StoreSpec.parse(store)) as opened:
        report = evaluate_fewshot(
            classification, embedder=embedder, store=opened, collection=collection, classifier=classifier,
            shots=shots, seeds=range(seeds), queries=queries, methods=chosen, diversity=diversity,
            progress=progress, zero_shot_style=zero_shot_style,
        )  # fmt: skip
    if getattr(classifier, "random_weights", False):
        report.random_weights = True
    typer.echo(report.table())
    if json_out is not None:
        json_out.write_text(json.dumps({"task": report.task, "shots": shots, "accuracy": report.accuracy}, indent=1))
