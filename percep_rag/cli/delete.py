"""``percep-rag delete``: remove points from a collection by id or filter, or a source file's record
by its uri (its point goes with its last record), after a confirmation."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.forward import collection_path, no_lock_errors, post, served_owner
from percep_rag.cli.options import CollectionOption, FilterOption, StoreOption, store_spec
from percep_rag.cli.stored import checked_filter, existing_collection, open_existing_store


def delete(
    collection: CollectionOption,
    store: StoreOption = None,
    ids: Annotated[list[str] | None, typer.Option("--id", help="A point id to delete; repeatable.")] = None,
    filter: FilterOption = None,
    uris: Annotated[
        list[str] | None,
        typer.Option(
            "--uri",
            help="Remove this source file's record; its point is deleted once no other file holds its image. "
            "Repeatable.",
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (needed when stdin is no terminal).")
    ] = False,
) -> None:
    """Delete the points given by --id or --filter, or the records of --uri (exactly one kind),
    after showing how many.

    Asks for confirmation unless --yes; without a terminal to ask on, refuses.
    """
    from percep_rag.catalog import apply_record_removal, matching_ids, plan_record_removal, uri_forms

    given = [name for name, value in (("--id", ids), ("--filter", filter), ("--uri", uris)) if value]
    if len(given) != 1:
        fail(f"give exactly one of --id, --filter or --uri (got {', '.join(given) or 'none'})", USAGE)
    spec = store_spec(store)
    owner = served_owner(spec, collection)
    if owner is not None:
        fields = [("id", i) for i in ids or []] + [("filter", f) for f in filter or []]
        fields += [("uri", form) for uri in uris or [] for form in uri_forms(uri)]
        _delete_through(owner, spec, collection, fields, given[0], yes)
        return
    with no_lock_errors(spec, collection), open_existing_store(store) as opened:
        existing_collection(opened, collection)
        flt = checked_filter(opened, collection, filter) if filter else None
        if uris:
            removal = plan_record_removal(opened, collection, [uri_forms(u) for u in uris])
            found, kept = removal.delete, len(removal.relink)
        else:
            removal, kept = None, 0
            found = matching_ids(opened, collection, ids=ids, filter=flt)
        if not found and not kept:
            typer.echo(f"no point of {collection!r} matches {given[0]}: nothing deleted")
            return
        what = f"{len(found)} point{'s' if len(found) != 1 else ''} of {collection!r} in {opened.location}"
        what += kept_note(removal.from_kept, kept) if removal is not None else ""
        if not yes:
            if not sys.stdin.isatty():
                fail(f"refusing to delete {what} without confirmation: stdin is not a terminal; pass --yes")
            typer.confirm(f"delete {what}?", abort=True)
        if removal is not None:
            apply_record_removal(opened, collection, removal)
        else:
            opened.delete(collection, found)
        left = opened.count(collection)
    typer.echo(f"deleted {what}; {left} left")


def kept_note(records: int, points: int) -> str:
    """What a removal by uri does besides deleting points: records taken off points that keep others.

    >>> kept_note(2, 1)
    ' and 2 records from 1 point that other files still hold'
    >>> kept_note(0, 0)
    ''
    """
    if not points:
        return ""
    return (
        f" and {records} record{'s' if records != 1 else ''} from {points} point{'s' if points != 1 else ''} "
        f"that other files still hold"
    )


def _delete_through(owner: Any, spec: Any, collection: str, fields: list, kind: str, yes: bool) -> None:
    """``delete`` on a collection a running service holds: counted, confirmed and done by that service."""
    path = collection_path(collection, "delete")
    counted = post(owner, path, [*fields, ("dry_run", "true")])
    if not counted["matched"]:
        typer.echo(f"no point of {collection!r} matches {kind}: nothing deleted")
        return
    points = counted["matched"] - counted.get("relinked", 0)
    what = f"{points} point{'s' if points != 1 else ''} of {collection!r} in {spec.path}"
    what += kept_note(counted.get("records_from_kept", 0), counted.get("relinked", 0))
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to delete {what} without confirmation: stdin is not a terminal; pass --yes")
        typer.confirm(f"delete {what} (through {owner.describe()})?", abort=True)
    done = post(owner, path, fields)
    note = kept_note(done.get("records_from_kept", 0), done.get("relinked", 0))
    typer.echo(f"deleted {done['deleted']} point{'s' if done['deleted'] != 1 else ''} of {collection!r} in "
               f"{spec.path}{note}; {done['count']} left (through {owner.describe()})")  # fmt: skip
