"""``GET /healthz``: answers from the event loop without touching a store or the embedder."""

from __future__ import annotations

from fastapi import APIRouter, Request

from percep_rag._version import __version__

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the service answers (no API key needed)")
async def healthz(request: Request) -> dict[str, object]:
    """``{"status": "ok", ...}`` while the process serves; cheap enough for a load balancer's probe."""
    state = request.app.state
    return {
        "status": "ok",
        "version": __version__,
        "collections": len(state.catalog.names),
        "vlm": state.vlm is not None,
    }
