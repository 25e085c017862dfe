"""``percep-rag index|search|show``: images into a collection, and their nearest neighbours out of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from percep_rag.cli.engine import ClusterOptions, EngineOptions
from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.forward import no_lock_errors, served_owner
from percep_rag.cli.hits import DuplicateThresholdOption, copy_rule_text, hit_caption, hits_json, hits_table
from percep_rag.cli.options import (
    CollectionOption,
    FilterOption,
    ProgressOption,
    SpaceChoice,
    StoreOption,
    store_spec,
    with_options,
)
from percep_rag.cli.output import check_figure_path, echo_skipped, figure_title, random_note
from percep_rag.cli.stored import (
    CollectionEmbedderOptions,
    checked_filter,
    collection_embedder,
    default_options,
    existing_collection,
    open_existing_store,
    options_for_collection,
)

SPACES = ("base", "aligned")

@with_options(ClusterOptions)
@with_options(EngineOptions)
@with_options(CollectionEmbedderOptions)
def index(
    source: Annotated[str, typer.Argument(help="A folder, a .csv/.jsonl manifest, or deepfashion2:<root>.")],
    collection: CollectionOption,
    store: StoreOption = None,
    dataset: Annotated[str | None, typer.Option(help="Value of the 'dataset' payload field.")] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Only this split: a folder's root/<split>/<label>/..., a manifest's split column, "
            "a DeepFashion2 split (default there: validation)."
        ),
    ] = None,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync",
            help="After indexing, remove the points whose image is no longer in SOURCE (withdrawn, or replaced "
            "at the same path) and relink renamed ones; prints added/kept/replaced/removed. Safe to rerun "
            "after a crash.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --sync: only print what it would add, replace and remove.")
    ] = False,
    checksum: Annotated[
        bool,
        typer.Option(
            "--checksum",
            help="With --sync: read and hash every file. By default a file whose size, mtime, inode and device "
            "are the ones recorded when it was indexed is taken as unchanged without being read (as rsync).",
        ),
    ] = False,
    *,
    embedder_options: CollectionEmbedderOptions,
    engine_options: EngineOptions,
    cluster_options: ClusterOptions,
    progress: ProgressOption = True,
) -> None:
    """Embed images (base + aligned) into a collection; re-running adds only new images.

    Unreadable files are listed on stderr and skipped; the exit code stays 0 unless no file could be
    read at all (then 1). Adding to an existing
    collection, the embedder options default to the collection's. --engine ray embeds on Ray Data
    (docs/scale-out.md). --sync also removes what SOURCE no longer holds (README: a changing catalog).
    """
    from percep_rag.datasets.sources import load_source
    from percep_rag.indexing import index_records
    from percep_rag.store import open_store

    if dry_run and not sync:
        fail("--dry-run goes with --sync", USAGE)
    if checksum and not sync:
        fail("--checksum goes with --sync", USAGE)
    loaded = load_source(source, split=split)
    if not loaded.records:
        fail(f"no images found in {source}")
    spec = store_spec(store)
    owner = served_owner(spec, collection)
    if owner is not None:
        _through_service(
            owner, source, spec, collection, sync=sync, dry_run=dry_run, split=split, dataset=dataset, checksum=checksum
        )
        return
    with no_lock_errors(spec, collection):
        if sync:
            options = (embedder_options, engine_options, cluster_options)
            _sync(loaded, spec, collection, dataset, dry_run, *options, progress, checksum=checksum)
            return
        # One store for the whole command, both engines: a :memory: store opened again would be empty.
        with open_store(spec) as opened:
            chosen = _chosen_embedder(opened, collection, embedder_options, cluster_options)
            if engine_options.on_ray:
                from percep_rag.distributed import index_with_ray

                report = index_with_ray(
                    loaded.records,
                    spec=chosen.spec(),
                    store=_ray_target(spec, opened),
                    collection=collection,
                    dataset=dataset or loaded.dataset,
                    payload_indexes=loaded.payload_indexes,
                    options=engine_options.ray_options(),
                    progress=progress,
                    collection_options=cluster_options.collection_options(),
                )
                random_weights = report.fingerprint is not None and report.fingerprint.random_weights
            else:
                embedder = chosen.build()
                report = index_records(
                    loaded.records,
                    embedder=embedder,
                    store=opened,
                    collection=collection,
                    dataset=dataset or loaded.dataset,
                    payload_indexes=loaded.payload_indexes,
                    progress=progress,
                    collection_options=cluster_options.collection_options(),
                )
                random_weights = embedder.backbone.random_weights
            total = opened.count(collection)
        typer.echo(f"{report}{random_note(random_weights)}")
        typer.echo(f"collection {collection!r} in {spec} now holds {total} points")
        echo_skipped(report.failures, inputs=report.records)


def _through_service(
    owner: Any, source: str, spec: Any, collection: str, *, sync: bool, dry_run: bool, split: str | None,
    dataset: str | None, checksum: bool = False,
) -> None:
    """``index`` (``--sync``) of a collection a running service holds: that service syncs its own
    source folder, or the command says in one line how to write through it."""
    from percep_rag.cli.forward import collection_path, post

    served = owner.sources.get(collection)
    where = f"collection {collection!r} in {spec.path} is served by {owner.describe()}"
    add_url = f"{owner.url}{collection_path(collection, 'points')}"
    if served is None:
        fail(
            f"{where}, started without --source for it: restart it with --source {collection}={Path(source).resolve()} "
            f"to sync through it, or POST the images to {add_url}"
        )
    if Path(source).expanduser().resolve() != Path(served).resolve():
        fail(f"{where}, which syncs it from {served} only: put the images there and run this on that folder, "
             f"or POST them to {add_url}")  # fmt: skip
    if split is not None or dataset is not None:
        fail(f"{where}: --split and --dataset cannot go through it (it syncs all of {served} as it was started)")
    fields = [("dry_run", str(dry_run).lower()), ("remove", str(sync).lower())]
    if checksum:
        fields.append(("checksum", "true"))
    answer = post(owner, collection_path(collection, "sync"), fields)
    if answer.get("index") and sync:
        typer.echo(answer["index"])
    typer.echo(answer.get("report") or answer.get("index") or "")
    verb = "holds" if dry_run else "now holds"
    typer.echo(f"collection {collection!r} in {spec.path} {verb} {answer['count']} points (through {owner.describe()})")
    for failure in answer.get("failed", []):
        typer.secho(f"skipped {failure['source']}: {failure['reason']}", err=True, fg=typer.colors.YELLOW)


def _ray_target(spec: Any, opened: Any) -> Any:
    """What Ray indexing writes to: a server by its spec (writer actors connect to it in
    parallel), any other store as the one this command holds open (the driver writes it)."""
    return spec if spec.kind == "url" else opened


def _chosen_embedder(
    opened: Any, collection: str, embedder_options: CollectionEmbedderOptions, cluster_options: ClusterOptions
) -> Any:
    """The embedder options to write ``collection`` with: its own when it exists (and a note when
    ``--memory`` cannot change its layout), else the defaults."""
    if opened.has_collection(collection):
        info = opened.collection_info(collection)
        _note_kept_layout(info, cluster_options)
        return options_for_collection(embedder_options, info)
    return default_options(embedder_options)


def _note_kept_layout(info: Any, cluster_options: ClusterOptions) -> None:
    """``--memory`` only lays out a new collection: say so when an existing one keeps another layout."""
    from percep_rag.store.layouts import layout_of

    current = layout_of(info.options)
    if cluster_options.memory is not None and current != cluster_options.memory:
        typer.secho(
            f"warning: collection {info.name!r} exists with the {current or 'custom'!s} memory layout; "
            f"--memory {cluster_options.memory} applies to new collections only",
            err=True,
            fg=typer.colors.YELLOW,
        )


def _sync(
    loaded: Any,
    spec: Any,
    collection: str,
    dataset: str | None,
    dry_run: bool,
    embedder_options: CollectionEmbedderOptions,
    engine_options: EngineOptions,
    cluster_options: ClusterOptions,
    progress: bool,
    *,
    checksum: bool = False,
) -> None:
    """``index --sync``: the library's sync on the chosen engine, then its report."""
    from percep_rag.store import open_store
    from percep_rag.sync import sync_records
    from percep_rag.uploads import default_uploads, uploaded_records

    records = list(loaded.records)
    if spec.kind == "edge" and spec.path is not None:
        # Images a service was given through its API are part of the catalog too: kept.
        records += [record for record, _ in uploaded_records(default_uploads(spec.path, collection))]

    common = {
        "collection": collection,
        "dataset": dataset or loaded.dataset,
        "payload_indexes": loaded.payload_indexes,
        "dry_run": dry_run,
        "checksum": checksum,
        "progress": progress,
        "collection_options": cluster_options.collection_options(),
    }
    with open_store(spec) as opened:  # held throughout, as in index: never a second :memory: store
        chosen = _chosen_embedder(opened, collection, embedder_options, cluster_options)
        if engine_options.on_ray:
            from percep_rag.distributed import sync_with_ray

            report = sync_with_ray(
                records,
                spec=chosen.spec(),
                store=_ray_target(spec, opened),
                options=engine_options.ray_options(),
                **common,
            )
        else:
            report = sync_records(records, embedder=chosen.build(), store=opened, **common)
        total = opened.count(collection) if opened.has_collection(collection) else 0
    if report.index is not None:
        typer.echo(str(report.index))
    typer.echo(str(report))
    typer.echo(f"collection {collection!r} in {spec} {'holds' if dry_run else 'now holds'} {total} points")
    echo_skipped(report.failures)


