"""Run the app with uvicorn and say, next to each embedded store it holds, where it listens.

Once the socket listens, every Edge store the service holds gets an owner file
(:mod:`percep_rag.store.owner`) naming this process and its URL; it is removed when the
server stops (Ctrl-C, SIGTERM). A ``kill -9`` leaves it behind: readers find it stale.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percep_rag.store.owner import Owner, claim, release

#: Addresses that listen everywhere; a client on this machine reaches them on loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def connect_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host:port``.

    >>> connect_url("0.0.0.0", 8000), connect_url("::1", 8000)
    ('http://127.0.0.1:8000', 'http://[::1]:8000')
    """
    shown = _ANY_ADDRESS.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


def run_service(
    app: Any,
    *,
    host: str,
    port: int,
    log_level: str,
    store_roots: Sequence[Path],
    collections: Sequence[str],
    sources: dict[str, str],
    api_key: bool,
    watcher: Any | None = None,
) -> None:
    """Serve ``app`` until stopped, with an owner file in each of ``store_roots`` while it listens;
    ``watcher`` (a :class:`~percep_rag.serve.watch.SourceWatcher`) runs while it listens."""
    import uvicorn

    class OwnedServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            bound = self.servers[0].sockets[0].getsockname()[1]
            owner = Owner(
                pid=os.getpid(),
                url=connect_url(host, int(bound)),
                collections=list(collections),
                sources=dict(sources),
                api_key=api_key,
            )
            for root in store_roots:
                claim(root, owner)
            if watcher is not None:
                watcher.start()

        async def shutdown(self, sockets: Any = None) -> None:
            # Here, not after run(): uvicorn re-raises SIGTERM/SIGINT once it has stopped, which
            # ends the process before run() returns.
            for root in store_roots:
                release(root)
            if watcher is not None:
                watcher.stop()
            await super().shutdown(sockets=sockets)

    server = OwnedServer(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    try:
        server.run()
    finally:
        for root in store_roots:
            release(root)
