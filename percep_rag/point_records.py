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

import os
from collections.abc import Mapping, Sequence
from typing import Any

#: Payload fields that belong to the point's content, not to any one record.
CONTENT_FIELDS = frozenset({"content_hash", "pixel_hash", "dataset", "records"})


def payload_records(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every record ``payload``'s point stands for, primary first (see the module docstring)."""
    records = payload.get("records")
    if records:
        return [dict(record) for record in records]
    return [{key: value for key, value in payload.items() if key not in CONTENT_FIELDS}]


#: The key of a records entry that holds its file's stat when it was read (see :func:`file_stat`).
STAT_KEY = "stat"
#: A file modified this recently when it is read gets no recorded stat: a second write within
#: the file system's timestamp granularity could leave size and mtime as they were (git's
#: "racily clean" entries; FAT keeps mtimes in 2 s steps). Such a file is read again next sync.
RACY_NS = 2_000_000_000
#: The largest integer a Qdrant payload holds; a stat value past it is stored as a string.
INT64_MAX = 2**63 - 1
#: The fields of a ``stat`` entry, in the order sync compares them.
STAT_FIELDS = ("size", "mtime_ns", "ino", "dev")


def file_stat(found: os.stat_result, *, read_at_ns: int | None = None) -> dict[str, Any] | None:
    """The ``stat`` entry of a file: ``{"size", "mtime_ns", "ino", "dev"}`` (values past int64,
    as some network file systems' inodes, as strings). With ``read_at_ns`` (when the file was
    read), ``None`` for a file modified less than :data:`RACY_NS` before (see there).

    >>> import tempfile, time
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "wb").write(b"12345")
    >>> sorted(file_stat(os.stat(path))), file_stat(os.stat(path))["size"]
    (['dev', 'ino', 'mtime_ns', 'size'], 5)
    >>> file_stat(os.stat(path), read_at_ns=time.time_ns()) is None  # just written: not recorded
    True
    """
    if read_at_ns is not None and read_at_ns - found.st_mtime_ns < RACY_NS:
        return None
    return dict(zip(STAT_FIELDS, stat_key(found), strict=True))


def stat_key(found: os.stat_result) -> tuple[Any, ...]:
    """The values of :func:`file_stat`'s entry in :data:`STAT_FIELDS` order, as sync compares them.

    >>> stat_key(os.stat(__file__))[0] == os.path.getsize(__file__)
    True
    """
    values = (found.st_size, found.st_mtime_ns, found.st_ino, found.st_dev)
    return tuple(value if 0 <= value <= INT64_MAX else str(value) for value in values)


def record_entry(fields: Mapping[str, Any], stat: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``records`` entry: a record's payload fields (:meth:`~percep_rag.datasets.records.ImageRecord.payload`)
    and, when known, its file's ``stat``. A record with a field of its own named ``stat`` (a manifest
    column) keeps it and records no stat: it is read on every sync.

    >>> record_entry({"record_id": "a", "uri": "/x/a.png"}, {"size": 5, "mtime_ns": 1, "ino": 2, "dev": 3})["stat"]
    {'size': 5, 'mtime_ns': 1, 'ino': 2, 'dev': 3}
    """
    entry = dict(fields)
    if stat is not None and STAT_KEY not in entry:
        entry[STAT_KEY] = dict(stat)
    return entry


def recorded_stat_key(entry: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The stat recorded in a ``records`` entry as :func:`stat_key` gives it, or ``None`` (none
    recorded, or a field of the record's own that happens to be called ``stat``).

    >>> recorded_stat_key({"uri": "a", "stat": "a manifest column"}) is None
    True
    >>> recorded_stat_key({"uri": "a", "stat": {"size": 5, "mtime_ns": 1, "ino": 2, "dev": 3}})
    (5, 1, 2, 3)
    """
    found = entry.get(STAT_KEY)
    if isinstance(found, Mapping) and set(found) == set(STAT_FIELDS):
        return tuple(found[key] for key in STAT_FIELDS)
    return None


def point_payload(entries: Sequence[Mapping[str, Any]], content: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a point standing for ``entries`` (at least one; sorted here by uri) with the
    ``content`` fields (``content_hash``, ``dataset``, ``pixel_hash``): the primary record's fields
    at the top level (without its stat), then the content fields, then ``records``.

    >>> point_payload([{"uri": "/b.png", "record_id": "b"}, {"uri": "/a.png", "record_id": "a", "label": "cat"}],
    ...               {"content_hash": "ab"})
    {'uri': '/a.png', 'record_id': 'a', 'label': 'cat', 'content_hash': 'ab', 'records': [{'uri': '/a.png', \
'record_id': 'a', 'label': 'cat'}, {'uri': '/b.png', 'record_id': 'b'}]}
    """
    if not entries:
        raise ValueError("a point stands for at least one record")
    ordered = sorted((dict(entry) for entry in entries), key=lambda entry: str(entry.get("uri", "")))
    top = {key: value for key, value in ordered[0].items() if key != STAT_KEY and key not in CONTENT_FIELDS}
    top.update((key, value) for key, value in content.items() if key in CONTENT_FIELDS and key != "records")
    top["records"] = ordered
    return top


def content_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The content fields of a stored payload (what relinking keeps).

    >>> content_fields({"uri": "/a.png", "content_hash": "ab", "pixel_hash": "cd", "records": []})
    {'content_hash': 'ab', 'pixel_hash': 'cd'}
    """
    return {key: value for key, value in payload.items() if key in CONTENT_FIELDS and key != "records"}
