"""Which points of a collection a user means: by id, by filter, by source uri; and removing records.

A point is one image and lists every file holding it (:mod:`percep_rag.point_records`): deleting
by uri removes that file's record from its point (:func:`plan_record_removal`), and the point
itself only goes with its last record.

>>> import numpy as np
>>> from percep_rag.store import open_store, point_id
>>> from percep_rag.config import Fingerprint
>>> fp = Fingerprint(backbone="t", weights_digest="0", random_weights=True, pooling="cls",
...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=2, dim=2)
>>> store = open_store(":memory:")
>>> _ = store.ensure_collection("c", fp)
>>> ids = [point_id(str(i), "c") for i in range(3)]
>>> v = np.ones((3, 2))
>>> _ = store.upsert_arrays("c", ids, {"base": v, "aligned": v},
...     [{"uri": f"/{i}.png", "label": "ab"[i % 2]} for i in range(3)])
>>> len(matching_ids(store, "c", filter={"label": "a"})), matching_ids(store, "c", uris=[["/1.png"]]) == [ids[1]]
(2, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from percep_rag.point_records import content_fields, payload_records, point_payload
from percep_rag.store import VectorStore


def matching_ids(
    store: VectorStore,
    collection: str,
    *,
    ids: Sequence[str] | None = None,
    filter: Mapping[str, object] | None = None,
    uris: Sequence[Sequence[str]] | None = None,
) -> list[str]:
    """Stored point ids among ``ids``, matching ``filter``, or whose payload ``uri`` is one of a
    group of ``uris`` (each group: the forms one source may be stored under), sorted."""
    found: set[str] = set()
    if ids:
        found |= store.existing_ids(collection, ids)
    if filter:
        found |= {p.id for p in store.iterate(collection, filter, batch=1024)}
    forms = sorted({form for group in uris or [] for form in group})
    if forms:
        found |= {p.id for p in _holding(store, collection, forms)}
    return sorted(found)


def _holding(store: VectorStore, collection: str, forms: Sequence[str]) -> list[Any]:
    """The points with a record of one of the uris ``forms`` (in ``records``, or at the top
    level for points written before the list existed)."""
    points = {p.id: p for p in store.iterate(collection, {"records[].uri": list(forms)}, batch=1024)}
    points.update((p.id, p) for p in store.iterate(collection, {"uri": list(forms)}, batch=1024))
    return list(points.values())


@dataclass
class RecordRemoval:
    """What removing the records of some uris does: the points to ``delete`` (their last record
    goes), the points to rewrite (``relink``: id -> the payload left), the records removed, and
    how many of those come off points that are kept (``from_kept``)."""

    delete: list[str] = field(default_factory=list)
    relink: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    from_kept: int = 0

    @property
    def points(self) -> list[str]:
        """Every point touched, sorted."""
        return sorted([*self.delete, *self.relink])


def plan_record_removal(store: VectorStore, collection: str, uris: Sequence[Sequence[str]]) -> RecordRemoval:
    """Remove the records of ``uris`` (each a group of forms of one source, see :func:`uri_forms`):
    a point keeps its other records, and is deleted when none is left.

    >>> import numpy as np
    >>> from percep_rag.store import open_store, point_id
    >>> from percep_rag.config import Fingerprint
    >>> fp = Fingerprint(backbone="t", weights_digest="0", random_weights=True, pooling="cls",
    ...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=2, dim=2)
    >>> store = open_store(":memory:")
    >>> _ = store.ensure_collection("c", fp)
    >>> payload = point_payload([{"uri": "/a.png"}, {"uri": "/b.png"}], {"content_hash": "ab"})
    >>> _ = store.upsert_arrays("c", [point_id("ab", "c")], {"base": np.ones((1, 2)), "aligned": np.ones((1, 2))},
    ...     [payload])
    >>> removal = plan_record_removal(store, "c", [["/a.png"]])
    >>> removal.delete, [e["uri"] for e in removal.relink[point_id("ab", "c")]["records"]], removal.records
    ([], ['/b.png'], 1)
    >>> plan_record_removal(store, "c", [["/a.png"], ["/b.png"]]).delete == [point_id("ab", "c")]
    True
    """
    forms = sorted({form for group in uris for form in group})
    removal = RecordRemoval()
    if not forms:
        return removal
    wanted = set(forms)
    for point in _holding(store, collection, forms):
        entries = payload_records(point.payload)
        left = [entry for entry in entries if str(entry.get("uri", "")) not in wanted]
        removal.records += len(entries) - len(left)
        if not left:
            removal.delete.append(point.id)
        elif len(left) < len(entries):
            removal.relink[point.id] = point_payload(left, content_fields(point.payload))
            removal.from_kept += len(entries) - len(left)
    removal.delete.sort()
    return removal


def apply_record_removal(store: VectorStore, collection: str, removal: RecordRemoval) -> None:
    """Rewrite the points that keep records (vectors unchanged), then delete the others."""
    from percep_rag.indexing import rewrite_payloads

    rewrite_payloads(store, collection, removal.relink)
    if removal.delete:
        store.delete(collection, removal.delete)


def uri_forms(uri: str) -> list[str]:
    """The forms a source path may be stored under as a payload ``uri``: as given, and absolute.

    >>> uri_forms("s3://bucket/a.png")
    ['s3://bucket/a.png']
    >>> uri_forms("/x/a.png")
    ['/x/a.png']
    """
    if "://" in uri:
        return [uri]
    return sorted({uri, str(Path(uri).expanduser().resolve())})
