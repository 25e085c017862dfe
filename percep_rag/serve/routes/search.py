"""``POST /collections/{name}/search``: neighbours of an uploaded image, a stored point or a text.

The query comes as a form (``image`` upload, ``point`` or ``text`` field) or as JSON
(``{"text": ..., "k": ..., "space": ..., "filter": [...]}`` or ``{"point": ...}``). A text query
(CLIP-family collections with cls pooling) searches ``base`` unless ``space`` says otherwise
(:mod:`percep_rag.text_space`); bad text or a collection where text has no meaning is a 422.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from percep_rag.copy_threshold import copy_rule_json
from percep_rag.serve.answers import Hit, hit_json
from percep_rag.serve.errors import ApiError
from percep_rag.serve.inputs import (
    JSON_TYPE,
    Query,
    check_search_body,
    read_filter,
    read_query,
    request_kind,
    text_query,
)

router = APIRouter(tags=["search"])

Space = Literal["aligned", "base", "both"]


class SearchResponse(BaseModel):
    """The hits per vector space, most similar first, and what was asked."""

    collection: str
    query: dict[str, Any]
    k: int
    space: Space
    filter: dict[str, Any] | None
    embedder: dict[str, Any]
    results: dict[str, list[Hit]]
    copies: dict[str, dict[str, Any]] = {}


class SearchJson(BaseModel):
    """A search sent as JSON: a text (or a stored point) and the same options as the form."""

    model_config = ConfigDict(extra="forbid")

    text: Any = None  # checked by the text rules, so that a non-string gets their message
    point: str | None = None
    k: int = Field(10, ge=1)
    space: Space | None = None
    filter: list[str] | str = []
    duplicate_threshold: float | None = Field(None, ge=-1.0, le=1.0)


FILTER_HELP = "key=value or key=v1,v2 (any of), as `percep-rag search --filter`; repeat the field: all must hold."


@router.post(
    "/collections/{name}/search",
    response_model=SearchResponse,
    dependencies=[Depends(check_search_body)],
    summary="Nearest stored images to an uploaded image, a stored point or a text",
)
async def search(
    request: Request,
    name: str,
    image: UploadFile | None = File(None, description="The query image (multipart upload)."),
    point: str | None = Form(None, description="Or: the id of a stored point to query with."),
    text: str | None = Form(None, description="Or: a text query (CLIP-family collections; searches base)."),
    k: int = Form(10, ge=1, description="Neighbours per vector space (at most the service's max_k)."),
    space: Space | None = Form(
        None, description="'aligned', 'base' or 'both' side by side (default: both; base for a text)."
    ),
    filter: list[str] = Form([], description=FILTER_HELP),
    duplicate_threshold: float | None = Form(
        None,
        ge=-1.0,
        le=1.0,
        description="Mark hits at or above this cosine as near copies (default: the collection's calibrated "
        "threshold, from `percep-rag duplicates --calibrate`; without one, only exact pixel copies are marked).",
    ),
) -> JSONResponse:
    """The ``k`` nearest points (never the query itself) in the aligned and/or base space that pass ``filter``.

    Each hit's ``copy_of_query`` is ``"exact"`` (the query's pixels), ``"near"`` (cosine at or
    above ``duplicate_threshold`` or the calibrated threshold) or ``null``; ``files`` counts the
    byte-identical files it stands for; ``copies`` says per space which rule marked them."""
    state = request.app.state
    settings = state.settings
    if request_kind(request) == JSON_TYPE:
        sent = await _read_json(request)
        text, point, k, space = sent.text, sent.point, sent.k, sent.space
        duplicate_threshold = sent.duplicate_threshold
        filter = [sent.filter] if isinstance(sent.filter, str) else sent.filter
    elif text is None and "text" in (form := await request.form()):
        text = form["text"]  # FastAPI reads an empty field as absent: an empty text is refused as such
    if k > settings.max_k:
        raise ApiError(422, f"k: at most {settings.max_k} neighbours per search, got {k}")
    retriever = state.catalog.retriever(name)
    store = retriever.store
    if text is not None:
        given = [field for field, value in (("image", image), ("point", point)) if value not in (None, "")]
        if given:
            raise ApiError(422, f"give exactly one of image, point or text; got text and {given[0]}")
        if duplicate_threshold is not None:
            raise ApiError(422, "duplicate_threshold marks copies of an image or point query; a text has none")
        space = space or "base"
        spaces: tuple[str, ...] = ("aligned", "base") if space == "both" else (space,)
        query = text_query(text, retriever.embedder.fingerprint_fields(), name, spaces)
    else:
        if image is None and point in (None, ""):
            raise ApiError(422, "give exactly one of image (an upload), point (a stored point id) or text; got none")
        space = space or "both"
        spaces = ("aligned", "base") if space == "both" else (space,)
        query = await read_query(image, point, store, name, settings, state.catalog.run)

    def run() -> JSONResponse:
        # Searching and rendering the JSON both happen here, off the event loop.
        flt = read_filter(store, name, filter)
        with retriever.embedder.remember():
            found = {using: _search(retriever, query, k, using, flt, duplicate_threshold) for using in spaces}
        rules = {} if query.text is not None else {u: retriever.copy_rule(u, duplicate_threshold) for u in spaces}
        fingerprint = retriever.embedder.fingerprint
        return JSONResponse(
            {
                "collection": name,
                "query": query.describe(),
                "k": k,
                "space": space,
                "filter": flt,
                "embedder": {
                    "backbone": fingerprint.backbone,
                    "alignment": fingerprint.alignment,
                    "random_weights": fingerprint.random_weights,
                },
                "results": {
                    using: [
                        hit_json(hit, rank, image_url(request, name, str(hit.id)))
                        for rank, hit in enumerate(hits, start=1)
                    ]
                    for using, hits in found.items()
                },
                "copies": {using: copy_rule_json(rule) for using, rule in rules.items()},
            }
        )

    return await state.catalog.run(run)


async def _read_json(request: Request) -> SearchJson:
    try:
        return SearchJson.model_validate(await request.json())
    except ValueError as error:  # not JSON at all, or JSON of the wrong shape
        if isinstance(error, ValidationError):
            where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
            raise ApiError(422, where) from None
        raise ApiError(422, f"the body is not JSON: {error}") from None


def _search(
    retriever: Any, query: Query, k: int, using: str, flt: dict[str, object] | None, threshold: float | None
) -> list:
    if query.text is not None:
        return retriever.search(text=query.text, k=k, using=using, filter=flt)
    if query.point is not None:
        return retriever.search(point=query.point, k=k, using=using, filter=flt, duplicate_threshold=threshold)
    return retriever.search(query.image, k=k, using=using, filter=flt, duplicate_threshold=threshold)



def image_url(request: Request, collection: str, point: str) -> str:
    """The path of a point's thumbnail (under the service's root path)."""
    return request.url_for("point_image", name=collection, point=point).path
