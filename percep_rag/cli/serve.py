"""``percep-rag serve``: the HTTP API and the visual-search page over a store's collections (uvicorn)."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.fewshot import ChosenVlmOptions
from percep_rag.cli.options import StoreOption, with_options
from percep_rag.cli.stored import (
    CollectionEmbedderOptions,
    existing_collection,
    open_existing_store,
    options_for_collection,
)

#: Read when --api-key is not given, so that the key need not appear in the process list.
API_KEY_VARIABLE = "PERCEP_RAG_API_KEY"

StoresOption = Annotated[
    list[str] | None,
    typer.Option(
        "--store",
        help=f"{StoreOption.__metadata__[0].help} Repeat to serve the collections of several stores.",
    ),
]
CollectionsOption = Annotated[
    list[str] | None,
    typer.Option("--collection", "-c", help="A collection to serve; repeatable (default: every collection)."),
]


SourcesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        help="COLLECTION=DIR (or DIR, serving one collection): the folder or manifest the collection is indexed "
        "from; POST /collections/COLLECTION/sync (and `percep-rag index --sync DIR`) sync it. Repeatable.",
    ),
]
UploadsOption = Annotated[
    Path | None,
    typer.Option(
        help="Keep images added through POST /collections/NAME/points in DIR/NAME/ (default: the Edge store's "
        ".uploads folder; a Qdrant server store needs it to accept uploads)."
    ),
]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


@dataclass(frozen=True)
class OptionalVlmOptions(ChosenVlmOptions):
    """``--vlm`` for ``/classify``: without it the service searches only."""


@with_options(OptionalVlmOptions)
@with_options(CollectionEmbedderOptions, without=("batch_size",))
def serve(
    store: StoresOption = None,
    collection: CollectionsOption = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(help=f"Require this key in the X-API-Key header (default: ${API_KEY_VARIABLE}, else none)."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, max=4096, help="Largest query image upload, MB.")] = 20.0,
    max_pixels: Annotated[
        int | None, typer.Option(min=1, help="Largest image decoded, width x height (default: the decoder's).")
    ] = None,
    batching: Annotated[bool, typer.Option(help="Group concurrent queries into one forward pass.")] = True,
    max_batch: Annotated[int, typer.Option(min=1, max=1024, help="Most queries per forward pass.")] = 16,
    max_concurrent: Annotated[
        int | None,
        typer.Option(min=1, max=1024, help="Searches worked on at once; others wait (default: 2 per CPU, at least 4)."),
    ] = None,
    log_level: Annotated[LogLevel, typer.Option(help="How much uvicorn logs.")] = "info",
    source: SourcesOption = None,
    uploads: UploadsOption = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Re-sync each --source when its files change (once they settle, ~2 s).")
    ] = False,
    *,
    embedder_options: CollectionEmbedderOptions,
    vlm_options: OptionalVlmOptions,
) -> None:
    """Serve search (and, with --vlm, classify) over HTTP, with a visual-search page at /.

    Each collection is searched with its own embedder, loaded once (the options default to the
    ones the collection was written with). Binds to 127.0.0.1 unless --host says otherwise.
    The API is documented at /docs. Stop with Ctrl-C.

    The served catalog changes through the service: POST images to /collections/NAME/points,
    delete with /collections/NAME/delete, sync from --source with /collections/NAME/sync.
    While it runs, `percep-rag index` and `delete` on its Edge store go through it.
    """
    from percep_rag.serve import create_app
    from percep_rag.serve.running import run_service

    limits: dict[str, Any] = {"max_pixels": max_pixels, "max_concurrent": max_concurrent}
    settings = _settings(api_key, max_upload_mb, batching, max_batch, limits)
    with ExitStack() as stack:
        served = _served_collections(stack, store or [None], collection, embedder_options)
        writes, roots = _writes(served, source or [], uploads)
        if watch and not writes.sources:
            fail("--watch re-syncs source folders: give --source COLLECTION=DIR", USAGE)
        vlm = _load_vlm(vlm_options, served, embedder_options) if vlm_options.vlm else None
        app = create_app(served, settings=settings, vlm=vlm, writes=writes)
        names = ", ".join(item.name for item in served)
        typer.echo(f"serving {names} on http://{host}:{port} (API docs at /docs)", err=True)
        run_service(
            app,
            host=host,
            port=port,
            log_level=log_level,
            store_roots=roots,
            collections=[item.name for item in served],
            sources=writes.sources,
            api_key=settings.api_key is not None,
            watcher=_watcher(app) if watch else None,
        )


def _watcher(app: Any) -> Any:
    """The ``--watch`` thread: each settled change of a source is synced, its report line logged."""
    from percep_rag.serve.watch import SourceWatcher
    from percep_rag.serve.writes import sync_collection

    state = app.state

    def sync(name: str) -> str:
        return str(sync_collection(state.catalog, state.writes, state.settings, name)["report"])

    sources = {name: Path(folder) for name, folder in state.writes.sources.items()}
    return SourceWatcher(sources, sync, report=lambda line: typer.echo(line, err=True))


def _writes(served: list[Any], sources: list[str], uploads: Path | None) -> tuple[Any, list[Path]]:
    """The collections' write targets (``--source``, ``--uploads``) and the Edge store folders held."""
    from percep_rag.serve import Writes, WriteTarget
    from percep_rag.store.edge import EdgeStore
    from percep_rag.uploads import default_uploads

    names = [item.name for item in served]
    given: dict[str, Path] = {}
    for text in sources:
        name, _, folder = text.rpartition("=")
        if not name:
            if len(names) != 1:
                fail(f"--source {text}: name the collection (--source NAME=DIR); serving {', '.join(names)}", USAGE)
            name = names[0]
        if name not in names:
            fail(f"--source {text}: {name!r} is not served here (serving {', '.join(names)})", USAGE)
        path = Path(folder).expanduser().resolve()
        if not path.exists():
            fail(f"--source {text}: {path} does not exist", USAGE)
        given[name] = path
    roots: list[Path] = []
    targets = {}
    for item in served:
        edge_root = Path(item.store.location) if isinstance(item.store, EdgeStore) else None
        if edge_root is not None and edge_root not in roots:
            roots.append(edge_root)
        kept = default_uploads(edge_root, item.name) if edge_root is not None else None
        if uploads is not None:
            kept = uploads.expanduser().resolve() / item.name
        targets[item.name] = WriteTarget(source=given.get(item.name), uploads=kept)
    return Writes(targets), roots


