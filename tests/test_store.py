"""The store layer, run against every back end available without a server.

Edge (Qdrant Edge on disk), qdrant-client in memory and qdrant-client local path share
one suite; back-end specific behaviour (HNSW, locks, kill -9 durability, unreachable
servers, retries) has its own tests below.
"""

from __future__ import annotations

import socket
import textwrap
import time

import numpy as np
import pytest

from percep_rag.config import Fingerprint
from percep_rag.errors import ConfigError, DimensionMismatchError, FingerprintMismatchError
from percep_rag.store import (
    META_POINT_ID,
    CollectionExistsError,
    CollectionNotFoundError,
    CollectionOptions,
    FilterError,
    InvalidPointError,
    InvalidVectorError,
    RetryPolicy,
    StoreLockedError,
    StorePoint,
    StoreRequestError,
    StoreSpec,
    StoreUnavailableError,
    UnknownVectorNameError,
    VectorStore,
    content_hash,
    open_store,
    point_id,
)
from percep_rag.store.filters import META_KEY, parse_filter

from .conftest import kill_after_acks, start_script

FP = Fingerprint(
    backbone="tiny-vit-random",
    weights_digest="w0",
    random_weights=True,
    pooling="cls",
    normalization="l2",
    alignment="identity",
    alignment_digest="-",
    base_dim=8,
    dim=4,
)
LABELS = ("cat", "dog", "bird")
SPLITS = ("train", "val", "test", "train")
N = 30


