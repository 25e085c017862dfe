"""Deterministic point ids.

A point's id is a UUIDv5 of the image's content hash and the collection name, so
indexing the same bytes into the same collection twice writes the same point
(idempotent re-indexing), while the same image in two collections gets two ids.

Example::

    >>> h = content_hash(b"hello")
    >>> h[:12]
    '2cf24dba5fb0'
    >>> point_id(h, "shoes") == point_id(h, "shoes")
    True
    >>> point_id(h, "shoes") != point_id(h, "cars")
    True
"""

from __future__ import annotations

import hashlib
import uuid

# Fixed once and never changed: every stored id depends on it.
PERCEP_RAG_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://percep-rag.invalid/point-id")

# The name of the reserved point has no "/" in it, so it can never equal a point_id().
META_POINT_ID = str(uuid.uuid5(PERCEP_RAG_NAMESPACE, "__percep_rag_meta__"))


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of ``data``: the identity of an image's bytes.

    >>> content_hash(b"")[:8]
    'e3b0c442'
    """
    return hashlib.sha256(data).hexdigest()


def point_id(content_hash: str, collection: str) -> str:
    """UUIDv5 (canonical string) of ``content_hash`` within ``collection``.

    >>> len(point_id("ab" * 32, "c"))
    36
    """
    if not content_hash:
        raise ValueError("content_hash must not be empty")
    if not collection:
        raise ValueError("collection must not be empty")
    return str(uuid.uuid5(PERCEP_RAG_NAMESPACE, f"{collection}/{content_hash}"))


def normalize_id(value: object) -> str:
    """Canonical lower-case hyphenated form of a UUID given as ``str`` or ``uuid.UUID``.

    Qdrant only accepts UUIDs (or unsigned ints, which percep-rag does not use) and
    returns them canonicalised, so ids are normalised on the way in to compare equal
    on the way out.

    >>> normalize_id("A1D23F32-1B22-4CF3-B607-9968E1E128F3")
    'a1d23f32-1b22-4cf3-b607-9968e1e128f3'
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"point id {value!r} is not a UUID; use point_id() to make one") from None
