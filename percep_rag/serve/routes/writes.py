"""Writes to a served collection: add uploaded images, delete points, sync from the source folder.

* ``POST /collections/{name}/points``: images (multipart, ``image`` repeated) with ``label``,
  ``split`` and ``payload`` (a JSON object of further fields), embedded by the collection's own
  embedder on its queue, and stored in the service's uploads folder (``--uploads``).
* ``POST /collections/{name}/delete``: the points given by ``id`` or ``filter``, or the records
  of ``uri`` (a point goes with its last record; exactly one kind, repeatable, as
  ``percep-rag delete``); ``DELETE .../points/{point}``: one.
* ``POST /collections/{name}/sync``: what ``index --sync SOURCE`` does, from the source folder
  the service was started with (``--source``); ``remove=false`` only adds (``index SOURCE``).

Each answers what changed, with the counts ``index --sync`` prints; behind the API key and the
upload limit, like search. See :mod:`percep_rag.serve.writes` for the consistency rules.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from percep_rag.serve.errors import ApiError
from percep_rag.serve.inputs import _check_image, check_form, read_filter
from percep_rag.serve.routes.search import FILTER_HELP
from percep_rag.serve.writes import Writes, forget_changes, sync_collection, upload_payload
from percep_rag.uploads import forget_uploads, keep_upload, list_uploads

router = APIRouter(tags=["writes"])

#: Most images one add request may carry.
MAX_IMAGES_PER_ADD = 256


def writes_of(request: Request) -> Writes:
    """The app's :class:`Writes` (an app made without any: no source, no uploads folder)."""
    found = getattr(request.app.state, "writes", None)
    return found if isinstance(found, Writes) else Writes()


async def _off_loop(function: Any, *args: Any) -> Any:
    # Writes run on their own threads, not in the searches' capacity: a long sync never
    # takes a search's place, and searches never wait for it.
    return await anyio.to_thread.run_sync(functools.partial(function, *args))


@router.post(
    "/collections/{name}/points",
    dependencies=[Depends(check_form)],
    summary="Add uploaded images to a collection (embedded by its own embedder)",
)
async def add_images(
    request: Request,
    name: str,
    image: list[UploadFile] = File(..., description="One or more images (repeat the field)."),
    label: str | None = Form(None, description="The label of every image of this request."),
    split: str | None = Form(None, description="The split of every image of this request."),
    payload: str | None = Form(None, description='Further payload fields, a JSON object: {"sku": "A1"}.'),
) -> dict[str, Any]:
    """Embed and store the images; an image already stored (same bytes) is counted, not added again."""
    from percep_rag.datasets.records import ImageRecord
    from percep_rag.indexing import write_points
    from percep_rag.store import content_hash, point_id

    state = request.app.state
    settings = state.settings
    catalog = state.catalog
    retriever = catalog.retriever(name)
    writes = writes_of(request)
    folder = writes.target(name).uploads
    if folder is None:
        raise ApiError(501, f"this service keeps no uploads for {name!r}: start it with --uploads DIR", "no_uploads")
    extra = upload_payload(payload)
    if len(image) > MAX_IMAGES_PER_ADD:
        raise ApiError(413, f"at most {MAX_IMAGES_PER_ADD} images per request, got {len(image)}")
    uploads: list[tuple[str, bytes]] = []
    budget = settings.max_upload_bytes
    for part in image:
        if isinstance(part, str):
            raise ApiError(422, "image: send the images as file uploads (multipart/form-data)")
        data = await part.read(budget + 1)
        budget -= len(data)
        if budget < 0:
            raise ApiError(
                413, f"the images are over the limit of {settings.max_upload_bytes / 2**20:g} MB per request"
            )
        uploads.append((part.filename or "upload", data))

    def run() -> dict[str, Any]:
        for filename, data in uploads:
            _check_image(data, filename, settings.max_pixels)
        digests = [content_hash(data) for _, data in uploads]
        ids = [point_id(digest, name) for digest in digests]
        store = retriever.store
        with writes.lock(name):
            present = store.existing_ids(name, ids)
            fresh: dict[str, int] = {}
            for position, pid in enumerate(ids):
                if pid not in present:
                    fresh.setdefault(pid, position)
            order = list(fresh.values())
            points = []
            if order:
                both = retriever.embedder.embed_both([uploads[i][1] for i in order])
                folder.mkdir(parents=True, exist_ok=True)
                records = []
                for i in order:
                    path = keep_upload(folder, uploads[i][1], digests[i], uploads[i][0])
                    records.append(
                        ImageRecord(id=f"uploads/{path.name}", uri=str(path), label=label, split=split, extra=extra)
                    )
                # Listed before the points are written: a sync after a crash here indexes them.
                list_uploads(folder, list(zip(records, [ids[i] for i in order], strict=True)))
                written = write_points(
                    store, name, records, [digests[i] for i in order], [ids[i] for i in order],
                    both.base, both.aligned, None,
                )  # fmt: skip
                if writes.on_upsert is not None:
                    writes.on_upsert(written)
                points = [
                    {"id": ids[i], "uri": record.uri, "filename": uploads[i][0]}
                    for i, record in zip(order, records, strict=True)
                ]
            forget_changes(catalog, name)
            total = writes.count_after(name, store, len(order))
            return {
                "collection": name,
                "added": len(order),
                "already_present": len({ids[i] for i in range(len(ids)) if ids[i] in present}),
                "duplicates": len(ids) - len(order) - len({pid for pid in ids if pid in present}),
                "points": points,
                "count": total,
                "report": f"{name}: {len(order)} added, {len(ids) - len(order)} already present",
            }

    return await _off_loop(run)


