"""Writes to a store that a running ``percep-rag serve`` holds: find that service and forward to it.

An Edge store admits one opener, so ``index`` and ``delete`` on a served collection cannot
write it themselves. :func:`served_owner` reads the store's owner file
(:mod:`percep_rag.store.owner`); when a live service serves the collection, the command sends
its request to that service (:func:`post`) and prints its answer as it would print its own.
What cannot be forwarded fails in one line saying which service holds the store and how to
write through it; a store locked by anything else fails in one line too (:func:`no_lock_errors`),
never with the engine's WAL message.

>>> from percep_rag.store import StoreSpec
>>> served_owner(StoreSpec(kind="memory"), "c") is None
True
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from percep_rag.cli.errors import fail
from percep_rag.store.owner import Owner, find_owner

#: The service's key, read from the environment (as ``percep-rag serve`` reads it).
API_KEY_VARIABLE = "PERCEP_RAG_API_KEY"
#: A sync of a large folder takes a while; the service answers when it is done.
FORWARD_TIMEOUT_S = 24 * 3600.0


def served_owner(spec: Any, collection: str) -> Owner | None:
    """The live service that serves ``collection`` of the Edge store ``spec``, else ``None``.

    A service whose process runs but does not answer is an error (one line): writing around
    it would meet its lock.
    """
    if getattr(spec, "kind", None) != "edge" or spec.path is None:
        return None
    owner = find_owner(spec.path.expanduser())
    if owner is None or collection not in owner.collections:
        return None
    if not owner.answering:
        fail(
            f"collection {collection!r} in {spec.path} is held by {owner.describe()}, which does not answer "
            "/healthz: wait until it listens, or stop it"
        )
    return owner


def post(owner: Owner, path: str, fields: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """POST ``fields`` (a url-encoded form) to ``owner``'s ``path``; its JSON answer.

    A refusal is one line with the service's own detail and status.
    """
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    key = os.environ.get(API_KEY_VARIABLE)
    if owner.api_key and not key:
        fail(f"{owner.describe()} holds this store and wants its API key: set ${API_KEY_VARIABLE}")
    if key:
        headers["X-API-Key"] = key
    body = urllib.parse.urlencode(list(fields)).encode()
    request = urllib.request.Request(owner.url.rstrip("/") + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT_S) as answer:
            return json.loads(answer.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read().decode("utf-8")).get("detail") or error.reason
        except ValueError:
            detail = error.reason
        fail(f"{owner.describe()} refused: {detail} (HTTP {error.code})")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        fail(f"{owner.describe()} holds this store but cannot be reached: {reason}")


def collection_path(collection: str, action: str) -> str:
    """``/collections/<collection>/<action>`` with the name quoted."""
    return f"/collections/{urllib.parse.quote(collection, safe='')}/{action}"


@contextmanager
def no_lock_errors(spec: Any, collection: str) -> Iterator[None]:
    """Turn a store held by another process into one line naming the likely owner (never the WAL text)."""
    from percep_rag.store.errors import StoreLockedError

    try:
        yield
    except StoreLockedError:
        owner = None if spec.path is None else find_owner(spec.path.expanduser(), probe=False)
        holder = owner.describe() if owner is not None else "another process (a `percep-rag serve`, or an index run)"
        fail(
            f"collection {collection!r} in {spec.path} is held by {holder}: write through the service "
            "(index and delete go through a `percep-rag serve` that holds the store), or stop it and retry"
        )
