"""Issue 38 in the HTTP API and LangChain: the issue's world marks no copy; a pixel-identical
re-encode is an exact copy; after calibration a slightly resized copy is a near copy (with its
cosine) and a different image is not; a hit says how many files it stands for."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'percep-rag[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.copy_threshold import LabelledPair, calibrate_pairs, set_copy_threshold  # noqa: E402
from percep_rag.datasets.records import scan_folder  # noqa: E402
from percep_rag.indexing import index_records  # noqa: E402
from percep_rag.serve import ServedCollection, create_app  # noqa: E402
from percep_rag.store import open_store  # noqa: E402
from tests.copies_world import make_world, query_in_none, reencoded, resized  # noqa: E402

PLAIN, CALIBRATED = "world", "calibrated"


def calibrate_world(store, collection: str, catalog: Path, folder: Path, embedder) -> float:
    """Store the threshold two resized copies and every pair of the twelve choose (as `duplicates --calibrate`)."""
    twelve = sorted(catalog.rglob("*.png"))
    pairs = [LabelledPair(str(a), str(b), False) for a, b in itertools.combinations(twelve, 2)]
    for name in ("circle/1.png", "square/3.png"):
        copy = resized(catalog / name, folder / name.replace("/", "-"))
        pairs.append(LabelledPair(str(catalog / name), str(copy), True))

    def embed(paths):
        return embedder.embed_both(paths).aligned

    chosen, _ = calibrate_pairs(store, collection, pairs, embed=embed, source="pairs.csv")
    set_copy_threshold(store, collection, "aligned", chosen)
    return chosen.threshold


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfaces")
    catalog = make_world(root)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    store = open_store(f"edge:{root / 'store'}")
    for name in (PLAIN, CALIBRATED):
        index_records(scan_folder(catalog), embedder=embedder, store=store, collection=name, progress=False)
    threshold = calibrate_world(store, CALIBRATED, catalog, root, embedder)
    original = catalog / "circle" / "0.png"
    yield {
        "store": store,
        "embedder": embedder,
        "original": original,
        "threshold": threshold,
        "q": query_in_none(root),
        "reencoded": reencoded(original, root / "reencoded.png"),
        "resized": resized(original, root / "resized.png"),
    }
    store.close()


@pytest.fixture(scope="module")
def client(world):
    served = [ServedCollection(name, world["store"], world["embedder"]) for name in (PLAIN, CALIBRATED)]
    with TestClient(create_app(served)) as client:
        yield client


def _search(client, collection: str, path: Path, **data) -> dict:
    files = {"image": (path.name, path.read_bytes(), "image/png")}
    response = client.post(f"/collections/{collection}/search", files=files, data={"k": "11", **data})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_api_marks_no_copy_in_the_world_and_an_exact_copy_by_its_pixels(world, client):
    found = _search(client, PLAIN, world["q"])
    assert all(hit["copy_of_query"] is None for hits in found["results"].values() for hit in hits)
    assert min(hit["score"] for hit in found["results"]["aligned"]) > 0.94  # the old 0.97 rule marked most
    exact = _search(client, PLAIN, world["reencoded"])
    for hits in exact["results"].values():
        assert hits[0]["uri"] == str(world["original"]) and hits[0]["copy_of_query"] == "exact"
        assert hits[0]["duplicate_of_query"] is True and [h["copy_of_query"] for h in hits[1:]] == [None] * 10


def test_the_api_marks_near_copies_only_where_calibrated_or_asked(world, client):
    found = _search(client, CALIBRATED, world["resized"])
    aligned = found["results"]["aligned"]
    assert aligned[0]["uri"] == str(world["original"]) and aligned[0]["copy_of_query"] == "near"
    assert [h["copy_of_query"] for h in aligned[1:]] == [None] * 10
    assert found["copies"]["aligned"]["near_threshold"] == world["threshold"]
    assert found["copies"]["aligned"]["near_source"] == "calibrated from pairs.csv (68 pairs)"
    assert found["copies"]["base"]["near_threshold"] is None
    assert all(h["copy_of_query"] is None for h in found["results"]["base"])
    # The uncalibrated collection: nothing near, unless the request gives a threshold.
    assert all(h["copy_of_query"] is None for h in _search(client, PLAIN, world["resized"])["results"]["aligned"])
    asked = _search(client, PLAIN, world["resized"], duplicate_threshold="0.9999", space="aligned")
    assert asked["results"]["aligned"][0]["copy_of_query"] == "near"
    assert asked["copies"]["aligned"]["near_source"] == "duplicate_threshold"
    info = client.get(f"/collections/{CALIBRATED}").json()
    assert info["copy_thresholds"]["aligned"]["threshold"] == world["threshold"]
    bad = client.post(f"/collections/{PLAIN}/search", files={"image": ("q.png", world["q"].read_bytes(), "image/png")},
                      data={"duplicate_threshold": "2"})  # fmt: skip
    assert bad.status_code == 422


def test_langchain_marks_exact_and_near_copies_apart(world):
    from langchain_percep_rag import PerceptualImageRetriever

    def documents(collection: str, path: Path, **fields):
        retriever = PerceptualImageRetriever(store=world["store"], collection=collection, embedder=world["embedder"],
                                             k=11, **fields)  # fmt: skip
        return retriever.invoke(str(path))

    assert not any(d.metadata["duplicate_of_query"] for d in documents(PLAIN, world["q"]))
    exact = documents(PLAIN, world["reencoded"])
    assert exact[0].metadata["image_uri"] == str(world["original"]) and exact[0].metadata["copy_of_query"] == "exact"
    near = documents(CALIBRATED, world["resized"])
    assert near[0].metadata["copy_of_query"] == "near" and near[0].metadata["duplicate_of_query"] is True
    assert [d.metadata["copy_of_query"] for d in near[1:]] == [None] * 10 and near[0].metadata["files"] == 1
    assert not any(d.metadata["copy_of_query"] for d in documents(PLAIN, world["resized"]))
    asked = documents(PLAIN, world["resized"], duplicate_threshold=0.9999)
    assert asked[0].metadata["copy_of_query"] == "near"
