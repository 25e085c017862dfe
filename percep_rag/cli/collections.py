"""``percep-rag collections`` and ``percep-rag info``: what a store holds, without changing it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from percep_rag.cli.options import StoreOption
from percep_rag.cli.stored import existing_collection, open_existing_store

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def collections(store: StoreOption = None, json_out: JsonFlag = False) -> None:
    """List the store's collections with their point counts and backbones."""
    with open_existing_store(store) as opened:
        rows = []
        for name in opened.list_collections():
            info = opened.collection_info(name)
            rows.append(
                {
                    "name": name,
                    "points": opened.count(name),
                    "backbone": info.fingerprint.backbone,
                    "alignment": info.fingerprint.alignment,
                    "random_weights": info.fingerprint.random_weights,
                }
            )
        location = str(opened.location)
    if json_out:
        typer.echo(json.dumps({"store": location, "collections": rows}, indent=1))
        return
    if not rows:
        typer.echo(f"no collections in {location}")
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        note = " [RANDOM weights]" if row["random_weights"] else ""
        typer.echo(
            f"{row['name']:<{width}}  {row['points']:>8} points  {row['backbone']}, {row['alignment']} alignment{note}"
        )


def info(
    collection: Annotated[str, typer.Argument(help="The collection to describe.")],
    store: StoreOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Points, fingerprint, payload fields with their types, and index state of a collection."""
    with open_existing_store(store) as opened:
        described = _describe(opened, collection)
    if json_out:
        typer.echo(json.dumps(described, indent=1))
        return
    typer.echo(f"collection {described['name']!r} in {described['store']}: {described['points']} points")
    typer.echo("fingerprint:")
    for key, value in described["fingerprint"].items():
        typer.echo(f"  {key}: {value}")
    typer.echo(f"text queries: {described['text_queries']}")
    typer.echo(f"vectors: {', '.join(f'{name} ({dim}-d)' for name, dim in described['vectors'].items())}")
    typer.echo("payload fields:")
    for key, kind in described["payload_fields"].items():
        typer.echo(f"  {key}: {kind}")
    indexes = described["payload_indexes"]
    typer.echo(f"payload indexes: {', '.join(f'{k} ({v})' for k, v in indexes.items()) or 'none'}")
    typer.echo(f"created: {described['created_at'] or 'unknown'} by percep-rag {described['library_version'] or '?'}")
    _echo_copy_thresholds(described["copy_thresholds"])


def _echo_copy_thresholds(thresholds: dict[str, Any]) -> None:
    """What "copy" means in this collection: exact by pixels always, near only once calibrated."""
    from percep_rag.store import CopyThreshold

    if not thresholds:
        typer.echo("near-copy threshold: none (not calibrated: `duplicates --calibrate pairs.csv`)")
        return
    for space, threshold in sorted(thresholds.items()):
        calibrated = CopyThreshold.model_validate(threshold)
        when = f", {calibrated.calibrated_at}" if calibrated.calibrated_at else ""
        typer.echo(f"near-copy threshold ({space}): {calibrated.describe()}{when}")


def _describe(store: Any, collection: str) -> dict[str, Any]:
    from percep_rag.store.describe import describe_collection
    from percep_rag.text_space import with_text_queries

    existing_collection(store, collection)
    return with_text_queries(describe_collection(store, collection))
