"""percep-rag as a service: an HTTP API (FastAPI) and a visual-search page over stored collections.

``percep-rag serve`` runs it with uvicorn; in Python, :func:`create_app` builds the ASGI app
from :class:`ServedCollection` s (a store, a collection name, the embedder that wrote it).
Needs the ``serve`` extra (``pip install "percep-rag[serve]"``).
"""

from percep_rag.serve.app import create_app
from percep_rag.serve.batching import EmbeddingQueue, QueuedEmbedder
from percep_rag.serve.catalog import ServedCollection
from percep_rag.serve.errors import ApiError
from percep_rag.serve.settings import API_KEY_HEADER, ServeSettings
from percep_rag.serve.writes import Writes, WriteTarget

__all__ = [
    "API_KEY_HEADER",
    "ApiError",
    "EmbeddingQueue",
    "QueuedEmbedder",
    "ServeSettings",
    "ServedCollection",
    "WriteTarget",
    "Writes",
    "create_app",
]
