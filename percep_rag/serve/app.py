"""The ASGI app: :func:`create_app` wires a catalog of collections, the guards and the page together.

No global state: the settings, the :class:`~percep_rag.serve.catalog.Catalog` and the VLM live
on ``app.state``; two apps in one process share nothing (but an embedder given to both).

>>> from fastapi.testclient import TestClient
>>> app = create_app([])  # no collection: the health check and the page only
>>> with TestClient(app) as client:
...     client.get("/healthz").json()["status"]
'ok'
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from percep_rag._version import __version__
from percep_rag.serve.catalog import Catalog, ServedCollection
from percep_rag.serve.errors import install_error_handlers
from percep_rag.serve.routes import classify, collections, health, images, search
from percep_rag.serve.routes import writes as write_routes
from percep_rag.serve.security import FORM_OVERHEAD, BodyLimit, require_api_key
from percep_rag.serve.settings import API_KEY_HEADER, ServeSettings
from percep_rag.serve.writes import Writes

#: The page and its scripts, shipped in the package (no build step, nothing fetched from elsewhere).
STATIC = files("percep_rag.serve") / "static"

DESCRIPTION = f"""Visual search over percep-rag collections: base and human-aligned neighbours, few-shot
classification, thumbnails of indexed images.

With `--api-key`, every `/collections` request needs the `{API_KEY_HEADER}` header; `/healthz`, this
documentation and the page's static files need none (they hold no catalog data). Errors are JSON
`{{"error": code, "detail": message}}` with status 400, 401, 404, 413, 415, 422, 501, 502 or 503."""


def create_app(
    collections_served: Iterable[ServedCollection],
    *,
    settings: ServeSettings | None = None,
    vlm: Any | None = None,
    writes: Writes | None = None,
) -> FastAPI:
    """The service over ``collections_served``; ``vlm`` (a few-shot classifier) enables ``/classify``;
    ``writes`` gives collections a source folder to sync from and an uploads folder (see ``serve.writes``).

    The stores stay the caller's to close; the embedding workers run while the app is served
    (its lifespan: ``with TestClient(app)``, uvicorn), stopping when it shuts down.
    """
    settings = settings or ServeSettings()
    catalog = Catalog(collections_served, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The workers run only while the app serves: started here, in the serving process (not
        # when the app is built, which a pre-forking server does before it forks), stopped at
        # shutdown, started again if the app is served again.
        catalog.start()
        try:
            yield
        finally:
            catalog.close()

    # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN: blank pages offline.
    # fastapi-offline serves the same pages from files shipped in its wheel.
    app = FastAPIOffline(title="percep-rag", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.vlm = vlm
    app.state.vlm_lock = threading.Lock()
    app.state.writes = writes or Writes()
    install_error_handlers(app)
    app.include_router(health.router)
    guarded = [Depends(require_api_key)]
    for router in (collections.router, search.router, classify.router, images.router):
        app.include_router(router, dependencies=guarded)
    app.include_router(write_routes.router, dependencies=guarded)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:  # asked for by browsers on any page, the JSON ones too
        return FileResponse(str(STATIC / "favicon.svg"), media_type="image/svg+xml")

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD)
    return app
