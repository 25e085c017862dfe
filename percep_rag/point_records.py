"""The source records a point stands for.

A point is one image content in one collection (its id is the content hash's). Several
files can hold the same bytes (one photo uploaded for several products): the point keeps
every one of them in its payload's ``records`` list, each entry the fields
:meth:`~percep_rag.datasets.records.ImageRecord.payload` gives that record (``record_id``,
``uri``, ``label``, ...). The payload's top-level ``record_id`` / ``uri`` / ``label`` are the
primary record's (the first of ``records``), so filters and older readers keep working.
Points written before the list existed hold one record at the top level only.

>>> payload_records({"record_id": "a", "uri": "/x/a.png", "label": "cat", "content_hash": "ab"})
[{'record_id': 'a', 'uri': '/x/a.png', 'label': 'cat'}]
>>> len(payload_records({"uri": "/x/a.png", "records": [{"uri": "/x/a.png"}, {"uri": "/x/b.png"}]}))
2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Payload fields that belong to the point's content, not to any one record.
CONTENT_FIELDS = frozenset({"content_hash", "pixel_hash", "dataset", "records"})


def payload_records(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every record ``payload``'s point stands for, primary first (see the module docstring)."""
    records = payload.get("records")
    if records:
        return [dict(record) for record in records]
    return [{key: value for key, value in payload.items() if key not in CONTENT_FIELDS}]
