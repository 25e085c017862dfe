"""``GET /collections`` and ``GET /collections/{name}``: what is served, with the ``info`` fields."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from percep_rag.serve.errors import api_error_for
from percep_rag.store.describe import describe_collection
from percep_rag.text_space import with_text_queries

router = APIRouter(tags=["collections"])


@router.get("/collections", summary="The served collections, with point counts and backbones")
def list_collections(request: Request) -> dict[str, Any]:
    """Each collection's points, backbone, alignment and whether its weights are random.

    A collection whose store cannot be reached is listed with ``status: unavailable``.
    """
    catalog = request.app.state.catalog
    rows = []
    for name in catalog.names:
        retriever = catalog.retriever(name)
        fingerprint = retriever.embedder.fingerprint
        row: dict[str, Any] = {
            "name": name,
            "backbone": fingerprint.backbone,
            "alignment": fingerprint.alignment,
            "random_weights": fingerprint.random_weights,
        }
        try:
            row |= {"points": catalog.store(name).count(name), "status": "ok"}
        except Exception as error:  # noqa: BLE001 - one store down must not hide the others
            found = api_error_for(error)
            row |= {"points": None, "status": "unavailable", "detail": found.detail}
        rows.append(row)
    return {"collections": rows}


@router.get("/collections/{name}", summary="One collection: the fields `percep-rag info` prints, and facets")
def collection_info(request: Request, name: str) -> dict[str, Any]:
    """Points, fingerprint, vectors, payload fields and indexes, options, and the labels/splits to filter by."""
    catalog = request.app.state.catalog
    store = catalog.store(name)
    described = with_text_queries(describe_collection(store, name))
    described.pop("store", None)  # where the store lives is the operator's business, not the client's
    described["facets"] = catalog.facets(name)
    return described
