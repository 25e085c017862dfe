"""``GET /collections/{name}/points/{point}/image``: a thumbnail of an indexed image, and nothing else.

The file read is the one the point's payload names, checked to still be the indexed image
(see :func:`~percep_rag.serve.inputs.indexed_image_bytes`): no request names a path.
"""

from __future__ import annotations

import io

from fastapi import APIRouter, Query, Request, Response

from percep_rag.errors import ImageDecodeError
from percep_rag.io.decode import decode_image_bytes
from percep_rag.serve.errors import ApiError
from percep_rag.serve.inputs import indexed_image_bytes

router = APIRouter(tags=["images"])

#: The thumbnail never changes while its point keeps its id (ids are content hashes).
CACHE_CONTROL = "private, max-age=86400"


@router.get(
    "/collections/{name}/points/{point}/image",
    name="point_image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}},
    summary="A JPEG thumbnail of a stored point's image",
)
def point_image(
    request: Request,
    name: str,
    point: str,
    size: int | None = Query(None, ge=16, le=2048, description="Longest side in pixels (default: the service's)."),
) -> Response:
    """The indexed image of ``point``, scaled to fit ``size`` x ``size`` (never enlarged)."""
    settings = request.app.state.settings
    side = size or settings.thumbnail_size
    store = request.app.state.catalog.store(name)
    canonical, data = indexed_image_bytes(store, name, point)
    etag = f'"{canonical}-{side}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    try:
        image = decode_image_bytes(data, source_name=f"point {canonical}", max_pixels=settings.max_pixels)
    except ImageDecodeError as error:
        raise ApiError(404, f"the image of point {canonical} cannot be decoded: {error.reason}") from None
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return Response(buffer.getvalue(), media_type="image/jpeg", headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
