"""A filter matches the same points on Qdrant Edge as on qdrant-client's local mode.

qdrant-client's local mode (``:memory:`` and a path) evaluates filters in Python with Qdrant's
typing rules (``true`` is not ``1``, ``1`` is not ``1.0``, a range never matches a bool);
Edge runs Qdrant's engine through a native binding. Every payload type (bools, ints, floats,
strings, lists, fields of mixed types, nested objects, missing fields) is filtered with
every condition kind, with and without payload indexes, through count, search, scroll and
delete; the matched ids must be the same on every back end.
"""

from __future__ import annotations

import numpy as np
import pytest

from percep_rag.catalog import matching_ids
from percep_rag.config import Fingerprint
from percep_rag.store import StoreSpec, content_hash, open_store, point_id

FP = Fingerprint(
    backbone="tiny-vit-random",
    weights_digest="w0",
    random_weights=True,
    pooling="cls",
    normalization="l2",
    alignment="identity",
    alignment_digest="-",
    base_dim=4,
    dim=4,
)

#: One value per point and field (``...``: the point has no such field).
MIXED = [True, 1, True, 0, False, 1.0, "1", "true", [True, 2], [1, "a"], None, ..., 2, 0.5, "a", []]
PAYLOAD_COLUMNS = {
    "flag": MIXED,
    "sale": [i % 3 == 0 for i in range(len(MIXED))],
    "n": [i % 4 - 1 for i in range(len(MIXED))],
    "x": [i / 4 for i in range(len(MIXED))],
    "s": ["cat", "dog", "1", "true", "", "Cat", "cat", "dog"] * 2,
    "tags": [["a", "b"], ["b"], [], ["c", "a"]] * 4,
    "nums": [[1, 2], [3], [2, 5], []] * 4,
    "bools": [[True], [False, True], [False], []] * 4,
    "nested": [{"k": i % 3, "b": i % 2 == 0, "t": "xy"[i % 2]} for i in range(len(MIXED))],
}
N = len(MIXED)

FILTERS = [
    {"flag": True},
    {"flag": False},
    {"flag": 1},
    {"flag": 0},
    {"flag": 2},
    {"flag": "1"},
    {"flag": "true"},
    {"flag": "a"},
    {"flag": [0, 1]},
    {"flag": [1, 2]},
    {"flag": ["1", "a"]},
    {"flag": {"gte": 0.5}},
    {"flag": {"gt": 0, "lte": 1}},
    {"flag": {"not": True}},
    {"flag": {"not": 1}},
    {"flag": {"not": "1"}},
    {"flag": {"not": [0, 1]}},
    {"sale": True},
    {"sale": False},
    {"sale": {"not": True}},
    {"sale": 1},
    {"n": 0},
    {"n": -1},
    {"n": [0, 2]},
    {"n": {"not": 1}},
    {"n": {"gte": 0, "lt": 2}},
    {"n": True},
    {"x": {"gte": 1.0, "lte": 2.5}},
    {"x": {"gt": 0.2}},
    {"x": 1},
    {"s": "cat"},
    {"s": ""},
    {"s": ["dog", "true"]},
    {"s": {"not": "cat"}},
    {"s": True},
    {"s": 1},
    {"tags": "a"},
    {"tags": ["b", "c"]},
    {"tags": {"not": "a"}},
    {"nums": 2},
    {"nums": [3, 5]},
    {"nums": {"gte": 4}},
    {"nums": {"not": 2}},
    {"bools": True},
    {"bools": False},
    {"bools": {"not": False}},
    {"nested.k": 1},
    {"nested.b": True},
    {"nested.b": {"not": True}},
    {"nested.t": "x"},
    {"nested.k": {"lt": 1}},
    {"missing": True},
    {"missing": {"not": "x"}},
    {"flag": True, "sale": True},
    {"sale": True, "n": {"gte": 0}, "s": {"not": "dog"}},
]

#: Payload indexes of the indexed variant: each on a field whose values all have the index's type.
INDEXES = {"sale": "bool", "n": "integer", "x": "float", "s": "keyword", "tags": "keyword", "nums": "integer"}


def payloads() -> list[dict[str, object]]:
    rows = []
    for i in range(N):
        rows.append({key: values[i] for key, values in PAYLOAD_COLUMNS.items() if values[i] is not ...})
    return rows


def filled(kind: str, tmp_path, indexes: dict[str, str]):
    spec = StoreSpec(kind="memory") if kind == "memory" else StoreSpec(kind=kind, path=tmp_path / kind)
    store = open_store(spec)
    store.create_collection("c", FP, payload_indexes=indexes)
    ids = [point_id(content_hash(f"p{i}".encode()), "c") for i in range(N)]
    vectors = np.random.default_rng(0).normal(size=(N, 4)).astype(np.float32)
    store.upsert_arrays("c", ids, {"base": vectors, "aligned": vectors}, payloads())
    return store, ids


def matches(store, ids: list[str], flt: dict[str, object]) -> dict[str, object]:
    """What each operation finds for ``flt``, as point positions."""
    position = {pid: i for i, pid in enumerate(ids)}
    hits = store.query("c", np.ones(4), k=N, filter=flt, exact=True)
    return {
        "count": store.count("c", flt),
        "search": sorted(position[h.id] for h in hits),
        "scroll": sorted(position[p.id] for p in store.iterate("c", flt, batch=5)),
    }


@pytest.mark.parametrize("indexed", [False, True], ids=["unindexed", "indexed"])
def test_every_filter_matches_the_same_points_on_edge_as_on_qdrant_client(tmp_path, indexed):
    indexes = INDEXES if indexed else {}
    stores = {kind: filled(kind, tmp_path, indexes) for kind in ("edge", "memory", "local")}
    try:
        differences = []
        for flt in FILTERS:
            found = {kind: matches(store, ids, flt) for kind, (store, ids) in stores.items()}
            expected = found["memory"]
            assert expected["count"] == len(expected["search"]) == len(expected["scroll"]), flt
            for kind in ("edge", "local"):
                if found[kind] != expected:
                    differences.append(f"{flt}: {kind} {found[kind]} != memory {expected}")
        assert not differences, "\n".join(differences)
    finally:
        for store, _ in stores.values():
            store.close()


@pytest.mark.parametrize("flt", [{"flag": True}, {"flag": {"not": True}}, {"sale": True}, {"flag": 1}, {"s": "1"}])
def test_delete_by_filter_removes_the_same_points_on_edge_as_on_qdrant_client(tmp_path, flt):
    left = {}
    for kind in ("edge", "memory"):
        store, ids = filled(kind, tmp_path, {"sale": "bool"})
        with store:
            doomed = matching_ids(store, "c", filter=flt)
            assert doomed, f"{flt} must match something on {kind}"
            store.delete("c", doomed)
            left[kind] = sorted(ids.index(p.id) for p in store.iterate("c"))
    assert left["edge"] == left["memory"]


def test_bool_filter_on_edge_matches_true_not_one(tmp_path):
    """The reported case: ``flag`` is ``true, 1, true, 0, ...`` in point order (point 8 holds ``[true, 2]``)."""
    store, ids = filled("edge", tmp_path, {})
    with store:
        assert sorted(ids.index(p.id) for p in store.iterate("c", {"flag": True})) == [0, 2, 8]
        assert sorted(ids.index(p.id) for p in store.iterate("c", {"flag": 1})) == [1, 9]
        assert store.count("c", {"sale": True}) == 6
