"""The service's guards: the API key, and a body-size limit enforced before a form is parsed.

The key is compared in constant time. The size limit is checked on ``Content-Length`` when the
client sends one, and on the bytes actually received otherwise (chunked uploads), so a large
body is refused without being stored.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request

from percep_rag.serve.errors import ApiError, error_response
from percep_rag.serve.settings import API_KEY_HEADER

#: Room for the form's other fields and multipart headers around the image itself.
FORM_OVERHEAD = 64 * 1024


async def require_api_key(request: Request) -> None:
    """A dependency: with an API key configured, the request must carry it in ``X-API-Key`` (else 401)."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    given = request.headers.get(API_KEY_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        why = "missing" if not given else "wrong"
        raise ApiError(401, f"{why} API key: send it in the {API_KEY_HEADER} header")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 and never reaches the app."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        messages = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(scope, receive, send)
                return
            messages.append(message)
            more = message.get("more_body", False)

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        mb = (self.limit - FORM_OVERHEAD) / (1024 * 1024)
        response = error_response(413, f"request body too large: the limit is {mb:g} MB per upload")
        await response(scope, receive, send)