@with_options(CollectionEmbedderOptions)
def search(
    query_image: Annotated[
        Path | None, typer.Argument(help="The query image file (or give --text instead).", show_default=False)
    ] = None,
    collection: CollectionOption = ...,  # type: ignore[assignment]
    store: StoreOption = None,
    text: Annotated[
        list[str] | None,
        typer.Option(
            "--text",
            help="A text query instead of an image (CLIP-family collections; repeat for several). "
            "Searches the base vectors unless --using says otherwise.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=10_000, help="Neighbours per vector space.")] = 5,
    using: Annotated[
        SpaceChoice | None,
        typer.Option(help="Which vectors to search: 'aligned', 'base' or 'both' (default: both; base for --text)."),
    ] = None,
    filter: FilterOption = None,
    grid: Annotated[
        Path | None, typer.Option(help="Also draw query | base top-k | aligned top-k here (.png, .jpg, .pdf, .svg).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the hits as JSON instead of tables.")] = False,
    duplicate_threshold: DuplicateThresholdOption = None,
    *,
    embedder_options: CollectionEmbedderOptions,
) -> None:
    """The nearest stored images to QUERY_IMAGE (or to each --text), as a table per vector space.

    The query's own point is never returned; its other copies are, marked in the copy column:
    "copy" for the same pixels, "near" for a cosine at or above the threshold calibrated for
    the collection (`duplicates --calibrate`) or given with --duplicate-threshold (neither: no
    near copies). "files" counts the byte-identical files a hit stands for. A text query needs
    a collection of a CLIP-family backbone with cls pooling and searches its base vectors by
    default (see README "Search by text"). The embedder options default to the collection's.
    """
    if (query_image is None) == (not text):
        fail("give a query image or --text (one kind of query)", USAGE)
    if text:
        if grid is not None:
            fail("--grid draws image queries; it does not take --text", USAGE)
        if duplicate_threshold is not None:
            fail("--duplicate-threshold marks copies of a query image; a text has none", USAGE)
        _search_texts(text, collection, store, k, using or "base", filter, json_out, embedder_options)
        return
    assert query_image is not None
    if not query_image.is_file():
        fail(f"query image not found: {query_image}", USAGE)
    if grid is not None:
        check_figure_path(grid, "--grid")
    using = using or "both"
    shown = list(SPACES) if using == "both" else [using]
    embedder, [hits], rules = _neighbours(
        embedder_options, store, collection, [query_image], k, filter, SPACES if grid is not None else shown,
        duplicate_threshold,
    )  # fmt: skip
    if json_out:
        found = hits_json(query_image, embedder, {space: hits[space] for space in shown})
        from percep_rag.copy_threshold import copy_rule_json

        found["copies"] = {space: copy_rule_json(rules[space]) for space in shown}
        typer.echo(json.dumps(found, indent=1))
    else:
        for space in shown:
            typer.echo(f"{space} top-{k} for {query_image}{random_note(embedder)}")
            typer.echo(f"copies: {copy_rule_text(space, rules[space])}")
            typer.echo(hits_table(hits[space]) if hits[space] else "(no matches)")
            typer.echo("")
    if grid is not None:
        _draw_neighbour_grid([query_image], [hits], grid, title=figure_title(embedder), quiet=json_out)


def _search_texts(
    texts: list[str],
    collection: str,
    store: str | None,
    k: int,
    using: str,
    filters: list[str] | None,
    json_out: bool,
    options: CollectionEmbedderOptions,
) -> None:
    """``search --text``: a table (or JSON object) per text and vector space; bad text or a collection
    where text has no meaning is a usage error (exit 2), checked before the embedder is built."""
    from percep_rag.backbones.text import check_texts
    from percep_rag.errors import TextQueryError
    from percep_rag.retrieval import Retriever
    from percep_rag.text_space import check_text_space

    shown = list(SPACES) if using == "both" else [using]
    with open_existing_store(store) as opened:
        info = existing_collection(opened, collection)
        try:
            check_texts(texts)
            for space in shown:
                check_text_space(info.fingerprint, space, collection)
        except TextQueryError as error:
            fail(str(error), USAGE)
        flt = checked_filter(opened, collection, filters)
        embedder = collection_embedder(options, info)
        retriever = Retriever(opened, collection, embedder)
        try:
            found = {space: retriever.search_texts(texts, k=k, using=space, filter=flt) for space in shown}
        except TextQueryError as error:  # e.g. longer than the text tower's context
            fail(str(error), USAGE)
    if json_out:
        rows = [
            hits_json(text, embedder, {space: found[space][row] for space in shown}, text=True)
            for row, text in enumerate(texts)
        ]
        typer.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=1))
        return
    for row, text in enumerate(texts):
        for space in shown:
            typer.echo(f"{space} top-{k} for text {text!r}{random_note(embedder)}")
            typer.echo(hits_table(found[space][row]) if found[space][row] else "(no matches)")
            typer.echo("")


