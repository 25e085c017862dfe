"""Which points of a collection a user means: by id, by filter, by source uri.

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
from pathlib import Path

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
        found |= {p.id for p in store.iterate(collection, {"uri": forms}, batch=1024)}
    return sorted(found)


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