def _settings(api_key: str | None, max_upload_mb: float, batching: bool, max_batch: int, limits: dict[str, Any]):
    from percep_rag.serve import ServeSettings

    key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE) or None
    given = {name: value for name, value in limits.items() if value is not None}
    return ServeSettings(
        api_key=key, max_upload_bytes=int(max_upload_mb * 1024 * 1024), batching=batching, max_batch=max_batch, **given
    )


def _served_collections(
    stack: ExitStack, stores: list[str | None], wanted: list[str] | None, options: CollectionEmbedderOptions
) -> list[Any]:
    """Every wanted collection of ``stores``, each with its embedder (built once per distinct embedder)."""
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.serve import ServedCollection

    served: list[ServedCollection] = []
    embedders: dict[Any, AlignedEmbedder] = {}
    where: dict[str, str] = {}
    for text in stores:
        opened = stack.enter_context(open_existing_store(text))
        names = opened.list_collections()
        chosen = [name for name in names if name in wanted] if wanted else names
        for name in chosen:
            if name in where:
                fail(f"collection {name!r} is in both {where[name]} and {opened.location}: serve one of them", USAGE)
            where[name] = str(opened.location)
            resolved = options_for_collection(options, existing_collection(opened, name))
            if resolved not in embedders:
                embedders[resolved] = resolved.build()
            served.append(ServedCollection(name, opened, embedders[resolved]))
    missing = sorted(set(wanted or []) - set(where))
    if missing:
        fail(f"no collection {', '.join(map(repr, missing))} in {', '.join(str(s) for s in stores)}", USAGE)
    if not served:
        fail("nothing to serve: the store holds no collection (index images first)")
    return served


def _load_vlm(options: OptionalVlmOptions, served: list[Any], embedder_options: CollectionEmbedderOptions) -> Any:
    """The few-shot classifier behind ``/classify`` (the one place the service's VLM is loaded)."""
    return options.load(str(served[0].embedder.device), embedder_options.precision)