@with_options(CollectionEmbedderOptions)
def show(
    query_images: Annotated[list[Path], typer.Argument(help="One or more query image files (a row each).")],
    collection: CollectionOption,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The figure to write; its extension picks png, jpg, pdf or svg.")
    ] = Path("neighbours.png"),
    store: StoreOption = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=12, help="Neighbours per vector space.")] = 3,
    filter: FilterOption = None,
    duplicate_threshold: DuplicateThresholdOption = None,
    *,
    embedder_options: CollectionEmbedderOptions,
) -> None:
    """Draw query | base top-k | aligned top-k, a row per query image (the paper's Figures 4 and 7).

    A hit with the query's pixels is captioned "(copy)", one at or above the calibrated (or
    --duplicate-threshold) cosine "(near copy)", and one standing for several byte-identical
    files "N files". The embedder options default to the ones the collection was written with.
    """
    missing = [str(path) for path in query_images if not path.is_file()]
    if missing:
        fail(f"query images not found: {', '.join(missing)}", USAGE)
    check_figure_path(out, "--out")
    embedder, rows, _ = _neighbours(
        embedder_options, store, collection, query_images, k, filter, SPACES, duplicate_threshold
    )
    _draw_neighbour_grid(query_images, rows, out, title=figure_title(embedder))


