"""``key=value`` filter texts (``--filter``, the service's ``filter``) read as the type the stored field holds.

A field's type comes from its payload index, else from every value it holds (not a sample of
the first points), kept per collection until the store writes to it; a text that reads as two
of the field's types is refused as ambiguous.
"""

from __future__ import annotations

import numpy as np
import pytest

from percep_rag.config import Fingerprint
from percep_rag.store import FilterError, open_store, point_id
from percep_rag.store.filters import collection_value_type, parse_filter_texts

from .conftest import run_cli

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


def sparse_rating(store, n: int = 70, rated: int = 4) -> list[str]:
    """``n`` points; ``rating: 5`` on the ``rated`` last in id order (none among the first 64); their ids."""
    ids = sorted(point_id(f"image-{i}", "c") for i in range(n))
    payloads = [{"label": "x", **({"rating": 5} if i >= n - rated else {})} for i in range(n)]
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    store.create_collection("c", FP)
    store.upsert_arrays("c", ids, {"base": vectors, "aligned": vectors}, payloads)
    return ids[n - rated :]


def add_point(store, key: str, payload: dict) -> None:
    vector = np.ones((1, 4), dtype=np.float32)
    store.upsert_arrays("c", [point_id(key, "c")], {"base": vector, "aligned": vector}, [payload])


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_a_sparse_field_is_typed_from_every_value_not_the_first_64(kind, tmp_path):
    with open_store(":memory:" if kind == "memory" else f"edge:{tmp_path / 'store'}") as store:
        rated = sparse_rating(store)
        parsed = parse_filter_texts(["rating=5"], collection_value_type(store, "c"))
        assert parsed == {"rating": 5}
        assert sorted(p.id for p in store.iterate("c", parsed)) == rated


def test_field_types_are_kept_until_the_store_writes_then_read_again(tmp_path):
    with open_store(f"edge:{tmp_path / 'store'}") as store:
        sparse_rating(store)
        assert parse_filter_texts(["rating=5"], collection_value_type(store, "c")) == {"rating": 5}
        add_point(store, "text-rating", {"rating": "5"})  # now the field holds 5 and "5"
        with pytest.raises(FilterError, match="ambiguous: field 'rating' holds both int and str values"):
            parse_filter_texts(["rating=5"], collection_value_type(store, "c"))
        # A text only one of the types can read is not ambiguous.
        assert parse_filter_texts(["rating=five"], collection_value_type(store, "c")) == {"rating": "five"}
        store.delete("c", [point_id("text-rating", "c")])
        assert parse_filter_texts(["rating=5"], collection_value_type(store, "c")) == {"rating": 5}


def test_a_payload_index_decides_the_type_of_a_mixed_field(tmp_path):
    with open_store(f"edge:{tmp_path / 'store'}") as store:
        sparse_rating(store)
        add_point(store, "text-rating", {"rating": "5"})
        store.create_payload_index("c", "rating", "integer")
        assert parse_filter_texts(["rating=5"], collection_value_type(store, "c")) == {"rating": 5}


def test_bool_and_int_field_reads_true_as_bool_and_1_as_int(tmp_path):
    with open_store(":memory:") as store:
        store.create_collection("c", FP)
        for n, flag in enumerate([True, 1, True, 0]):
            add_point(store, f"p{n}", {"flag": flag})
        value_type = collection_value_type(store, "c")
        assert parse_filter_texts(["flag=true"], value_type) == {"flag": True}
        assert parse_filter_texts(["flag=1"], value_type) == {"flag": 1}


def test_cli_delete_filter_reads_a_sparse_int_field_as_int(tmp_path, capsys):
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        sparse_rating(store)
    code, out, err = run_cli(capsys, "delete", "-c", "c", "--store", spec, "--filter", "rating=5", "--yes")
    assert code == 0 and "deleted 4 points" in out and "66 left" in out, out + err


def test_cli_delete_filter_true_on_edge_deletes_the_true_points_not_the_1(tmp_path, capsys):
    """The reported case: ``flag`` is ``true, 1, true, 0`` in point-id order."""
    spec = f"edge:{tmp_path / 'store'}"
    flags = [True, 1, True, 0]
    ids = sorted(point_id(f"p{n}", "c") for n in range(4))
    with open_store(spec) as store:
        store.create_collection("c", FP)
        vectors = np.eye(4, dtype=np.float32)
        store.upsert_arrays("c", ids, {"base": vectors, "aligned": vectors}, [{"flag": f} for f in flags])
    code, out, err = run_cli(capsys, "delete", "-c", "c", "--store", spec, "--filter", "flag=true", "--yes")
    assert code == 0 and "deleted 2 points" in out, out + err
    with open_store(spec) as store:
        assert sorted(p.payload["flag"] for p in store.iterate("c")) == [0, 1]
        assert not any(isinstance(p.payload["flag"], bool) for p in store.iterate("c"))


def test_service_filter_reads_a_sparse_int_field_as_int(tmp_path):
    pytest.importorskip("fastapi", reason="the service needs the serve extra")
    from percep_rag.serve.inputs import read_filter

    with open_store(f"edge:{tmp_path / 'store'}") as store:
        sparse_rating(store)
        assert read_filter(store, "c", ["rating=5"]) == {"rating": 5}
