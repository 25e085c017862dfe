"""``percep-rag duplicates``: groups of exact and near-duplicate images in a collection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import CollectionOption, ProgressOption, SpaceName, StoreOption
from percep_rag.cli.output import check_figure_path
from percep_rag.cli.stored import existing_collection, open_existing_store
from percep_rag.duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD


def duplicates(
    collection: CollectionOption,
    store: StoreOption = None,
    space: Annotated[SpaceName, typer.Option(help="Which vectors to compare: 'aligned' or 'base'.")] = "aligned",
    threshold: Annotated[
        float | None,
        typer.Option(
            min=-1.0,
            max=1.0,
            help=f"Cosine similarity at or above which two images are near-duplicates (default {DEFAULT_THRESHOLD}, "
            "or the one --calibrate chooses).",
        ),
    ] = None,
    neighbours: Annotated[
        int, typer.Option(min=1, max=1000, help="Nearest neighbours asked for per point (groups join transitively).")
    ] = DEFAULT_NEIGHBOURS,
    calibrate: Annotated[
        Path | None,
        typer.Option(
            help="A .csv/.jsonl of labelled pairs (columns a, b: stored uris; same: 1/0 or yes/no): print each pair's "
            "similarity and use the threshold that best separates them.",
        ),
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Also draw the groups here, a row each (.png, .jpg, .pdf, .svg).")
    ] = None,
    max_groups: Annotated[int, typer.Option(min=1, max=10_000, help="Groups shown in the table and figure.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print every group as JSON instead of a table.")] = False,
    progress: ProgressOption = True,
) -> None:
    """Groups of duplicate images: exact (same pixels, other bytes) and near (similarity >= --threshold).

    Each point asks the store for its --neighbours nearest (no all-pairs scan); pairs above the
    threshold are joined into groups, then pixels are compared (README: a changing catalog).
    """
    from percep_rag.duplicates import find_duplicates

    if figure is not None:
        check_figure_path(figure, "--figure")
    with open_existing_store(store) as opened:
        existing_collection(opened, collection)
        if calibrate is not None:
            chosen = _calibrated(opened, collection, calibrate, space, quiet=json_out)
            if threshold is None:
                threshold = chosen
        report = find_duplicates(
            opened,
            collection,
            using=space,
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            neighbours=neighbours,
            progress=progress,
        )
    if json_out:
        typer.echo(json.dumps(_as_json(report), indent=1))
    else:
        _print_table(report, max_groups)
    if figure is not None and report.groups:
        _draw(report, figure, max_groups, quiet=json_out)


def _calibrated(store: Any, collection: str, path: Path, space: str, *, quiet: bool) -> float:
    from percep_rag.catalog import matching_ids, uri_forms
    from percep_rag.duplicates import choose_threshold, pair_scores
    from percep_rag.io.tables import read_table

    if not path.is_file():
        fail(f"--calibrate: no file {path}", USAGE)
    pairs: list[tuple[str, str]] = []
    named: list[tuple[str, str]] = []
    labels: list[bool] = []
    for line, row in read_table(path):
        if isinstance(row, str) or not {"a", "b", "same"} <= set(row):
            fail(f"--calibrate {path}:{line}: need columns a, b and same", USAGE)
        ids = []
        for key in ("a", "b"):
            found = matching_ids(store, collection, uris=[uri_forms(str(row[key]))])
            if not found:
                fail(f"--calibrate {path}:{line}: no point of {collection!r} has uri {row[key]}")
            ids.append(found[0])
        pairs.append((ids[0], ids[1]))
        named.append((str(row["a"]), str(row["b"])))
        labels.append(str(row["same"]).strip().lower() in {"1", "true", "yes", "same", "y"})
    if not pairs:
        fail(f"--calibrate {path}: no pairs", USAGE)
    scores = pair_scores(store, collection, pairs, using=space)
    threshold = choose_threshold([s for s, y in zip(scores, labels, strict=True) if y],
                                 [s for s, y in zip(scores, labels, strict=True) if not y])  # fmt: skip
    if not quiet:
        for (a, b), score, same in zip(named, scores, labels, strict=True):
            typer.echo(f"{'same' if same else 'different':9}  {score:.4f}  {a}  {b}")
        typer.echo(f"calibrated {space} threshold: {threshold:.4f} (from {len(pairs)} labelled pairs)\n")
    return threshold


def _as_json(report: Any) -> dict[str, Any]:
    return {
        "collection": report.collection,
        "space": report.using,
        "threshold": report.threshold,
        "points": report.points,
        "duplicate_points": report.duplicate_points,
        "groups": [
            {
                "kind": g.kind,
                "min_score": g.min_score,
                "max_score": g.max_score,
                "exact_sets": g.exact_sets,
                "members": [{"id": m.id, "uri": m.uri, "label": m.label} for m in g.members],
            }
            for g in report.groups
        ],
    }


def _print_table(report: Any, max_groups: int) -> None:
    exact = sum(g.kind == "exact" for g in report.groups)
    typer.echo(
        f"{report.collection}: {len(report.groups)} groups ({exact} exact, {len(report.groups) - exact} near) "
        f"holding {report.duplicate_points} duplicate points among {report.points}; "
        f"{report.using} similarity >= {report.threshold:.4f}"
    )
    for number, group in enumerate(report.groups[:max_groups], start=1):
        typer.echo(f"\ngroup {number}: {group.kind}, {len(group.members)} images, similarity {group.min_score:.4f}"
                   f"-{group.max_score:.4f}")  # fmt: skip
        same = {pid: n for n, ids in enumerate(group.exact_sets, start=1) for pid in ids}
        for member in group.members:
            mark = f"pixels={same[member.id]}" if member.id in same else "        "
            typer.echo(f"  {mark}  {member.label or '':<12}  {member.uri}")
    if len(report.groups) > max_groups:
        typer.echo(f"\n... {len(report.groups) - max_groups} more groups (--max-groups, or --json for all)")


def _draw(report: Any, figure: Path, max_groups: int, *, quiet: bool) -> None:
    from percep_rag.viz import image_rows

    shown = report.groups[:max_groups]
    image_rows(
        [[m.uri for m in g.members] for g in shown],
        figure,
        captions=[[Path(m.uri).name for m in g.members] for g in shown],
        row_titles=[f"{n}: {g.kind}, cos {g.min_score:.3f}-{g.max_score:.3f}" for n, g in enumerate(shown, 1)],
        title=f"{report.collection}: duplicates in {report.using} space, threshold {report.threshold:.3f}",
    )
    typer.echo(f"figure written to {figure}", err=quiet)