def _neighbours(
    options: CollectionEmbedderOptions,
    store: str | None,
    collection: str,
    queries: list[Path],
    k: int,
    filters: list[str] | None,
    spaces: tuple[str, ...] | list[str],
    duplicate_threshold: float | None = None,
) -> tuple[Any, list[dict[str, list]], dict[str, Any]]:
    """The collection's embedder, per query the top-``k`` hits in each of ``spaces`` that pass
    ``--filter`` (copies marked), and per space the near-copy rule used (``None``: no near copies)."""
    from percep_rag.retrieval import Retriever

    with open_existing_store(store) as opened:
        info = existing_collection(opened, collection)
        flt = checked_filter(opened, collection, filters)
        embedder = collection_embedder(options, info)
        retriever = Retriever(opened, collection, embedder)
        rules = {space: retriever.copy_rule(space, duplicate_threshold) for space in spaces}
        def found(query: Path, space: str) -> list:
            return retriever.search(str(query), k=k, using=space, filter=flt, duplicate_threshold=duplicate_threshold)

        rows = [{space: found(query, space) for space in spaces} for query in queries]
        return embedder, rows, rules


def _draw_neighbour_grid(
    queries: list[Path], rows: list[dict[str, list]], out: Path, title: str, *, quiet: bool = False
) -> None:
    from percep_rag.viz import retrieval_grid

    # The grid needs rows of equal length; spaces and queries can differ when few points match.
    depth = min(len(hits) for row in rows for hits in row.values())
    if depth == 0:
        typer.secho("a query has no neighbours to draw: grid not written", err=True, fg=typer.colors.YELLOW)
        return

    def uris(found: list) -> list[str]:
        return [str(hit.payload.get("uri", "")) for hit in found[:depth]]

    def captions(found: list) -> list[str]:
        return [hit_caption(rank, hit) for rank, hit in enumerate(found[:depth], 1)]

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
    if not quiet:
        typer.echo(f"grid written to {out}")
    else:
        typer.echo(f"grid written to {out}", err=True)
