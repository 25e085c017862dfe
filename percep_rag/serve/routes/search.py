"""``POST /collections/{name}/search``: neighbours of an uploaded image or of a stored point."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from percep_rag.serve.answers import Hit, hit_json
from percep_rag.serve.errors import ApiError
from percep_rag.serve.inputs import Query, check_form, read_filter, read_query

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


FILTER_HELP = "key=value or key=v1,v2 (any of), as `percep-rag search --filter`; repeat the field: all must hold."


@router.post(
    "/collections/{name}/search",
    response_model=SearchResponse,
    dependencies=[Depends(check_form)],
    summary="Nearest stored images to an uploaded image or a stored point",
)
async def search(
    request: Request,
    name: str,
    image: UploadFile | None = File(None, description="The query image (multipart upload)."),
    point: str | None = Form(None, description="Or: the id of a stored point to query with."),
    k: int = Form(10, ge=1, description="Neighbours per vector space (at most the service's max_k)."),
    space: Space = Form("both", description="'aligned', 'base' or 'both' side by side."),
    filter: list[str] = Form([], description=FILTER_HELP),
) -> JSONResponse:
    """The ``k`` nearest points (never the query itself) in the aligned and/or base space that pass ``filter``."""
    state = request.app.state
    settings = state.settings
    if k > settings.max_k:
        raise ApiError(422, f"k: at most {settings.max_k} neighbours per search, got {k}")
    retriever = state.catalog.retriever(name)
    store = retriever.store
    query = await read_query(image, point, store, name, settings, state.catalog.run)
    spaces = ("aligned", "base") if space == "both" else (space,)

    def run() -> JSONResponse:
        # Searching and rendering the JSON both happen here, off the event loop.
        flt = read_filter(store, name, filter)
        with retriever.embedder.remember():
            found = {using: _search(retriever, query, k, using, flt) for using in spaces}
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
            }
        )

    return await state.catalog.run(run)


def _search(retriever: Any, query: Query, k: int, using: str, flt: dict[str, object] | None) -> list:
    if query.point is not None:
        return retriever.search(point=query.point, k=k, using=using, filter=flt)
    return retriever.search(query.image, k=k, using=using, filter=flt)


def image_url(request: Request, collection: str, point: str) -> str:
    """The path of a point's thumbnail (under the service's root path)."""
    return request.url_for("point_image", name=collection, point=point).path