@router.post(
    "/collections/{name}/delete",
    dependencies=[Depends(check_form)],
    summary="Delete the points given by id, uri or filter (exactly one kind)",
)
async def delete_points(
    request: Request,
    name: str,
    id: list[str] = Form([], description="A point id; repeat the field."),
    uri: list[str] = Form([], description="A source uri (the payload's uri); repeat the field."),
    filter: list[str] = Form([], description=FILTER_HELP),
    dry_run: bool = Form(False, description="Only count what would be deleted."),
) -> dict[str, Any]:
    """The points deleted (or, with ``dry_run``, that would be), and how many are left. By ``uri``:
    ``records`` removed, ``relinked`` points that keep other records (counted in ``matched``)."""
    given = [kind for kind, values in (("id", id), ("uri", uri), ("filter", filter)) if values]
    if len(given) != 1:
        raise ApiError(422, f"give exactly one of id, uri or filter (got {', '.join(given) or 'none'})")
    return await _off_loop(_delete, request, name, id, uri, filter, dry_run)


@router.delete("/collections/{name}/points/{point}", summary="Delete one point")
async def delete_point(request: Request, name: str, point: str) -> dict[str, Any]:
    """Delete ``point`` (404 when it is not a point of the collection)."""
    from percep_rag.serve.inputs import stored_point_id

    store = request.app.state.catalog.store(name)
    canonical = await _off_loop(stored_point_id, store, name, point)
    return await _off_loop(_delete, request, name, [canonical], [], [], False)


def _delete(
    request: Request, name: str, ids: list[str], uris: list[str], filters: list[str], dry_run: bool
) -> dict[str, Any]:
    from percep_rag.catalog import apply_record_removal, matching_ids, plan_record_removal
    from percep_rag.uploads import uploaded_records

    catalog = request.app.state.catalog
    writes = writes_of(request)
    store = catalog.store(name)
    flt = read_filter(store, name, filters) if filters else None
    uploads = writes.target(name).uploads
    with writes.lock(name):
        removal = plan_record_removal(store, name, [[u] for u in uris]) if uris else None
        found = removal.delete if removal is not None else matching_ids(store, name, ids=_valid_ids(ids), filter=flt)
        relinked = sorted(removal.relink) if removal is not None else []
        if (found or relinked) and not dry_run:
            # An upload goes off the list with its point, or with its own record from a point kept.
            own = {pid for record, pid in uploaded_records(uploads) if pid in relinked and record.uri in uris}
            gone = set(found) | own
            files = forget_uploads(uploads, gone)
            if removal is not None:
                apply_record_removal(store, name, removal)
            else:
                store.delete(name, found)
            for path in files:
                path.unlink(missing_ok=True)
            forget_changes(catalog, name)
        left = writes.count_after(name, store, 0 if dry_run else -len(found))
    verb = "would delete" if dry_run else "deleted"
    answer = {
        "collection": name,
        "deleted": 0 if dry_run else len(found),
        "matched": len(found) + len(relinked),
        "ids": sorted([*found, *relinked]),
        "dry_run": dry_run,
        "count": left,
        "report": f"{verb} {len(found)} point{'s' if len(found) != 1 else ''} of {name!r}; {left} left",
    }
    if removal is not None:
        answer |= {"records": removal.records, "relinked": len(relinked), "records_from_kept": removal.from_kept}
    return answer


def _valid_ids(ids: list[str]) -> list[str]:
    from percep_rag.store.ids import normalize_id

    valid = []
    for text in ids:
        try:
            valid.append(normalize_id(text))
        except ValueError:
            continue  # not a UUID: no point has it
    return valid


@router.post(
    "/collections/{name}/sync",
    summary="Sync a collection from the source folder the service was started with (index --sync)",
)
async def sync(
    request: Request,
    name: str,
    dry_run: bool = Form(False, description="Only report what would change."),
    remove: bool = Form(True, description="false: only add new images (what `index SOURCE` does)."),
    checksum: bool = Form(False, description="Read every file, not only those whose stat changed (--checksum)."),
) -> dict[str, Any]:
    """Index the source's new images, relink renamed ones, remove withdrawn ones; the counts."""
    state = request.app.state
    return await _off_loop(
        sync_collection, state.catalog, writes_of(request), state.settings, name, dry_run, remove, checksum
    )


