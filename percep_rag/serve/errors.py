"""Every failure of the service as a JSON body with a documented status; nothing answers a bare 500.

The body is always ``{"error": <code>, "detail": <one line naming the problem>}``:

======  =====================  ===========================================================
status  ``error``              when
======  =====================  ===========================================================
400     ``bad_image``          the upload is empty, truncated or corrupt; an unreadable form
401     ``unauthorized``       ``--api-key`` is set and the ``X-API-Key`` header is missing or wrong
404     ``not_found``          unknown collection, point, or a point without a servable image
413     ``too_large``          the upload exceeds the size limit, or the image the pixel limit
415     ``unsupported_media``  the upload is not an image in a supported format, or the request
                               is not a form (``multipart/form-data`` or url-encoded; search: or JSON)
422     ``invalid_request``    a bad parameter: ``k``, ``space``, a filter (syntax, unknown field),
                               a text query (empty, not a string, too long, or no text tower)
501     ``no_vlm``             ``classify`` on a service started without ``--vlm``
502     ``store_rejected``     the store refused a request
503     ``store_unavailable``  the collection's store cannot be reached (other collections still serve)
503     ``not_embedded``       the query was not embedded: the service is not running, or it timed out
======  =====================  ===========================================================

>>> status_for_decode_error(ImageDecodeError("upload", "no image data (0 bytes)"))
(400, 'bad_image')
>>> status_for_decode_error(ImageDecodeError("upload", "image is 9x9 = 81 pixels, more than max_pixels=8"))
(413, 'too_large')
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from percep_rag.errors import ConfigError, FingerprintMismatchError, ImageDecodeError, PercepRagError
from percep_rag.serve.batching import EmbeddingUnavailableError
from percep_rag.store.errors import (
    CollectionNotFoundError,
    FilterError,
    StoreError,
    StoreRequestError,
)

logger = logging.getLogger("percep_rag.serve")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media",
    422: "invalid_request",
    501: "no_vlm",
    502: "store_rejected",
    503: "store_unavailable",
}


class ApiError(Exception):
    """An answer other than success: ``status``, a short ``code`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str, code: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _CODES.get(status, "error")


def error_response(status: int, detail: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The JSON body every error has (see the module docstring)."""
    return JSONResponse({"error": code or _CODES.get(status, "error"), "detail": detail}, status, headers=headers)


def status_for_decode_error(error: ImageDecodeError) -> tuple[int, str]:
    """The status and code of an upload the decoder refused: too many pixels 413, not an image 415, else 400."""
    reason = error.reason
    if "max_pixels" in reason or "decompression bomb" in reason:
        return 413, "too_large"
    if reason.startswith("not an image") or "cannot be read by this installation" in reason:
        return 415, "unsupported_media"
    return 400, "bad_image"


def api_error_for(error: BaseException) -> ApiError:
    """The :class:`ApiError` a library exception stands for (an unexpected one: 500, logged)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ImageDecodeError):
        status, code = status_for_decode_error(error)
        return ApiError(status, str(error), code)
    if isinstance(error, CollectionNotFoundError):
        return ApiError(404, str(error))
    if isinstance(error, FilterError | ConfigError | FingerprintMismatchError):
        return ApiError(422, str(error))
    if isinstance(error, StoreRequestError):
        return ApiError(502, str(error))
    if isinstance(error, EmbeddingUnavailableError):
        return ApiError(503, str(error), "not_embedded")
    if isinstance(error, StoreError | ConnectionError | TimeoutError):
        return ApiError(503, str(error))
    if isinstance(error, PercepRagError):
        return ApiError(422, str(error))
    logger.exception("internal error", exc_info=error)
    return ApiError(500, f"internal error: {type(error).__name__}", "internal")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception with the JSON body above."""

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        found = api_error_for(error)
        return error_response(found.status, found.detail, found.code)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        detail = error.detail if isinstance(error.detail, str) else str(error.detail)
        return error_response(error.status_code, detail, headers=getattr(error, "headers", None))

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        parts = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            if "UploadFile" in message:
                message = "send the image as a file upload (multipart/form-data)"
            parts.append(f"{where}: {message}")
        return error_response(422, "; ".join(parts) or "invalid request")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(PercepRagError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_api_error)
