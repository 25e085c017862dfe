"""Search hits and examples as JSON: every field a hit carries, plus the URL of its thumbnail.

>>> from percep_rag.store import ScoredPoint
>>> hit = ScoredPoint("0b5c4e8e-2d3c-5b1a-9d7e-1f2a3b4c5d6e", 0.5, {"uri": "/a.png", "label": "cat"})
>>> row = hit_json(hit, 1, "/collections/c/points/0b5c4e8e-2d3c-5b1a-9d7e-1f2a3b4c5d6e/image")
>>> row["rank"], row["label"], row["uri"], row["score"]
(1, 'cat', '/a.png', 0.5)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from percep_rag.point_records import payload_records

#: ScoredPoint fields that are given their own keys (or, for vectors, never sent).
_OWN_KEYS = frozenset({"id", "score", "payload", "vectors"})


class Hit(BaseModel):
    """One neighbour; any further field the retriever's hits carry is added as is."""

    model_config = ConfigDict(extra="allow")

    rank: int
    id: str
    score: float
    uri: str | None = None
    label: str | None = None
    split: str | None = None
    payload: dict[str, Any]
    image: str
    files: int = 1


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, arrays, tuples and sets made plain JSON (non-finite floats as ``None``)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value


def hit_json(hit: Any, rank: int, image_url: str) -> dict[str, Any]:
    """A :class:`~percep_rag.store.ScoredPoint` (or anything with its fields) as a :class:`Hit` dict."""
    payload = jsonable(dict(hit.payload))
    row: dict[str, Any] = {
        "rank": rank,
        "id": str(hit.id),
        "score": float(hit.score),
        "uri": _text(payload.get("uri")),
        "label": _text(payload.get("label")),
        "split": _text(payload.get("split")),
        "payload": payload,
        "image": image_url,
        "files": len(payload_records(payload)),  # the byte-identical files this image stands for
    }
    if dataclasses.is_dataclass(hit):
        for field in dataclasses.fields(hit):
            if field.name not in _OWN_KEYS:
                row[field.name] = jsonable(getattr(hit, field.name))
    return row


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
