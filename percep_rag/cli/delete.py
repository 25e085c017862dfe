"""``percep-rag delete``: remove points from a collection by id, filter or source uri, after a confirmation."""

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
        typer.Option("--uri", help="Delete the point of this source file (its payload uri); repeatable."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (needed when stdin is no terminal).")
    ] = False,
) -> None:
    """Delete the points given by --id, --filter or --uri (exactly one kind), after showing how many.

    Asks for confirmation unless --yes; without a terminal to ask on, refuses.
    """
    from percep_rag.catalog import matching_ids, uri_forms

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
        found = matching_ids(opened, collection, ids=ids, filter=flt, uris=[uri_forms(u) for u in uris or []])
        if not found:
            typer.echo(f"no point of {collection!r} matches {given[0]}: nothing deleted")
            return
        what = f"{len(found)} point{'s' if len(found) != 1 else ''} of {collection!r} in {opened.location}"
        if not yes:
            if not sys.stdin.isatty():
                fail(f"refusing to delete {what} without confirmation: stdin is not a terminal; pass --yes")
            typer.confirm(f"delete {what}?", abort=True)
        opened.delete(collection, found)
        left = opened.count(collection)
    typer.echo(f"deleted {what}; {left} left")


def _delete_through(owner: Any, spec: Any, collection: str, fields: list, kind: str, yes: bool) -> None:
    """``delete`` on a collection a running service holds: counted, confirmed and done by that service."""
    path = collection_path(collection, "delete")
    counted = post(owner, path, [*fields, ("dry_run", "true")])
    if not counted["matched"]:
        typer.echo(f"no point of {collection!r} matches {kind}: nothing deleted")
        return
    what = f"{counted['matched']} point{'s' if counted['matched'] != 1 else ''} of {collection!r} in {spec.path}"
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to delete {what} without confirmation: stdin is not a terminal; pass --yes")
        typer.confirm(f"delete {what} (through {owner.describe()})?", abort=True)
    done = post(owner, path, fields)
    typer.echo(f"deleted {done['deleted']} point{'s' if done['deleted'] != 1 else ''} of {collection!r} in "
               f"{spec.path}; {done['count']} left (through {owner.describe()})")  # fmt: skip
