"""``percep-rag index|search|show``: images into a collection, and their nearest neighbours out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import (
    CollectionOption,
    EmbedderOptions,
    FilterOption,
    ProgressOption,
    StoreOption,
    store_spec,
    with_options,
)
from percep_rag.cli.output import echo_skipped, random_note

SPACES = ("base", "aligned")


@with_options(EmbedderOptions)
def index(
    source: Annotated[str, typer.Argument(help="A folder, a .csv/.jsonl manifest, or deepfashion2:<root>.")],
    collection: CollectionOption,
    store: StoreOption = None,
    dataset: Annotated[str | None, typer.Option(help="Value of the 'dataset' payload field.")] = None,
    split: Annotated[str, typer.Option(help="DeepFashion2 split (deepfashion2: sources only).")] = "validation",
    *,
    embedder_options: EmbedderOptions,
    progress: ProgressOption = True,
) -> None:
    """Embed images (base + aligned) into a collection; re-running adds only new images.

    Unreadable files are listed on stderr and skipped; the exit code stays 0.
    """
    from percep_rag.datasets.sources import load_source
    from percep_rag.indexing import index_records
    from percep_rag.store import open_store

    loaded = load_source(source, split=split)
    if not loaded.records:
        fail(f"no images found in {source}")
    embedder = embedder_options.build()
    spec = store_spec(store)
    with open_store(spec) as opened:
        report = index_records(
            loaded.records,
            embedder=embedder,
            store=opened,
            collection=collection,
            dataset=dataset or loaded.dataset,
            payload_indexes=loaded.payload_indexes,
            progress=progress,
        )
        total = opened.count(collection)
    typer.echo(f"{report}{random_note(embedder)}")
    typer.echo(f"collection {collection!r} in {spec} now holds {total} points")
    echo_skipped(report.failures)


@with_options(EmbedderOptions)
def search(
    query_image: Annotated[Path, typer.Argument(help="The query image file.")],
    collection: CollectionOption,
    store: StoreOption = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Neighbours per vector space.")] = 5,
    using: Annotated[str, typer.Option(help="'aligned', 'base' or 'both'.")] = "both",
    filter: FilterOption = None,
    grid: Annotated[Path | None, typer.Option(help="Also draw query | base top-k | aligned top-k to this PNG.")] = None,
    *,
    embedder_options: EmbedderOptions,
) -> None:
    """The nearest stored images to QUERY_IMAGE, as a table per vector space (the query itself is never returned)."""
    if using not in (*SPACES, "both"):
        fail(f"--using must be 'aligned', 'base' or 'both', got {using!r}", USAGE)
    shown = list(SPACES) if using == "both" else [using]
    embedder = embedder_options.build()
    [hits] = _neighbours(embedder, store, collection, [query_image], k, filter, SPACES if grid is not None else shown)
    for space in shown:
        typer.echo(f"{space} top-{k} for {query_image}{random_note(embedder)}")
        typer.echo(_hits_table(hits[space]) if hits[space] else "(no matches)")
        typer.echo("")
    if grid is not None:
        _draw_neighbour_grid([query_image], [hits], grid)


@with_options(EmbedderOptions)
def show(
    query_images: Annotated[list[Path], typer.Argument(help="One or more query image files (a row each).")],
    collection: CollectionOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")] = Path("neighbours.png"),
    store: StoreOption = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=12, help="Neighbours per vector space.")] = 3,
    filter: FilterOption = None,
    *,
    embedder_options: EmbedderOptions,
) -> None:
    """Draw query | base top-k | aligned top-k, a row per query image, to a PNG (the paper's Figures 4 and 7)."""
    missing = [str(path) for path in query_images if not path.is_file()]
    if missing:
        fail(f"query images not found: {', '.join(missing)}", USAGE)
    embedder = embedder_options.build()
    rows = _neighbours(embedder, store, collection, query_images, k, filter, SPACES)
    _draw_neighbour_grid(query_images, rows, out, title=f"{embedder.backbone.name}{random_note(embedder)}")


def _neighbours(
    embedder: Any,
    store: str | None,
    collection: str,
    queries: list[Path],
    k: int,
    filters: list[str] | None,
    spaces: tuple[str, ...] | list[str],
) -> list[dict[str, list]]:
    """Per query, the top-``k`` hits in each of ``spaces`` that pass the ``--filter`` texts."""
    from percep_rag.retrieval import Retriever
    from percep_rag.store import open_store
    from percep_rag.store.filters import collection_value_type, parse_filter_texts

    with open_store(store_spec(store)) as opened:
        value_type = collection_value_type(opened, collection)
        flt = parse_filter_texts(filters or [], value_type, name="--filter") or None
        retriever = Retriever(opened, collection, embedder)
        return [
            {space: retriever.search(str(query), k=k, using=space, filter=flt) for space in spaces} for query in queries
        ]


def _hits_table(hits: list) -> str:
    rows = [("rank", "score", "label", "uri")]
    for rank, hit in enumerate(hits, start=1):
        rows.append((str(rank), f"{hit.score:.4f}", str(hit.payload.get("label", "")), str(hit.payload.get("uri", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]) for row in rows)


def _draw_neighbour_grid(queries: list[Path], rows: list[dict[str, list]], out: Path, title: str | None = None) -> None:
    from percep_rag.viz import retrieval_grid

    # The grid needs rows of equal length; spaces and queries can differ when few points match.
    depth = min(len(hits) for row in rows for hits in row.values())
    if depth == 0:
        typer.secho("a query has no neighbours to draw: grid not written", err=True, fg=typer.colors.YELLOW)
        return

    def uris(found: list) -> list[str]:
        return [str(hit.payload.get("uri", "")) for hit in found[:depth]]

    def captions(found: list) -> list[str]:
        return [f"{hit.payload.get('label', '')}\ncos {hit.score:.3f}" for hit in found[:depth]]

    retrieval_grid(
        [str(query) for query in queries],
        [uris(row["base"]) for row in rows],
        [uris(row["aligned"]) for row in rows],
        out,
        query_captions=[query.name for query in queries],
        base_captions=[captions(row["base"]) for row in rows],
        aligned_captions=[captions(row["aligned"]) for row in rows],
        title=title,
    )
    typer.echo(f"grid written to {out}")
