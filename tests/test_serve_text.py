"""``POST /collections/{name}/search`` with a text query: form field and JSON, ranking, and every refusal as 422."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'percep-rag[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.serve import ServedCollection, create_app  # noqa: E402
from percep_rag.store import open_store  # noqa: E402
from tests.serve_world import index_folder, make_photos  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-text")
    photos = make_photos(root)
    clip = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", precision="fp32"))
    dino = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    index_folder(photos, f"edge:{root / 'clip'}", "clip", clip)
    index_folder(photos, f"edge:{root / 'dino'}", "dino", dino)
    stores = {name: open_store(f"edge:{root / name}") for name in ("clip", "dino")}
    yield {"clip": clip, "dino": dino, "stores": stores}
    for store in stores.values():
        store.close()


@pytest.fixture(scope="module")
def client(world):
    collections = [ServedCollection(name, world["stores"][name], world[name]) for name in ("clip", "dino")]
    with TestClient(create_app(collections)) as client:
        yield client


def assert_422(response, *words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == "invalid_request"
    for word in words:
        assert word in body["detail"], body["detail"]


def test_a_text_form_field_searches_base_ranked_as_brute_force_cosine(world, client):
    found = client.post("/collections/clip/search", data={"text": "a red cat", "k": "5"})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["query"] == {"text": "a red cat"} and body["space"] == "base" and list(body["results"]) == ["base"]
    hits = body["results"]["base"]
    store = world["stores"]["clip"]
    text = world["clip"].embed_text(["a red cat"])[0]
    stored = store.retrieve("clip", [hit["id"] for hit in hits], with_vectors=True)
    scores = {point.id: float(point.vectors["base"] @ text) for point in stored}
    assert [hit["score"] for hit in hits] == pytest.approx([scores[hit["id"]] for hit in hits], abs=1e-5)
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    assert all(hit["image"].startswith("/collections/clip/points/") for hit in hits)


def test_json_text_search_equals_the_form_one(client):
    form = client.post("/collections/clip/search", data={"text": "a dog", "k": "4", "space": "both"}).json()
    sent = client.post("/collections/clip/search", json={"text": "a dog", "k": 4, "space": "both"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["results"] == form["results"] and set(form["results"]) == {"aligned", "base"}
    filtered = client.post("/collections/clip/search", json={"text": "a dog", "filter": ["label=cat"]}).json()
    assert filtered["results"]["base"] and {hit["label"] for hit in filtered["results"]["base"]} == {"cat"}


@pytest.mark.parametrize(
    ("request_args", "words"),
    [
        ({"data": {"text": ""}}, ["text: text query 1 is empty"]),
        ({"json": {"text": ""}}, ["text query 1 is empty"]),
        ({"json": {"text": "red " * 40}}, ["tokens long, over the 14"]),
        ({"json": {"text": 7}}, ["text query 1 is a int, not a string"]),
        ({"json": {"text": ["a", "b"]}}, ["not a string"]),
        ({"json": {"text": "red", "colour": 1}}, ["colour"]),
        ({"json": {"text": "red", "k": 0}}, ["k"]),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, ["not JSON"]),
    ],
)
def test_bad_text_is_a_422_json_answer(client, request_args, words):
    assert_422(client.post("/collections/clip/search", **request_args), *words)


def test_a_dino_collection_refuses_text_naming_its_backbone(client):
    assert_422(
        client.post("/collections/dino/search", json={"text": "a cat"}),
        "collection 'dino' takes no text query: backbone 'tiny-vit-random' has no text tower",
    )


def test_text_and_another_query_at_once_is_refused(client):
    assert_422(client.post("/collections/clip/search", json={"text": "a cat", "point": "x"}), "exactly one")


def test_info_says_what_text_queries_search(client):
    assert client.get("/collections/clip").json()["text_queries"].startswith("base (default) or aligned")
    assert client.get("/collections/dino").json()["fingerprint"]["text_queries"] == "none"
