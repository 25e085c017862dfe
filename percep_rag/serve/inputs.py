"""What a search or classify request carries, checked: the query (an uploaded image, a stored point or,
for search, a text) and filters.

Every refusal is an :class:`~percep_rag.serve.errors.ApiError` naming the problem: an upload
over the limit (413), not an image (415), empty, truncated or corrupt (400), too many pixels
(413); a filter with bad syntax or a field no point has (422); a point id that is not stored (404);
a text that is empty, not a string or too long, or sent to a collection where text has no meaning (422).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, UploadFile

from percep_rag.config import Fingerprint
from percep_rag.errors import ImageDecodeError
from percep_rag.io.decode import decode_image_bytes
from percep_rag.serve.errors import ApiError, status_for_decode_error
from percep_rag.serve.settings import ServeSettings
from percep_rag.store.base import VectorStore
from percep_rag.store.describe import payload_fields, unknown_filter_fields
from percep_rag.store.errors import FilterError
from percep_rag.store.filters import collection_value_type, parse_filter_texts
from percep_rag.store.ids import normalize_id

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Query:
    """A checked query: the uploaded image's bytes, the id of a stored point, or a text (exactly one)."""

    image: bytes | None = None
    point: str | None = None
    filename: str | None = None
    text: str | None = None

    def describe(self) -> dict[str, object]:
        """The query as the response echoes it."""
        if self.text is not None:
            return {"text": self.text}
        if self.point is not None:
            return {"point": self.point}
        return {"upload": self.filename or "upload", "bytes": len(self.image or b"")}


async def check_form(request: Request) -> None:
    """415 unless the request is a form (the image travels as multipart, a point id in either)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORM_TYPES:
        sent = kind or "no body"
        raise ApiError(415, f"send multipart/form-data (an image) or a url-encoded form (a point id), not {sent}")


def request_kind(request: Request) -> str:
    """The body's media type, lower case, without parameters (``""`` when there is none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def check_search_body(request: Request) -> None:
    """415 unless the request is a form or JSON (a text query or a point id travels in either)."""
    kind = request_kind(request)
    if kind not in (*FORM_TYPES, JSON_TYPE):
        sent = kind or "no body"
        raise ApiError(
            415, f"send multipart/form-data (an image), a url-encoded form or JSON (a text or point id), not {sent}"
        )


def text_query(text: object, fingerprint: Fingerprint, collection: str, spaces: tuple[str, ...]) -> Query:
    """A checked text query for ``spaces`` of ``collection``, whose vectors ``fingerprint`` describes
    (422 naming the problem)."""
    from percep_rag.backbones.text import check_texts
    from percep_rag.errors import TextQueryError
    from percep_rag.text_space import check_text_space

    try:
        [checked] = check_texts([text])
        for space in spaces:
            check_text_space(fingerprint, space, collection)
    except TextQueryError as error:
        raise ApiError(422, f"text: {error}") from None
    return Query(text=checked)


async def read_query(
    image: UploadFile | str | None,
    point: str | None,
    store: VectorStore,
    collection: str,
    settings: ServeSettings,
    run: Callable[..., Awaitable[Any]],
) -> Query:
    """The request's query, checked (see the module docstring); ``run`` runs the blocking checks off the loop."""
    max_bytes = settings.max_upload_bytes
    if isinstance(image, str):  # a form field named image that is not a file
        raise ApiError(422, "image: send the image as a file upload (multipart/form-data)")
    given = [name for name, value in (("image", image), ("point", point)) if value not in (None, "")]
    if len(given) != 1:
        got = given or "none"
        raise ApiError(422, f"give exactly one of image (an upload) or point (a stored point id); got {got}")
    if point:
        return Query(point=await run(stored_point_id, store, collection, point))
    assert image is not None
    data = await image.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, f"upload {image.filename or 'image'!r} is over the limit of {max_bytes / 2**20:g} MB")
    name = image.filename or "upload"
    await run(_check_image, data, name, settings.max_pixels)  # decoding is work: off the event loop
    return Query(image=data, filename=name)


def _check_image(data: bytes, name: str, max_pixels: int) -> None:
    try:
        decode_image_bytes(data, source_name=name, max_pixels=max_pixels)
    except ImageDecodeError as error:
        status, code = status_for_decode_error(error)
        raise ApiError(status, str(error), code) from None


def stored_point_id(store: VectorStore, collection: str, point: str) -> str:
    """``point`` as a stored point's canonical id (404 when it is not a point of ``collection``)."""
    try:
        canonical = normalize_id(point)
    except ValueError:
        raise ApiError(404, f"no point {point!r} in collection {collection!r} (point ids are UUIDs)") from None
    if not store.retrieve(collection, [canonical]):
        raise ApiError(404, f"no point {point!r} in collection {collection!r}")
    return canonical


def read_filter(store: VectorStore, collection: str, texts: list[str] | None) -> dict[str, object] | None:
    """``filter`` form fields (``key=value``, as ``--filter``) as a filter dict; 422 for bad syntax or unknown fields.

    A filter that matches no point is not an error here: the answer is an empty result.
    """
    texts = [text for text in texts or [] if text.strip()]
    if not texts:
        return None
    try:
        parsed = parse_filter_texts(texts, collection_value_type(store, collection), name="filter")
    except FilterError as error:
        raise ApiError(422, str(error)) from None
    if store.count(collection, parsed) > 0:
        return parsed
    fields = payload_fields(store, collection, sample=None)
    unknown = unknown_filter_fields(parsed, fields)
    if unknown:
        raise ApiError(
            422,
            f"filter names {', '.join(map(repr, unknown))}, a field no point of {collection!r} has "
            f"(fields: {', '.join(fields) or 'none'})",
        )
    return parsed


def indexed_image_bytes(store: VectorStore, collection: str, point: str) -> tuple[str, bytes]:
    """The canonical id and the bytes of the image a point of ``collection`` was indexed from.

    Only the ``uri`` in the point's own payload is read (a local path, ``file://`` or ``data:``;
    a request never names a path), and the bytes must still be the indexed ones: their content
    hash must be the point's (its payload's ``content_hash``, else its id). A file replaced
    since indexing, a symlink swapped in, a remote URI: 404, nothing of the file is sent.
    """
    from percep_rag.io.sources import read_image_bytes
    from percep_rag.store.ids import content_hash, point_id

    canonical = stored_point_id(store, collection, point)
    [stored] = store.retrieve(collection, [canonical])
    uri = stored.payload.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ApiError(404, f"point {canonical} of {collection!r} has no image uri")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ("data" if uri.startswith("data:") else "")
    if scheme not in ("", "file", "data"):
        raise ApiError(404, f"point {canonical}'s image is not a local file ({scheme}: URIs are not fetched)")
    try:
        data = read_image_bytes(uri)
    except ImageDecodeError as error:
        raise ApiError(404, f"the image of point {canonical} cannot be read: {error.reason}") from None
    digest = content_hash(data)
    recorded = stored.payload.get("content_hash")
    if digest != recorded and point_id(digest, collection) != canonical:
        raise ApiError(404, f"the file at point {canonical}'s uri is no longer the image that was indexed")
    return canonical, data
