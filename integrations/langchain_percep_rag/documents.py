"""LangChain ``Document`` s as percep-rag points: ids, payloads and the way back.

* **Ids.** Qdrant takes only UUIDs (or unsigned ints), LangChain any string, and to LangChain
  ids are opaque: two different strings are two documents. A document id that is a UUID in
  its canonical spelling (lower case, hyphenated: what ``str(uuid.UUID(...))`` gives, and what
  ``index_records`` points are) is the point id itself; any other string, other spellings of a
  UUID included (upper case, unhyphenated, ``{...}``, ``urn:uuid:``), maps to a fixed UUIDv5
  of the exact string, so adding the same id twice writes the same point (idempotent). The
  original id is kept in the payload (``document_id``) and comes back as ``Document.id``,
  exactly as given. (Before this rule every spelling of a UUID was its canonical point;
  :func:`legacy_point_id` finds such points, which the vector store still reads and deletes.)
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
>>> u = "1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f"
>>> len({point_id_for(s) for s in (u, u.upper(), u.replace("-", ""), "{" + u + "}", "urn:uuid:" + u)})
5
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document

from percep_rag.store import InvalidPointError, ScoredPoint, StoredPoint
from percep_rag.store.ids import normalize_id

__all__ = ["CONTENT_KEY", "ID_KEY", "document_payload", "legacy_point_id", "point_id_for", "to_document"]

#: Payload key of ``Document.page_content``.
CONTENT_KEY = "page_content"
#: Payload key of the id the document was added with.
ID_KEY = "document_id"

# Fixed once and never changed: every stored document id depends on it.
_DOCUMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://percep-rag.invalid/langchain-document-id")


def point_id_for(document_id: str) -> str:
    """The point id of ``document_id``: itself when it is a canonically spelt UUID, else a UUIDv5 of it.

    >>> point_id_for("1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f")
    '1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f'
    >>> point_id_for("1F0E7D1C-2B3A-4C5D-8E9F-0A1B2C3D4E5F") != point_id_for("1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f")
    True
    """
    if not isinstance(document_id, str) or not document_id:
        raise InvalidPointError(f"a document id is a non-empty string, got {document_id!r}")
    if _canonical_uuid(document_id) == document_id:
        return document_id
    return str(uuid.uuid5(_DOCUMENT_NAMESPACE, document_id))


def legacy_point_id(document_id: str) -> str | None:
    """Where earlier releases stored a document whose id is a UUID in another spelling (its canonical
    form), else ``None``. Such a point is this document's only if its ``document_id`` is the same string.

    >>> legacy_point_id("1F0E7D1C-2B3A-4C5D-8E9F-0A1B2C3D4E5F")
    '1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f'
    >>> legacy_point_id("1f0e7d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f") is None
    True
    """
    canonical = _canonical_uuid(document_id)
    return None if canonical is None or canonical == document_id else canonical


def _canonical_uuid(text: str) -> str | None:
    try:
        return normalize_id(text)
    except ValueError:
        return None


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
