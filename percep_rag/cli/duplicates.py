"""``percep-rag duplicates``: groups of exact and near copies in a collection, and the calibration
of what "near" means for it (``--calibrate pairs.csv``, stored in the collection's metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import CollectionOption, ProgressOption, SpaceName, StoreOption, with_options
from percep_rag.cli.output import check_figure_path
from percep_rag.cli.stored import (
    CollectionEmbedderOptions,
    collection_embedder,
    existing_collection,
    open_existing_store,
)
from percep_rag.duplicates import DEFAULT_NEIGHBOURS


@with_options(CollectionEmbedderOptions)
def duplicates(
    collection: CollectionOption,
    store: StoreOption = None,
    space: Annotated[SpaceName, typer.Option(help="Which vectors to compare: 'aligned' or 'base'.")] = "aligned",
    threshold: Annotated[
        float | None,
        typer.Option(
            min=-1.0,
            max=1.0,
            help="Cosine similarity at or above which two images are near copies, for this run (default: the "
            "threshold --calibrate stored for the space; without one, only exact copies are looked for).",
        ),
    ] = None,
    neighbours: Annotated[
        int, typer.Option(min=1, max=1000, help="Nearest neighbours asked for per point when looking for near copies.")
    ] = DEFAULT_NEIGHBOURS,
    calibrate: Annotated[
        Path | None,
        typer.Option(
            help="A .csv/.jsonl of labelled pairs (columns image_a, image_b: image files or stored uris; same: 1/0): "
            "choose the near-copy threshold of --space from their cosines and store it in the collection's metadata "
            "(search, show, the service and LangChain then mark near copies; `info` shows it).",
        ),
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Also draw the groups here, a row each (.png, .jpg, .pdf, .svg).")
    ] = None,
    max_groups: Annotated[int, typer.Option(min=1, max=10_000, help="Groups shown in the table and figure.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print every group as JSON instead of a table.")] = False,
    progress: ProgressOption = True,
    *,
    embedder_options: CollectionEmbedderOptions,
) -> None:
    """Groups of copies: exact (the same pixels, or one file's byte-identical copies) and near
    (cosine >= a threshold given with --threshold or calibrated with --calibrate; none otherwise).

    Every member of a near group is within the threshold of the group's first image (no chaining).
    Pairs for --calibrate not stored in the collection are embedded with its embedder (the options
    default to the collection's). README: "Copies".
    """
    from percep_rag.duplicates import find_duplicates
    from percep_rag.errors import ConfigError

    if figure is not None:
        check_figure_path(figure, "--figure")
    with open_existing_store(store) as opened:
        info = existing_collection(opened, collection)
        if calibrate is not None:
            _calibrated(opened, info, calibrate, space, embedder_options, quiet=json_out)
        try:
            report = find_duplicates(
                opened,
                collection,
                using=space,
                threshold=threshold,
                threshold_source="--threshold",
                neighbours=neighbours,
                progress=progress,
            )
        except ConfigError as error:
            fail(str(error), USAGE)
    if json_out:
        typer.echo(json.dumps(_as_json(report), indent=1))
    else:
        _print_table(report, max_groups)
    if figure is not None and report.groups:
        _draw(report, figure, max_groups, quiet=json_out)


def _calibrated(
    store: Any, info: Any, path: Path, space: str, options: CollectionEmbedderOptions, *, quiet: bool
) -> None:
    """``--calibrate``: choose the threshold from the labelled pairs, print them, store it."""
    from percep_rag.copy_threshold import calibrate_pairs, read_pairs, set_copy_threshold
    from percep_rag.errors import CalibrationError, ConfigError
    from percep_rag.io.tables import read_table

    if not path.is_file():
        fail(f"--calibrate: no file {path}", USAGE)
    built: list[Any] = []

    def embed(images: list[str]) -> Any:
        if not built:
            built.append(collection_embedder(options, info))
        both = built[0].embed_both(images)
        return both.aligned if space == "aligned" else both.base

    try:
        pairs = read_pairs(read_table(path), f"--calibrate {path}")
        chosen, scores = calibrate_pairs(store, info.name, pairs, using=space, embed=embed, source=path.name)
    except CalibrationError as error:
        fail(f"--calibrate {path}: {error}")
    except (ConfigError, UnicodeDecodeError) as error:
        fail(f"--calibrate {path}: {error}" if isinstance(error, UnicodeDecodeError) else str(error), USAGE)
    set_copy_threshold(store, info.name, space, chosen)
    if not quiet:
        for pair, score in zip(pairs, scores, strict=True):
            typer.echo(f"{'same' if pair.same else 'different':9}  {score:.4f}  {pair.a}  {pair.b}")
        typer.echo(f"stored {space} near-copy threshold: {chosen.describe()}\n")


def _as_json(report: Any) -> dict[str, Any]:
    return {
        "collection": report.collection,
        "space": report.using,
        "threshold": report.threshold,
        "threshold_source": report.threshold_source,
        "rule": report.rule(),
        "points": report.points,
        "files": report.files,
        "duplicate_points": report.duplicate_points,
        "duplicate_files": report.duplicate_files,
        "pixel_hashes_computed": report.hashes_computed,
        "pixel_hashes_missing": report.hashes_missing,
        "groups": [
            {
                "kind": g.kind,
                "files": g.files,
                "min_score": g.min_score,
                "max_score": g.max_score,
                "exact_sets": g.exact_sets,
                "members": [
                    {"id": m.id, "uri": m.uri, "label": m.label, "files": m.files, "score": m.score} for m in g.members
                ],
            }
            for g in report.groups
        ],
    }


def _print_table(report: Any, max_groups: int) -> None:
    exact = sum(g.kind == "exact" for g in report.groups)
    typer.echo(
        f"{report.collection}: {len(report.groups)} groups ({exact} exact, {len(report.groups) - exact} near) "
        f"holding {report.duplicate_files} duplicate files among {report.files} files in {report.points} points"
    )
    typer.echo(report.rule())
    if report.hashes_computed or report.hashes_missing:
        typer.echo(
            f"pixel hashes: {report.hashes_computed} computed from files (not stored yet: `index`/`sync` stores them), "
            f"{report.hashes_missing} unknown (file gone or changed: never an exact copy)"
        )
    for number, group in enumerate(report.groups[:max_groups], start=1):
        spread = "" if group.min_score is None else f", cosine to the first {group.min_score:.4f}-{group.max_score:.4f}"
        typer.echo(f"\ngroup {number}: {group.kind}, {group.files} files in {len(group.members)} points{spread}")
        same = {pid: n for n, ids in enumerate(group.exact_sets, start=1) for pid in ids}
        for member in group.members:
            mark = f"pixels={same[member.id]}" if member.id in same else "        "
            score = "first " if member.score is None else f"{member.score:.4f}"
            for n, uri in enumerate(member.files):
                shown = score if group.kind == "near" and n == 0 else "      "
                typer.echo(f"  {mark}  {shown}  {member.label or '':<12}  {uri}")
    if len(report.groups) > max_groups:
        typer.echo(f"\n... {len(report.groups) - max_groups} more groups (--max-groups, or --json for all)")


def _draw(report: Any, figure: Path, max_groups: int, *, quiet: bool) -> None:
    from percep_rag.viz import image_rows

    shown = report.groups[:max_groups]

    def title(number: int, group: Any) -> str:
        if group.min_score is None:
            return f"{number}: exact, {group.files} files"
        return f"{number}: near, cos {group.min_score:.3f}-{group.max_score:.3f}"

    image_rows(
        [[uri for m in g.members for uri in m.files] for g in shown],
        figure,
        captions=[[Path(uri).name for m in g.members for uri in m.files] for g in shown],
        row_titles=[title(n, g) for n, g in enumerate(shown, 1)],
        title=f"{report.collection}: copies ({report.rule()})",
    )
    typer.echo(f"figure written to {figure}", err=quiet)