def make_points(n: int = N, *, collection: str = "imgs", seed: int = 0, start: int = 0) -> list[StorePoint]:
    """``n`` points with random 8-d base / 4-d aligned vectors and a small payload."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        out.append(
            StorePoint(
                id=point_id(content_hash(f"image-{i}".encode()), collection),
                vectors={"base": rng.normal(size=8).astype(np.float32), "aligned": rng.normal(size=4)},
                payload={"label": LABELS[i % 3], "split": SPLITS[i % 4], "count": i % 5, "i": i},
            )
        )
    return out


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(params=["edge", "memory", "local"])
def spec(request, tmp_path) -> StoreSpec:
    if request.param == "memory":
        return StoreSpec(kind="memory")
    return StoreSpec(kind=request.param, path=tmp_path / "store")


@pytest.fixture
def store(spec):
    with open_store(spec) as s:
        yield s


@pytest.fixture
def filled(store) -> tuple[VectorStore, list[StorePoint]]:
    store.create_collection("imgs", FP, payload_indexes={"label": "keyword", "count": "integer"})
    points = make_points()
    assert store.upsert("imgs", points) == N
    return store, points


# --------------------------------------------------------------------------- collections


def test_create_records_fingerprint(store):
    info = store.create_collection("imgs", FP, payload_indexes={"label": "keyword"})
    assert info.vectors == {"base": 8, "aligned": 4}
    assert store.get_fingerprint("imgs") == FP
    assert store.list_collections() == ["imgs"]
    assert store.has_collection("imgs") and not store.has_collection("other")
    assert store.count("imgs") == 0
    with pytest.raises(CollectionExistsError):
        store.create_collection("imgs", FP)
    again = store.ensure_collection("imgs", FP, payload_indexes={"label": "keyword", "split": "keyword"})
    assert again.payload_indexes == {"label": "keyword", "split": "keyword"}


def test_ensure_refuses_a_different_embedder(store):
    store.ensure_collection("imgs", FP)
    other = FP.model_copy(update={"backbone": "other-backbone", "alignment_digest": "x"})
    with pytest.raises(FingerprintMismatchError) as err:
        store.ensure_collection("imgs", other)
    message = str(err.value)
    assert "backbone: tiny-vit-random != other-backbone" in message
    assert "alignment_digest" in message and "imgs" in message


@pytest.mark.parametrize("kind", ["edge", "local"])  # on-disk back ends: memory keeps nothing to reopen
def test_fingerprint_survives_reopen_and_is_checked(kind, tmp_path):
    spec = StoreSpec(kind=kind, path=tmp_path / kind)
    with open_store(spec) as s:
        s.ensure_collection("imgs", FP)
        s.upsert("imgs", make_points(10))
    with open_store(spec) as s:
        assert s.get_fingerprint("imgs") == FP
        assert s.count("imgs") == 10
        with pytest.raises(FingerprintMismatchError, match="dim: 4 != 6"):
            s.ensure_collection("imgs", FP.model_copy(update={"dim": 6}))


def test_vectors_must_agree_with_fingerprint(store):
    with pytest.raises(DimensionMismatchError, match="aligned"):
        store.create_collection("imgs", FP, vectors={"base": 8, "aligned": 5})
    store.create_collection("only-aligned", FP, vectors={"aligned": 4})
    assert store.collection_info("only-aligned").vectors == {"aligned": 4}


def test_bad_collection_names_and_missing_collections(store):
    with pytest.raises(ConfigError):
        store.create_collection("../escape", FP)
    with pytest.raises(CollectionNotFoundError):
        store.count("nope")
    with pytest.raises(CollectionNotFoundError):
        store.delete_collection("nope")
    assert store.delete_collection("nope", missing_ok=True) is False


def test_delete_collection(filled):
    store, _ = filled
    assert store.delete_collection("imgs") is True
    assert store.list_collections() == []
    store.create_collection("imgs", FP)  # the name is free again
    assert store.count("imgs") == 0


def test_closed_store_refuses_work(spec):
    s = open_store(spec)
    s.close()
    s.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        s.list_collections()


# --------------------------------------------------------------------------- writes


def test_upsert_is_idempotent_by_id(filled):
    store, points = filled
    changed = [StorePoint(p.id, p.vectors, {**p.payload, "label": "zebra"}) for p in points[:10]]
    store.upsert("imgs", changed)
    store.upsert("imgs", points[10:])
    assert store.count("imgs") == N
    assert store.count("imgs", {"label": "zebra"}) == 10


def test_upsert_arrays_and_delete(store):
    store.create_collection("imgs", FP)
    pts = make_points(12)
    ids = [p.id for p in pts]
    n = store.upsert_arrays(
        "imgs",
        ids,
        {"base": np.stack([p.vectors["base"] for p in pts]), "aligned": np.stack([p.vectors["aligned"] for p in pts])},
        [p.payload for p in pts],
    )
    assert n == 12 and store.count("imgs") == 12
    store.delete("imgs", ids[:5])
    assert store.count("imgs") == 7
    assert store.existing_ids("imgs", ids) == set(ids[5:])


def test_invalid_points_are_refused(filled):
    store, points = filled
    p = points[0]
    with pytest.raises(DimensionMismatchError, match="aligned"):
        store.upsert("imgs", [StorePoint(p.id, {"base": p.vectors["base"], "aligned": np.ones(5)})])
    with pytest.raises(UnknownVectorNameError):
        store.upsert("imgs", [StorePoint(p.id, {**p.vectors, "extra": np.ones(4)})])
    with pytest.raises(InvalidPointError, match="missing"):
        store.upsert("imgs", [StorePoint(p.id, {"base": p.vectors["base"]})])
    with pytest.raises(InvalidPointError, match="UUID"):
        store.upsert("imgs", [StorePoint("1", p.vectors)])
    with pytest.raises(InvalidVectorError):
        store.upsert("imgs", [StorePoint(p.id, {"base": np.zeros(8), "aligned": p.vectors["aligned"]})])
    with pytest.raises(InvalidVectorError):
        store.upsert("imgs", [StorePoint(p.id, {"base": np.full(8, np.nan), "aligned": p.vectors["aligned"]})])
    assert store.count("imgs") == N  # nothing half-written


def test_payloads_are_made_portable(filled):
    store, points = filled
    p = points[0]
    payload = {"n": np.int64(3), "f": np.float32(0.5), "v": np.arange(3), "nested": {"t": (1, "a")}}
    store.upsert("imgs", [StorePoint(p.id, p.vectors, payload)])
    assert store.retrieve("imgs", [p.id])[0].payload == {"n": 3, "f": 0.5, "v": [0, 1, 2], "nested": {"t": [1, "a"]}}
    with pytest.raises(InvalidPointError, match="payload.bad"):
        store.upsert("imgs", [StorePoint(p.id, p.vectors, {"bad": {1, 2}})])


# --------------------------------------------------------------------------- reads


def test_both_named_vectors_are_queryable(filled):
    store, points = filled
    target = points[7]
    for using in ("base", "aligned"):
        hits = store.query("imgs", target.vectors[using], using=using, k=3)
        assert hits[0].id == target.id
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[0].payload["i"] == 7
        assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score


def test_scores_are_cosine(filled):
    store, points = filled
    q = np.random.default_rng(5).normal(size=4)
    hits = store.query("imgs", q, k=N, with_vectors=True)
    by_id = {p.id: p for p in points}
    for h in hits:
        expected = float(unit(q) @ unit(by_id[h.id].vectors["aligned"]))
        assert h.score == pytest.approx(expected, abs=1e-4)
        np.testing.assert_allclose(h.vectors["aligned"], unit(by_id[h.id].vectors["aligned"]), atol=1e-5)


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        ({"label": "cat"}, lambda p: p["label"] == "cat"),
        ({"split": ["train", "val"]}, lambda p: p["split"] in ("train", "val")),
        ({"count": {"gte": 2}}, lambda p: p["count"] >= 2),
        ({"count": {"gt": 1, "lte": 3}}, lambda p: 1 < p["count"] <= 3),
        ({"count": [0, 4]}, lambda p: p["count"] in (0, 4)),
        ({"label": {"not": "cat"}}, lambda p: p["label"] != "cat"),
        ({"label": {"not": ["cat", "dog"]}, "count": {"lt": 3}}, lambda p: p["label"] == "bird" and p["count"] < 3),
        (
            {"label": "dog", "split": ["test"], "count": {"gte": 1}},
            lambda p: (p["label"], p["split"]) == ("dog", "test") and p["count"] >= 1,
        ),
    ],
)
def test_filters(filled, flt, keep):
    store, points = filled
    expected = {p.id for p in points if keep(p.payload)}
    assert expected, "a filter case must match something"
    assert store.count("imgs", flt) == len(expected)
    hits = store.query("imgs", np.ones(4), k=N, filter=flt)
    assert {h.id for h in hits} == expected
    assert {p.id for p in store.iterate("imgs", flt, batch=4)} == expected


def test_exclude_ids(filled):
    store, points = filled
    target = points[3]
    hits = store.query("imgs", target.vectors["aligned"], k=5, exclude_ids=[target.id, points[4].id])
    assert target.id not in {h.id for h in hits} and points[4].id not in {h.id for h in hits}
    assert len(hits) == 5


def test_query_batch_equals_single_queries(filled):
    store, points = filled
    q = np.stack([p.vectors["aligned"] for p in points[:6]]).astype(np.float32)
    q += np.random.default_rng(1).normal(scale=0.1, size=q.shape).astype(np.float32)
    batch = store.query_batch("imgs", q, k=4, filter={"split": ["train", "val", "test"]})
    single = [store.query("imgs", row, k=4, filter={"split": ["train", "val", "test"]}) for row in q]
    assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in single]
    for b, s in zip(batch, single, strict=True):
        assert [h.score for h in b] == pytest.approx([h.score for h in s], abs=1e-5)
    own = [[p.id] for p in points[:6]]  # leave-one-out
    loo = store.query_batch("imgs", q, k=4, exclude_per_query=own)
    assert all(own[i][0] not in {h.id for h in hits} for i, hits in enumerate(loo))


def test_query_validation(filled):
    store, _ = filled
    with pytest.raises(DimensionMismatchError, match="dimension 4"):
        store.query("imgs", np.ones(5))
    with pytest.raises(DimensionMismatchError, match="dimension 8"):
        store.query("imgs", np.ones(4), using="base")
    with pytest.raises(DimensionMismatchError):
        store.query_batch("imgs", np.ones(4))
    with pytest.raises(UnknownVectorNameError, match="nope"):
        store.query("imgs", np.ones(4), using="nope")
    with pytest.raises(ValueError, match="k must"):
        store.query("imgs", np.ones(4), k=0)
    with pytest.raises(InvalidVectorError):
        store.query("imgs", np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(FilterError, match="floats"):
        store.query("imgs", np.ones(4), filter={"count": 1.5})


def test_retrieve_and_existing_ids(filled):
    store, points = filled
    absent = point_id(content_hash(b"never stored"), "imgs")
    got = store.retrieve("imgs", [points[0].id, absent, points[1].id.upper()], with_vectors=True)
    assert {p.id for p in got} == {points[0].id, points[1].id}
    first = next(p for p in got if p.id == points[0].id)
    assert first.payload == points[0].payload
    np.testing.assert_allclose(first.vectors["base"], unit(points[0].vectors["base"]), atol=1e-5)
    assert store.retrieve("imgs", [points[0].id])[0].vectors is None
    assert store.existing_ids("imgs", [points[2].id, absent]) == {points[2].id}


def test_scroll_pages_cover_everything_once(filled):
    store, points = filled
    seen: list[str] = []
    offset = None
    while True:
        page, offset = store.scroll("imgs", limit=7, offset=offset)
        assert len(page) <= 7
        seen += [p.id for p in page]
        if offset is None:
            break
    assert sorted(seen) == sorted(p.id for p in points)


def test_reserved_meta_point_is_invisible(filled):
    store, points = filled
    assert store.count("imgs") == N
    assert store.count("imgs", {"label": {"not": "nothing"}}) == N  # must_not would match it
    assert len(list(store.iterate("imgs"))) == N
    assert len(store.query("imgs", np.ones(4), k=N + 5)) == N
    assert len(store.query("imgs", np.ones(8), using="base", k=N + 5, exact=True)) == N
    assert store.retrieve("imgs", [META_POINT_ID]) == []
    assert META_POINT_ID not in store.existing_ids("imgs", [META_POINT_ID, points[0].id])
    with pytest.raises(InvalidPointError, match="reserved"):
        store.upsert("imgs", [StorePoint(META_POINT_ID, points[0].vectors)])
    with pytest.raises(InvalidPointError, match="reserved"):
        store.upsert("imgs", [StorePoint(points[0].id, points[0].vectors, {META_KEY: 1})])
    with pytest.raises(FilterError, match="reserved"):
        store.count("imgs", {META_KEY: "x"})
    assert store.get_fingerprint("imgs") == FP  # and the metadata is intact


def test_foreign_collection_without_fingerprint_is_refused():
    store = open_store(":memory:")
    from qdrant_client import models as qm

    store._client.create_collection("foreign", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    with pytest.raises(FingerprintMismatchError, match="no percep-rag fingerprint"):
        store.ensure_collection("foreign", FP)
    store.close()


# --------------------------------------------------------------------------- filters, ids, specs


def test_filter_language_errors():
    for bad in (
        {"label": []},
        {"label": ["a", 1]},
        {"label": [True, False]},
        {"count": {"gte": "2"}},
        {"count": {"between": [1, 2]}},
        {"count": {}},
        {"x": 1.5},
        {"x": {"a": 1}},
        {"": 1},
        ["label"],
    ):
        with pytest.raises(FilterError):
            parse_filter(bad)  # type: ignore[arg-type]
    assert parse_filter(None).must == ()


def test_point_ids_are_deterministic():
    h = content_hash(b"pixels")
    assert h == content_hash(b"pixels") and len(h) == 64
    assert point_id(h, "a") == point_id(h, "a") != point_id(h, "b")
    assert point_id(h, "a") != META_POINT_ID


def test_store_spec_parse(tmp_path):
    assert StoreSpec.parse(":memory:").kind == "memory"
    assert StoreSpec.parse(f"edge:{tmp_path}").path == tmp_path
    assert StoreSpec.parse(f"local:{tmp_path}").kind == "local"
    assert StoreSpec.parse(str(tmp_path)).kind == "edge"
    remote = StoreSpec.parse("https://q.example:6333", api_key="sekret", prefer_grpc=True)
    assert remote.kind == "url" and remote.prefer_grpc and "sekret" not in repr(remote)
    assert str(remote) == "https://q.example:6333"
    for bad in ("", "edge:", "s3://bucket/x", "ftp://host"):
        with pytest.raises(ConfigError):
            StoreSpec.parse(bad)


# --------------------------------------------------------------------------- remote: unreachable, retries


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once we leave: nothing listens there


@pytest.mark.parametrize("grpc", [False, True])
def test_unreachable_server_raises_store_unavailable(grpc):
    port = _closed_port()
    url = f"http://127.0.0.1:{port}"
    spec = StoreSpec(
        kind="url",
        url=url,
        prefer_grpc=grpc,
        grpc_port=port,
        timeout=1,
        retry=RetryPolicy(attempts=3, initial_backoff=0.01, jitter=0),
    )
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as err:
        open_store(spec)
    assert time.monotonic() - t0 < 10
    assert err.value.url.startswith(url) and url in str(err.value)
    assert err.value.attempts == 3


def test_retries_transient_errors_but_not_client_errors():
    from httpx import Headers
    from qdrant_client.http.exceptions import UnexpectedResponse

    from percep_rag.store.client import QdrantClientStore

    store = QdrantClientStore.in_memory()
    store._remote = True  # exercise the remote error path without a server
    store._retry = RetryPolicy(attempts=4, initial_backoff=0.0, jitter=0)
    calls = []

    def flaky(status: int, fail_times: int, headers: dict[str, str] | None = None):
        def fn():
            calls.append(status)
            if len(calls) <= fail_times:
                raise UnexpectedResponse(status, "x", b'{"status":"error"}', Headers(headers or {}))
            return "ok"

        return fn

    assert store._call("op", "c", flaky(503, 2)) == "ok" and len(calls) == 3
    calls.clear()
    assert store._call("op", "c", flaky(429, 1, {"retry-after": "0"})) == "ok" and len(calls) == 2
    calls.clear()
    with pytest.raises(StoreRequestError, match="HTTP 400"):
        store._call("op", "c", flaky(400, 9))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(CollectionNotFoundError):
        store._call("op", "c", flaky(404, 9))
    calls.clear()
    with pytest.raises(StoreUnavailableError, match="after 4 attempts"):
        store._call("op", "c", flaky(502, 9))
    assert len(calls) == 4
    store._remote = False
    store.close()


# --------------------------------------------------------------------------- Edge specifics


def test_edge_builds_hnsw_with_quantization_and_keeps_recall(tmp_path):
    from percep_rag.store.edge import EdgeStore

    rng = np.random.default_rng(0)
    n, d = 1500, 32
    centres = rng.normal(size=(30, d))
    x = centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    fp = FP.model_copy(update={"base_dim": d, "dim": d})
    ids = [point_id(content_hash(str(i).encode()), "big") for i in range(n)]
    opts = CollectionOptions(index_threshold=500, hnsw_vectors=("aligned",))
    with EdgeStore(tmp_path / "s") as store:
        store.create_collection("big", fp, options=opts)
        store.upsert_arrays("big", ids, {"base": x, "aligned": x}, [{"i": i} for i in range(n)])
        shard = store._shard("big")
        assert shard.info().indexed_vectors_count > 0, "auto-optimize should have built the index"
        q = x[:50] + 0.05 * rng.normal(size=(50, d)).astype(np.float32)
        approx = store.query_batch("big", q, k=10)
        exact = store.query_batch("big", q, k=10, exact=True)
        recall = np.mean([len({h.id for h in a} & {h.id for h in e}) / 10 for a, e in zip(approx, exact, strict=True)])
        assert recall >= 0.9
        assert store.count("big") == n
    with EdgeStore(tmp_path / "s") as store:  # indexed segments reopen fine
        assert store.count("big") == n
        assert store.query("big", x[0], k=1)[0].id == ids[0]


def test_edge_collection_is_locked_while_open(tmp_path):
    from percep_rag.store.edge import EdgeStore

    with EdgeStore(tmp_path / "s") as first:
        first.create_collection("imgs", FP)
        first.count("imgs")
        second = EdgeStore(tmp_path / "s")
        with pytest.raises(StoreLockedError):
            second.count("imgs")
        second.close()


def test_edge_ignores_unfinished_creations(tmp_path):
    from percep_rag.store.edge import EdgeStore

    (tmp_path / "s" / ".creating-imgs-1234").mkdir(parents=True)
    with EdgeStore(tmp_path / "s") as store:
        assert store.list_collections() == []
        store.create_collection("imgs", FP)
        assert store.list_collections() == ["imgs"]


# --------------------------------------------------------------------------- kill -9 durability

_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from percep_rag.config import Fingerprint
    from percep_rag.store import StoreSpec, StorePoint, open_store, point_id, content_hash

    spec = StoreSpec.model_validate_json(sys.argv[1])
    fp = Fingerprint.model_validate_json(sys.argv[2])
    store = open_store(spec)
    store.ensure_collection("imgs", fp)
    rng = np.random.default_rng(0)
    batch = 0
    while True:
        pts = [
            StorePoint(point_id(content_hash(f"{batch}-{j}".encode()), "imgs"),
                       {"base": rng.normal(size=8), "aligned": rng.normal(size=4)}, {"batch": batch})
            for j in range(20)
        ]
        store.upsert("imgs", pts)
        print("batch 1", flush=True)  # acknowledged: upsert returned
        batch += 1
    """
)


@pytest.mark.parametrize("kind", ["edge", "local"])
def test_acknowledged_upserts_survive_kill_9(tmp_path, kind):
    spec = StoreSpec(kind=kind, path=tmp_path / "store")
    proc = start_script(_WRITER, spec.model_dump_json(), FP.model_dump_json())
    batches = kill_after_acks(proc, 16, timeout=60, prefix="batch ")
    assert batches >= 16, proc.stderr.read()
    with open_store(spec) as store:  # opens cleanly after the crash
        assert store.get_fingerprint("imgs") == FP
        wanted = [point_id(content_hash(f"{b}-{j}".encode()), "imgs") for b in range(batches) for j in range(20)]
        assert store.existing_ids("imgs", wanted) == set(wanted)
        assert store.count("imgs") >= len(wanted)
        store.upsert("imgs", make_points(3))  # and takes writes again
