"""LangChain ``Document`` s as percep-rag points: ids, payloads and the way back.

* **Ids.** Qdrant takes only UUIDs (or unsigned ints), LangChain any string. A document id
  that is a UUID is used as it is; any other string maps to a fixed UUIDv5 of it, so adding
  the same id twice writes the same point (idempotent). The original id is kept in the
  payload (``document_id``) and comes back as ``Document.id``.
* **Payload.** The metadata IS the payload (so filters read ``{"label": "cat"}``, as for
  collections filled by ``index_records``), plus ``page_content`` and ``document_id``. Those
  two keys are reserved: metadata using them is refused.
* **Back.** A point becomes ``Document(id=document_id or point id, page_content=page_content
  or, for a point written by ``index_records``, its ``uri``, metadata=the rest)``.

>>> payload = document_payload("photo.png", {"label": "cat"}, "42")
>>> payload == {"label": "cat", "page_content": "photo.png", "document_id": "42"}
True
>>> from percep_rag.store import StoredPoint
>>> document = to_document(StoredPoint(point_id_for("42"), payload))
>>> document.id, document.page_content, document.metadata
('42', 'photo.png', {'label': 'cat'})
>>> point_id_for("42") == point_id_for("42") != point_id_for("43")
True
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document

from percep_rag.store import InvalidPointError, ScoredPoint, StoredPoint
from percep_rag.store.ids import normalize_id

__all__ = ["CONTENT_KEY", "ID_KEY", "document_payload", "point_id_for", "to_document"]

#: Payload key of ``Document.page_content``.
CONTENT_KEY = "page_content"
#: Payload key of the id the document was added with.
ID_KEY = "document_id"

# Fixed once and never changed: every stored document id depends on it.
_DOCUMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://percep-rag.invalid/langchain-document-id")


def point_id_for(document_id: str) -> str:
    """The point id of ``document_id``: itself when it is a UUID, else a UUIDv5 of it.

    >>> point_id_for("1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f")
    '1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f'
    """
    if not isinstance(document_id, str) or not document_id:
        raise InvalidPointError(f"a document id is a non-empty string, got {document_id!r}")
    try:
        return normalize_id(document_id)
    except ValueError:
        return str(uuid.uuid5(_DOCUMENT_NAMESPACE, document_id))


def document_payload(content: str, metadata: Mapping[str, Any] | None, document_id: str) -> dict[str, Any]:
    """The payload stored for one document: its metadata, content and id."""
    metadata = dict(metadata or {})
    for key in (CONTENT_KEY, ID_KEY):
        if key in metadata:
            raise InvalidPointError(f"metadata key {key!r} is reserved for the document's own {key.replace('_', ' ')}")
    return {**metadata, CONTENT_KEY: content, ID_KEY: document_id}


def to_document(point: StoredPoint | ScoredPoint) -> Document:
    """The ``Document`` a stored point holds (see the module docstring)."""
    payload = dict(point.payload)
    content = payload.pop(CONTENT_KEY, None)
    document_id = payload.pop(ID_KEY, None)
    if content is None:
        content = payload.get("uri", "")  # a point written by index_records is its image
    return Document(id=document_id or point.id, page_content=str(content), metadata=payload)
