"""How a served catalog behaves: limits, the API key, batching of query embeddings.

>>> ServeSettings().max_upload_bytes
20971520
>>> ServeSettings(api_key="s3cret").api_key.get_secret_value()
's3cret'
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from percep_rag.io.decode import DEFAULT_MAX_PIXELS

#: Searches worked on at once by default: enough to fill a batch, few enough that the event loop
#: (``/healthz``, uploads) is not starved of the interpreter by request threads.
DEFAULT_CONCURRENCY = max(4, 2 * (os.cpu_count() or 1))
#: The header that carries ``--api-key``.
API_KEY_HEADER = "X-API-Key"


class ServeSettings(BaseModel):
    """Limits and switches of one service; every field has the default ``percep-rag serve`` uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = Field(default=None, description=f"Required in the {API_KEY_HEADER} header when set.")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="Largest accepted query image upload.")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1, description="Largest image (width x height) decoded.")
    max_k: int = Field(default=100, ge=1, le=10_000, description="Most neighbours one search may ask for.")
    batching: bool = Field(default=True, description="Group concurrent queries into one forward pass.")
    max_batch: int = Field(default=16, ge=1, le=1024, description="Most queries in one forward pass when batching.")
    max_concurrent: int = Field(
        default=DEFAULT_CONCURRENCY, ge=1, le=1024, description="Searches and classifications worked on at once."
    )
    embed_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest a search waits for its query's vectors before answering 503."
    )
    thumbnail_size: int = Field(default=256, ge=16, le=2048, description="Default longest side of a thumbnail.")
