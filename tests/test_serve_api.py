"""Issue 23: the HTTP API through FastAPI's TestClient: every endpoint, every bad input, no 500.

The catalog: photos/<split>/<label>/ indexed with tiny-vit-random into two Edge stores
(``photos`` in one, ``more`` in the other), so that one store can go away while the other serves.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import threading
import time
import zlib

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'percep-rag[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.serve import API_KEY_HEADER, ServedCollection, ServeSettings, create_app  # noqa: E402
from percep_rag.store import open_store  # noqa: E402
from tests.serve_world import COLOURS, draw, index_folder, make_photos  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    photos = make_photos(root)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    index_folder(photos, f"edge:{root / 'store-a'}", "photos", embedder)
    index_folder(photos / "test", f"edge:{root / 'store-b'}", "more", embedder)
    stores = {name: open_store(f"edge:{root / name}") for name in ("store-a", "store-b")}
    yield {"root": root, "photos": photos, "embedder": embedder, "stores": stores}
    for store in stores.values():
        store.close()


def served(world, vlm=None, **settings):
    stores = world["stores"]
    collections = [
        ServedCollection("photos", stores["store-a"], world["embedder"]),
        ServedCollection("more", stores["store-b"], world["embedder"]),
    ]
    return create_app(collections, settings=ServeSettings(**settings), vlm=vlm)


@pytest.fixture
def client(world):
    with TestClient(served(world)) as client:
        yield client


def png(path_or_image) -> bytes:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(data: bytes, name: str = "query.png", kind: str = "image/png") -> dict:
    return {"image": (name, data, kind)}


def query_bytes(world, label: str = "cat", split: str = "train", n: int = 0) -> bytes:
    return (world["photos"] / split / label / f"{n}.png").read_bytes()


def assert_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["detail"], str) and body["detail"]
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


# --------------------------------------------------------------------------- health, collections


def test_healthz_and_the_collection_list(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["collections"] == 2
    listed = {row["name"]: row for row in client.get("/collections").json()["collections"]}
    assert listed["photos"]["points"] == 18 and listed["more"]["points"] == 9
    assert listed["photos"]["backbone"] == "tiny-vit-random" and listed["photos"]["random_weights"] is True


def test_collection_info_has_the_info_fields_and_facets(client):
    info = client.get("/collections/photos").json()
    assert info["points"] == 18 and info["vectors"] == {"base": 64, "aligned": 64}
    assert info["payload_fields"]["label"] == "str" and "split" in info["payload_indexes"]
    assert info["fingerprint"]["backbone"] == "tiny-vit-random" and "created_at" in info
    assert info["facets"] == {"label": sorted(COLOURS), "split": ["test", "train"]}
    assert "store" not in info  # the store's location is not the client's business
    assert_error(client.get("/collections/nope"), 404, "'nope'", "photos")


def test_openapi_schema_docs_and_page(client):
    schema = client.get("/openapi.json").json()
    assert {"/collections/{name}/search", "/collections/{name}/classify", "/healthz"} <= set(schema["paths"])
    assert "/collections/{name}/points/{point}/image" in schema["paths"]
    # The docs pages load their scripts from this server, not from a CDN (nothing is reachable offline).
    for docs in ("/docs", "/redoc"):
        html = client.get(docs)
        assert html.status_code == 200 and "cdn" not in html.text.lower(), html.text
        scripts = re.findall(r'<script src="([^"]+)"', html.text)
        assert scripts and all(src.startswith("/") for src in scripts), scripts
        assert all(client.get(src).status_code == 200 for src in scripts)
    page = client.get("/")
    assert page.status_code == 200 and "<title>" in page.text
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    # Nothing on the page is fetched from elsewhere.
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text


# --------------------------------------------------------------------------- search


def test_search_by_upload_returns_both_spaces_with_hit_fields(world, client):
    response = client.post("/collections/photos/search", files=upload(query_bytes(world)), data={"k": "4"})
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["space"] == "both" and set(found["results"]) == {"aligned", "base"}
    assert found["embedder"]["random_weights"] is True
    for hits in found["results"].values():
        assert [hit["rank"] for hit in hits] == [1, 2, 3, 4]
        assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
        assert all(set(hit) >= {"id", "score", "uri", "label", "payload", "image"} for hit in hits)
        assert hits[0]["label"] == "cat"
        # The query is an indexed image: it never comes back as its own neighbour.
        assert str(world["photos"] / "train" / "cat" / "0.png") not in [hit["uri"] for hit in hits]
        # Copies of it would, marked (the retriever's rule): this catalog has none, and with no
        # calibrated threshold a high cosine alone never makes a hit a copy.
        assert all(hit["copy_of_query"] is None and hit["duplicate_of_query"] is False for hit in hits)
        assert all(hit["files"] == 1 for hit in hits)
    assert found["copies"]["aligned"] == {"exact": "same pixels", "near_threshold": None, "near_source": None}


def test_search_one_space_with_filters(world, client):
    data = {"k": "20", "space": "aligned", "filter": ["split=test", "label=dog,fish"]}
    found = client.post("/collections/photos/search", files=upload(query_bytes(world)), data=data).json()
    assert set(found["results"]) == {"aligned"} and found["filter"] == {"split": "test", "label": ["dog", "fish"]}
    hits = found["results"]["aligned"]
    assert len(hits) == 6 and {(hit["split"], hit["label"]) for hit in hits} == {("test", "dog"), ("test", "fish")}


def test_search_by_stored_point_excludes_it(world, client):
    first = client.post("/collections/photos/search", files=upload(query_bytes(world)), data={"k": "1"}).json()
    point = first["results"]["aligned"][0]["id"]
    found = client.post("/collections/photos/search", data={"point": point.upper(), "k": "5", "space": "base"})
    assert found.status_code == 200, found.text
    assert found.json()["query"] == {"point": point}
    assert point not in [hit["id"] for hit in found.json()["results"]["base"]]


def test_a_filter_that_matches_nothing_is_an_empty_result(world, client):
    data = {"filter": "label=unicorn"}
    found = client.post("/collections/photos/search", files=upload(query_bytes(world)), data=data)
    assert found.status_code == 200 and found.json()["results"] == {"aligned": [], "base": []}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"k": "0"}, ["k"]),
        ({"k": "many"}, ["k"]),
        ({"k": "101"}, ["at most 100"]),
        ({"space": "sideways"}, ["space"]),
        ({"filter": "colour=red"}, ["'colour'", "fields: content_hash, label"]),
        ({"filter": "label"}, ["key=value"]),
        ({"filter": ["label=cat", "label=dog"]}, ["twice"]),
    ],
)
def test_bad_parameters_are_422(world, client, data, words):
    response = client.post("/collections/photos/search", files=upload(query_bytes(world)), data=data)
    assert_error(response, 422, *words)


def test_exactly_one_query_is_needed(world, client):
    assert_error(client.post("/collections/photos/search", data={"k": "3"}), 422, "exactly one")
    point = client.post("/collections/photos/search", files=upload(query_bytes(world))).json()
    both = {"point": point["results"]["base"][0]["id"]}
    assert_error(client.post("/collections/photos/search", files=upload(query_bytes(world)), data=both), 422)
    assert_error(client.post("/collections/photos/search", data={"image": "not a file"}), 422, "file upload")


def test_unknown_points_and_collections_are_404(world, client):
    assert_error(client.post("/collections/photos/search", data={"point": "no-such-id"}), 404, "UUID")
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(client.post("/collections/photos/search", data={"point": missing}), 404, missing)
    # A point of another collection is not a point of this one.
    other = client.post("/collections/more/search", files=upload(query_bytes(world))).json()["results"]["base"][0]
    assert_error(client.post("/collections/photos/search", data={"point": other["id"]}), 404)
    assert_error(client.post("/collections/nope/search", files=upload(query_bytes(world))), 404, "'nope'")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels in a few bytes: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, ["0 bytes"]),
        (b"just some text, no pixels", 415, ["not an image"]),
        (b"%PDF-1.7 a document", 415, ["not an image"]),
        ("truncated", 400, ["truncated"]),
        ("corrupt", 400, ["query.png"]),
        (_png_header_only(50_000, 50_000), 413, ["decompression bomb"]),
    ],
)
def test_bad_uploads_are_4xx_naming_the_problem(world, client, data, status, words):
    whole = query_bytes(world)
    if data == "truncated":
        data = whole[: len(whole) // 2]
    elif data == "corrupt":
        data = whole[:60] + bytes(len(whole) - 60)
    assert_error(client.post("/collections/photos/search", files=upload(data)), status, *words)
    assert_error(client.post("/collections/photos/classify", files=upload(data)), 501)  # no VLM: nothing decoded


def test_the_pixel_and_size_limits(world):
    large = png(Image.effect_noise((300, 300), 80).convert("RGB"))
    with TestClient(served(world, max_pixels=40 * 40, max_upload_bytes=len(large) - 1)) as client:
        response = client.post("/collections/photos/search", files=upload(large))
        assert_error(response, 413, "limit")
        bigger = client.post("/collections/photos/search", files=upload(large * 40))  # refused before parsing
        assert_error(bigger, 413, "too large")
        small = png(Image.new("RGB", (41, 40), "red"))
        assert_error(client.post("/collections/photos/search", files=upload(small)), 413, "max_pixels=1,600")
        fits = png(Image.new("RGB", (40, 40), "red"))
        assert client.post("/collections/photos/search", files=upload(fits)).status_code == 200


def test_requests_that_are_neither_forms_nor_json_are_415(world, client):
    assert_error(client.post("/collections/photos/search", json={"k": 3}), 422, "exactly one")  # JSON: text/point
    assert_error(client.post("/collections/photos/search", content=query_bytes(world)), 415, "multipart/form-data")
    assert_error(client.post("/collections/photos/classify", json={"k": 3}), 415, "multipart/form-data")


# --------------------------------------------------------------------------- the API key


def test_the_api_key_guards_everything_but_health(world):
    with TestClient(served(world, api_key="s3cret")) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/").status_code == 200  # the page shell holds no data
        assert_error(client.get("/collections"), 401, "missing", API_KEY_HEADER)
        assert_error(client.get("/collections", headers={API_KEY_HEADER: "guess"}), 401, "wrong")
        assert_error(client.post("/collections/photos/search", files=upload(query_bytes(world))), 401)
        good = {API_KEY_HEADER: "s3cret"}
        assert client.get("/collections", headers=good).status_code == 200
        found = client.post("/collections/photos/search", files=upload(query_bytes(world)), headers=good).json()
        image = found["results"]["base"][0]["image"]
        assert_error(client.get(image), 401)
        assert client.get(image, headers=good).status_code == 200


# --------------------------------------------------------------------------- images


def test_thumbnails_of_indexed_images(world, client):
    hit = client.post("/collections/photos/search", files=upload(query_bytes(world))).json()["results"]["base"][0]
    response = client.get(hit["image"], params={"size": 24})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(response.content)).size) == 24
    again = client.get(hit["image"], params={"size": 24}, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert_error(client.get(hit["image"], params={"size": 5}), 422, "size")


@pytest.mark.parametrize(
    "point",
    [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "..",
        "etc%2Fpasswd",
        "file:%2F%2F%2Fetc%2Fpasswd",
        "00000000-0000-4000-8000-000000000000",
    ],
)
def test_no_request_names_a_file(client, point):
    response = client.get(f"/collections/photos/points/{point}/image")
    assert response.status_code == 404, response.text
    assert "root:" not in response.text


def test_only_the_indexed_bytes_are_ever_served(world, tmp_path):
    """A file changed, a symlink swapped in, a payload naming another file: 404, the file is not sent."""
    folder = tmp_path / "pics"
    for n, label in enumerate(("cat", "dog", "fish")):
        draw(folder / label / "0.png", COLOURS[label], 50 + n)
    store = open_store(":memory:")
    index_folder_into(folder, store, world["embedder"])
    with TestClient(create_app([ServedCollection("pics", store, world["embedder"])])) as client:
        hits = {
            hit["label"]: hit
            for hit in client.post("/collections/pics/search", files=upload(png(Image.new("RGB", (9, 9))))).json()[
                "results"
            ]["base"]
        }
        assert client.get(hits["cat"]["image"]).status_code == 200
        secret = tmp_path / "secret.png"
        draw(secret, (1, 2, 3), 7)
        (folder / "cat" / "0.png").unlink()
        os.symlink(secret, folder / "cat" / "0.png")  # a symlink to an image that was never indexed
        assert_error(client.get(hits["cat"]["image"]), 404, "no longer the image")
        (folder / "dog" / "0.png").unlink()
        os.symlink("/etc/passwd", folder / "dog" / "0.png")
        assert_error(client.get(hits["dog"]["image"]), 404)
        draw(folder / "fish" / "0.png", (9, 9, 9), 1)  # rewritten in place
        assert_error(client.get(hits["fish"]["image"]), 404, "no longer the image")
        # A point whose payload names a file by '..' or an absolute path is served only if that file is the image.
        [point] = store.retrieve("pics", [hits["cat"]["id"]], with_vectors=True)
        for uri in (str(folder / "dog" / ".." / ".." / "secret.png"), "/etc/passwd", "https://example.com/a.png"):
            store.upsert("pics", [point_with_uri(point, uri)])
            assert client.get(hits["cat"]["image"]).status_code == 404
    store.close()


def index_folder_into(folder, store, embedder):
    from percep_rag.datasets.sources import load_source
    from percep_rag.indexing import index_records

    index_records(load_source(folder).records, embedder=embedder, store=store, collection="pics", progress=False)


def point_with_uri(point, uri):
    from percep_rag.store import StorePoint

    return StorePoint(id=point.id, vectors=point.vectors, payload={**point.payload, "uri": uri})


# --------------------------------------------------------------------------- a store that goes away


def test_a_store_that_goes_away_is_503_while_the_others_serve(world, tmp_path):
    gone_dir = tmp_path / "gone"
    index_folder(world["photos"] / "train", f"edge:{gone_dir}", "gone", world["embedder"])
    gone = open_store(f"edge:{gone_dir}")
    collections = [
        ServedCollection("photos", world["stores"]["store-a"], world["embedder"]),
        ServedCollection("gone", gone, world["embedder"]),
    ]
    with TestClient(create_app(collections)) as client:
        point = client.post("/collections/gone/search", files=upload(query_bytes(world))).json()
        image = point["results"]["base"][0]["image"]
        gone.close()  # the store's connection is lost ...
        shutil.rmtree(gone_dir)  # ... and its files with it
        assert_error(client.post("/collections/gone/search", files=upload(query_bytes(world))), 503, "closed")
        assert_error(client.get("/collections/gone"), 503)
        assert_error(client.get(image), 503)
        listed = {row["name"]: row for row in client.get("/collections").json()["collections"]}
        assert listed["gone"]["status"] == "unavailable" and listed["photos"]["status"] == "ok"
        assert client.post("/collections/photos/search", files=upload(query_bytes(world))).status_code == 200
        assert client.get("/healthz").status_code == 200


# --------------------------------------------------------------------------- classify


@pytest.fixture(scope="module")
def vlm():
    pytest.importorskip("open_flamingo", reason="the tiny VLM is built with open-flamingo")
    from percep_rag.fewshot.evaluate import load_vlm

    return load_vlm("tiny-flamingo-random", device="cpu", precision="fp32")


def test_classify_returns_the_prediction_and_its_examples(world, vlm):
    with TestClient(served(world, vlm=vlm)) as client:
        data = {"shots": "2", "filter": "split=train", "scores": "true"}
        query = upload(query_bytes(world, "dog", "test"))
        response = client.post("/collections/photos/classify", files=query, data=data)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["classes"] == sorted(COLOURS) and answer["prediction"] in answer["classes"]
        assert set(answer["scores"]) == set(COLOURS) and answer["random_weights"] is True and "note" in answer
        examples = answer["examples"]
        assert len(examples) == 2 and all(example["split"] == "train" for example in examples)
        assert examples[-1]["score"] >= examples[0]["score"]  # most similar last
        by_point = client.post(
            "/collections/photos/classify", data={"point": examples[0]["id"], "classes": "cat, dog", "shots": "1"}
        ).json()
        assert by_point["classes"] == ["cat", "dog"] and by_point["prediction"] in ("cat", "dog")
        assert examples[0]["id"] not in [example["id"] for example in by_point["examples"]]
        assert_error(client.post("/collections/photos/classify", files=upload(b"")), 400, "0 bytes")
        assert_error(client.post("/collections/photos/classify", files=upload(b"x"), data={"shots": "-1"}), 422)


def test_classify_prompts_with_labelled_points_only(world, vlm, tmp_path):
    """A collection that also holds unlabelled images (closer to the query than any labelled one):
    the prompt's examples are labelled points only, as the CLI's ``classify`` takes them."""
    for n in range(4):
        draw(tmp_path / "unlabelled" / f"{n}.png", COLOURS["dog"], 500 + n)
    store_text = f"edge:{tmp_path / 'store'}"
    index_folder(world["photos"] / "train", store_text, "mixed", world["embedder"])
    index_folder(tmp_path / "unlabelled", store_text, "mixed", world["embedder"])
    with open_store(store_text) as store:
        app = create_app([ServedCollection("mixed", store, world["embedder"])], vlm=vlm)
        with TestClient(app) as client:
            query = upload(query_bytes(world, "dog", "test"))
            data = {"shots": "3", "classes": "cat,dog"}
            response = client.post("/collections/mixed/classify", files=query, data=data)
            assert response.status_code == 200, response.text
            examples = response.json()["examples"]
            assert len(examples) == 3 and all(example["label"] for example in examples), examples


# --------------------------------------------------------------------------- concurrency


class GatedEmbedder:
    """The tiny embedder, whose forward passes wait until ``gate`` is set: searches in flight, held."""

    def __init__(self, embedder):
        self._embedder = embedder
        self.gate = threading.Event()

    def __getattr__(self, name):
        return getattr(self._embedder, name)

    def embed_both(self, images):
        assert self.gate.wait(60), "the test never opened the gate"
        return self._embedder.embed_both(images)


@pytest.mark.parametrize("batching", [True, False])
def test_healthz_answers_while_searches_run_and_queries_batch(world, batching):
    gated = GatedEmbedder(world["embedder"])
    collections = [ServedCollection("photos", world["stores"]["store-a"], gated)]  # type: ignore[arg-type]
    app = create_app(collections, settings=ServeSettings(batching=batching, max_concurrent=8))
    [queue] = app.state.catalog.queues
    with TestClient(app) as client:
        answers: list[int] = []

        def one_search(n: int) -> None:
            data = query_bytes(world, list(COLOURS)[n % 3], "test", n % 3)
            answers.append(client.post("/collections/photos/search", files=upload(data), data={"k": "2"}).status_code)

        searches = [threading.Thread(target=one_search, args=(n,)) for n in range(4)]
        for thread in searches:
            thread.start()
        deadline = time.monotonic() + 60
        held = waiting = 0
        while time.monotonic() < deadline:  # wait for: one pass held at the gate, the rest waiting, four in all
            held = queue.in_pass  # set once a pass has taken its queries: then stable until the gate opens
            waiting = queue.waiting
            if held >= 1 and held + waiting == 4:
                break
            time.sleep(0.01)
        assert held >= 1 and held + waiting == 4, (held, waiting)
        assert held == 1 or batching  # without batching a pass takes one query
        for _ in range(5):
            assert client.get("/healthz").status_code == 200  # the event loop is free: embedding is elsewhere
        assert answers == []
        gated.gate.set()
        for thread in searches:
            thread.join(60)
        assert answers == [200] * 4
    assert queue.embedded == 4
    # Batching: the queries that waited share one pass.
    assert queue.passes == ((1 if held == 4 else 2) if batching else 4)


def test_a_chunked_body_over_the_limit_is_refused_unread():
    """No Content-Length (a chunked upload): the bytes received are counted, the app never runs."""
    import asyncio

    from percep_rag.serve.security import BodyLimit

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(10)]
    sent: list[dict] = []

    async def receive():
        return chunks.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/collections/c/search", "headers": [], "query_string": b""}
    asyncio.run(BodyLimit(app, limit=4000)(scope, receive, send))
    assert reached == [] and sent[0]["status"] == 413 and len(chunks) == 5  # stopped reading at the limit
    assert b"too large" in sent[1]["body"]


# --------------------------------------------------------------------------- lifespan


def search_within(client, data: bytes, seconds: float = 60) -> object:
    """The search's response, or ``None`` when it has not answered within ``seconds`` (a hang)."""
    answered: list[object] = []
    thread = threading.Thread(
        target=lambda: answered.append(client.post("/collections/photos/search", files=upload(data))), daemon=True
    )
    thread.start()
    thread.join(seconds)
    return answered[0] if answered else None


