"""What a collection holds, as plain data: its payload fields with their types and the ``info`` record.

Read by ``percep-rag info`` / ``collections`` and by the HTTP service (``GET /collections/{name}``),
so both describe a collection with the same fields.

>>> from percep_rag.store import open_store
>>> with open_store(":memory:") as store:
...     payload_fields(store, "missing")
Traceback (most recent call last):
...
percep_rag.store.errors.CollectionNotFoundError: ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from percep_rag.store.base import VectorStore

#: How many payloads are read to list a collection's fields (``info``, the unknown-field message).
FIELD_SAMPLE = 10_000


def payload_fields(store: VectorStore, collection: str, *, sample: int | None = FIELD_SAMPLE) -> dict[str, str]:
    """Field -> the type names of its stored values, over the first ``sample`` points (all when ``None``)."""
    found: dict[str, set[str]] = {}
    for seen, point in enumerate(store.iterate(collection)):
        if sample is not None and seen >= sample:
            break
        for key, value in point.payload.items():
            found.setdefault(key, set()).add(_type_name(value))
    return {key: "|".join(sorted(kinds)) for key, kinds in sorted(found.items())}


def _type_name(value: object) -> str:
    if isinstance(value, list):
        inner = sorted({_type_name(item) for item in value}) or ["empty"]
        return f"list[{'|'.join(inner)}]"
    return {bool: "bool", int: "int", float: "float", str: "str", dict: "object"}.get(type(value), type(value).__name__)


def unknown_filter_fields(filter: Mapping[str, object], fields: Mapping[str, str]) -> list[str]:
    """The keys of ``filter`` whose top-level field is not among ``fields`` (see :func:`payload_fields`).

    >>> unknown_filter_fields({"label": "cat", "colour.hue": 3}, {"label": "str"})
    ['colour.hue']
    """
    return [key for key in filter if key.split(".")[0] not in fields]


def describe_collection(store: VectorStore, collection: str) -> dict[str, Any]:
    """The ``info`` fields of ``collection``: points, fingerprint, vectors, payload fields and indexes, options."""
    record = store.collection_info(collection)
    return {
        "name": collection,
        "store": str(store.location),
        "points": store.count(collection),
        "fingerprint": record.fingerprint.model_dump(),
        "vectors": dict(record.vectors),
        "payload_fields": payload_fields(store, collection),
        "payload_indexes": dict(record.payload_indexes),
        "options": json.loads(record.options.model_dump_json()),
        "created_at": record.created_at,
        "library_version": record.library_version,
        "copy_thresholds": {space: t.model_dump() for space, t in record.copy_thresholds.items()},
    }