def test_an_app_served_twice_answers_searches_both_times(world):
    """Two lifespans of one app (two ``with TestClient(app)``): the workers start again in the second."""
    app = served(world)
    data = query_bytes(world)
    for _ in range(2):
        with TestClient(app) as client:
            response = search_within(client, data, seconds=30)
            assert response is not None, "the search never answered"
            assert response.status_code == 200, response.text


def test_embedding_workers_run_only_during_the_lifespan(world):
    app = served(world)
    [queue] = app.state.catalog.queues
    assert not queue.running  # built, not started: a process forked after building starts its own
    with TestClient(app):
        assert queue.running
    assert not queue.running


def test_a_search_outside_the_lifespan_is_refused_not_left_waiting(world):
    app = served(world)
    client = TestClient(app)  # no `with`: the lifespan never runs, so no worker embeds
    response = search_within(client, query_bytes(world), seconds=30)
    assert response is not None, "the search never answered"
    assert_error(response, 503, "not running")
    assert response.json()["error"] == "not_embedded"


def test_a_search_whose_embedding_never_comes_times_out(world):
    gated = GatedEmbedder(world["embedder"])
    collections = [ServedCollection("photos", world["stores"]["store-a"], gated)]  # type: ignore[arg-type]
    app = create_app(collections, settings=ServeSettings(embed_timeout_s=0.5))
    with TestClient(app) as client:
        response = search_within(client, query_bytes(world), seconds=30)
        gated.gate.set()  # let the worker finish its pass, so the lifespan can stop it
        assert response is not None, "the search never answered"
        assert_error(response, 503, "not embedded within 0.5 s")
        assert search_within(client, query_bytes(world)).status_code == 200  # the worker lives on
