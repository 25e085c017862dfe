"""Issue 37: writes through the service (TestClient): add uploads, delete, sync from the source folder.

One Edge store, the collection ``live`` indexed from photos/<split>/<label>/ with tiny-vit-random;
the app has the folder as its source and an uploads folder, as ``serve --source`` gives it.
"""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'percep-rag[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.serve import API_KEY_HEADER, ServedCollection, ServeSettings, Writes, WriteTarget, create_app  # noqa: E402
from percep_rag.store import content_hash, open_store, point_id  # noqa: E402
from percep_rag.uploads import uploaded_records  # noqa: E402
from tests.serve_world import COLOURS, draw, index_folder, make_photos  # noqa: E402


@pytest.fixture
def world(tmp_path):
    photos = make_photos(tmp_path, per_class=2)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32", batch_size=4))
    index_folder(photos, f"edge:{tmp_path / 'store'}", "live", embedder)
    store = open_store(f"edge:{tmp_path / 'store'}")
    yield {"root": tmp_path, "photos": photos, "embedder": embedder, "store": store, "uploads": tmp_path / "up"}
    store.close()


def app_for(world, *, source=True, uploads=True, acks=None, **settings):
    target = WriteTarget(source=world["photos"] if source else None, uploads=world["uploads"] if uploads else None)
    writes = Writes({"live": target}, on_upsert=acks)
    served = [ServedCollection("live", world["store"], world["embedder"])]
    return create_app(served, settings=ServeSettings(**settings), writes=writes)


@pytest.fixture
def client(world):
    with TestClient(app_for(world)) as client:
        yield client


def png(seed: int, colour=(250, 250, 0), size: int = 40) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_ids(store) -> set[str]:
    return {point.id for point in store.iterate("live")}


def count(client) -> int:
    return client.get("/collections").json()["collections"][0]["points"]


def search_ids(client, data: bytes, k: int = 100) -> set[str]:
    answer = client.post("/collections/live/search", files={"image": ("q.png", data, "image/png")}, data={"k": k})
    assert answer.status_code == 200, answer.text
    return {hit["id"] for hit in answer.json()["results"]["aligned"]}


def test_add_images_embeds_them_with_the_collection_embedder_and_keeps_the_files(world, client):
    before = count(client)
    images = [png(1), png(2)]
    files = [("image", ("a.png", images[0], "image/png")), ("image", ("b.png", images[1], "image/png"))]
    answer = client.post(
        "/collections/live/points", files=files, data={"label": "lemon", "split": "train", "payload": '{"sku": "L1"}'}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    ids = [point_id(content_hash(data), "live") for data in images]
    assert body["added"] == 2 and [p["id"] for p in body["points"]] == ids and body["count"] == before + 2
    assert count(client) == before + 2
    [stored] = world["store"].retrieve("live", [ids[0]], with_vectors=True)
    assert stored.payload["label"] == "lemon" and stored.payload["split"] == "train" and stored.payload["sku"] == "L1"
    assert stored.payload["content_hash"] == content_hash(images[0])
    # The collection's own embedder, as a query would embed it (fp32: exactly).
    expected = world["embedder"].embed_both([Image.open(io.BytesIO(images[0]))])
    assert abs(stored.vectors["aligned"] - expected.aligned[0]).max() < 1e-5
    # The thumbnail is served from the kept file; the new label is offered as a facet.
    assert client.get(f"/collections/live/points/{ids[0]}/image").status_code == 200
    assert "lemon" in client.get("/collections/live").json()["facets"]["label"]
    assert sorted(pid for _, pid in uploaded_records(world["uploads"])) == sorted(ids)
    # A search by another image sees the new points.
    assert set(ids) <= search_ids(client, png(3))
    # The same bytes again: already there, nothing embedded or written twice.
    again = client.post("/collections/live/points", files=[("image", ("a2.png", images[0], "image/png"))]).json()
    assert again["added"] == 0 and again["already_present"] == 1 and again["count"] == before + 2


def test_add_checks_its_inputs(world):
    with TestClient(app_for(world, max_upload_bytes=4000)) as client:
        big = client.post("/collections/live/points", files={"image": ("big.png", png(4, size=200), "image/png")})
        assert big.status_code == 413, big.text
        bad = client.post("/collections/live/points", files={"image": ("x.png", b"not an image", "image/png")})
        assert bad.status_code == 415 and "not an image" in bad.json()["detail"]
        for payload, words in (("[1]", "JSON object"), ("{", "not JSON"), ('{"uri": "/etc/passwd"}', "uri")):
            answer = client.post(
                "/collections/live/points", files={"image": ("a.png", png(5), "image/png")}, data={"payload": payload}
            )
            assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
        missing = client.post("/collections/nope/points", files={"image": ("a.png", png(5), "image/png")})
        assert missing.status_code == 404
    assert world["store"].count("live") == 12  # nothing was written
    with TestClient(app_for(world, uploads=False)) as client:
        answer = client.post("/collections/live/points", files={"image": ("a.png", png(5), "image/png")})
        assert answer.status_code == 501 and "--uploads" in answer.json()["detail"]


def test_writes_are_behind_the_api_key(world):
    with TestClient(app_for(world, api_key="k")) as client:
        calls = [
            ("post", "/collections/live/points", {"files": {"image": ("a.png", png(6), "image/png")}}),
            ("post", "/collections/live/delete", {"data": {"filter": "label=cat"}}),
            ("post", "/collections/live/sync", {"data": {"dry_run": "true"}}),
            ("delete", f"/collections/live/points/{next(iter(stored_ids(world['store'])))}", {}),
        ]
        for method, path, kwargs in calls:
            assert getattr(client, method)(path, **kwargs).status_code == 401, path
        assert world["store"].count("live") == 12
        ok = client.post("/collections/live/sync", data={"dry_run": "true"}, headers={API_KEY_HEADER: "k"})
        assert ok.status_code == 200, ok.text


def test_delete_by_id_uri_and_filter(world, client):
    store = world["store"]
    cats = {p.id for p in store.iterate("live", {"label": "cat"})}
    dogs = sorted(store.iterate("live", {"label": "dog"}), key=lambda p: p.id)
    counted = client.post("/collections/live/delete", data={"filter": "label=cat", "dry_run": "true"}).json()
    assert counted["matched"] == len(cats) == 4 and counted["deleted"] == 0 and store.count("live") == 12
    done = client.post("/collections/live/delete", data={"filter": "label=cat"}).json()
    assert done["deleted"] == 4 and set(done["ids"]) == cats and done["count"] == 8
    assert not cats & stored_ids(store)
    by_uri = client.post("/collections/live/delete", data={"uri": dogs[0].payload["uri"]}).json()
    assert by_uri["ids"] == [dogs[0].id] and by_uri["count"] == 7
    # A thumbnail of a deleted point: 404, what the page shows as a placeholder.
    assert client.get(f"/collections/live/points/{dogs[0].id}/image").status_code == 404
    one = client.delete(f"/collections/live/points/{dogs[1].id}")
    assert one.status_code == 200 and one.json()["count"] == 6
    assert client.delete(f"/collections/live/points/{dogs[1].id}").status_code == 404
    both = client.post("/collections/live/delete", data={"id": "x", "uri": "/y"})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    unknown = client.post("/collections/live/delete", data={"filter": "colour=red"})
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    assert "cat" not in client.get("/collections/live").json()["facets"]["label"]


def test_deleting_an_upload_removes_its_file_and_listing(world, client):
    data = png(7)
    added = client.post("/collections/live/points", files={"image": ("u.png", data, "image/png")}).json()
    [point] = added["points"]
    kept = world["uploads"] / point["uri"].rsplit("/", 1)[1]
    assert kept.is_file()
    client.post("/collections/live/delete", data={"id": point["id"]})
    assert not kept.exists() and uploaded_records(world["uploads"]) == []
    # A later sync does not bring it back.
    client.post("/collections/live/sync")
    assert point["id"] not in stored_ids(world["store"])


def test_sync_from_the_source_folder_as_index_sync(world, client):
    photos, store = world["photos"], world["store"]
    uploaded = client.post("/collections/live/points", files={"image": ("u.png", png(8), "image/png")}).json()
    new = draw(photos / "train" / "cat" / "9.png", COLOURS["cat"], 900)
    (photos / "test" / "fish" / "0.png").unlink()
    (photos / "test" / "fish" / "1.png").rename(photos / "test" / "fish" / "7.png")
    dry = client.post("/collections/live/sync", data={"dry_run": "true"}).json()
    assert (dry["added"], dry["removed"], dry["relinked"], dry["dry_run"]) == (1, 1, 1, True)
    assert store.count("live") == 13
    answer = client.post("/collections/live/sync").json()
    assert "report" in answer, answer
    assert answer["report"].startswith("live: 1 added, 12 kept, 0 replaced, 1 removed, 1 relinked, 0 failed; ")
    assert answer["report"].endswith(f"; {answer['read']} of 13 files read") and answer["read"] >= 2  # new + moved
    assert answer["count"] == 13 and answer["index"].startswith("live: 1 new points")
    assert point_id(content_hash(new.read_bytes()), "live") in stored_ids(store)
    assert uploaded["points"][0]["id"] in stored_ids(store)  # an uploaded image is part of the catalog
    again = client.post("/collections/live/sync").json()
    assert again["report"].startswith("live: 0 added, 13 kept, 0 replaced, 0 removed, 0 relinked, 0 failed; ")
    # remove=false: only adds (what `index SOURCE` does), withdrawn files keep their points.
    (photos / "test" / "dog" / "0.png").unlink()
    only_add = client.post("/collections/live/sync", data={"remove": "false"}).json()
    assert only_add["added"] == 0 and only_add["count"] == 13


def test_sync_needs_a_source(world):
    with TestClient(app_for(world, source=False)) as client:
        answer = client.post("/collections/live/sync")
        assert answer.status_code == 409 and "--source live=" in answer.json()["detail"]


def test_sync_embeds_on_the_collection_queue(world):
    app = app_for(world)
    for n in range(3):
        draw(world["photos"] / "train" / "dog" / f"new{n}.png", COLOURS["dog"], 700 + n)
    with TestClient(app) as client:
        [queue] = app.state.catalog.queues
        before = queue.embedded
        assert client.post("/collections/live/sync").json()["added"] == 3
        assert queue.embedded == before + 3  # the worker thread embedded them, batched as queries are


def test_searches_during_writes_answer_from_before_or_after(world):
    """Searches never fail and never see half a point while another thread adds, syncs and deletes."""
    acks: list[int] = []
    app = app_for(world, acks=acks.append)
    photos = world["photos"]
    for n in range(8):
        draw(photos / "train" / "fish" / f"w{n}.png", COLOURS["fish"], 800 + n)
    query = (photos / "test" / "cat" / "0.png").read_bytes()
    errors: list[str] = []
    seen: list[dict] = []
    stop = threading.Event()
    with TestClient(app) as client:

        def searcher() -> None:
            while not stop.is_set():
                answer = client.post(
                    "/collections/live/search", files={"image": ("q.png", query, "image/png")}, data={"k": 50}
                )
                if answer.status_code != 200:
                    errors.append(answer.text)
                    continue
                seen.extend(answer.json()["results"]["aligned"])

        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            client.post("/collections/live/sync")
            client.post(
                "/collections/live/points", files=[("image", (f"{n}.png", png(20 + n), "image/png")) for n in range(4)]
            )
            client.post("/collections/live/delete", data={"filter": "label=fish"})
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert not errors, errors[:3]
    assert seen and sum(acks) >= 12
    for hit in seen:  # every point whole: its payload has everything a write gives it
        assert hit["uri"] and hit["payload"]["content_hash"] and hit["image"]


# --------------------------------------------------------------------------- serve --watch


def test_the_watcher_syncs_once_a_changing_folder_settles(tmp_path):
    from percep_rag.serve.watch import SourceWatcher

    folder = tmp_path / "src"
    folder.mkdir()
    calls: list[str] = []
    lines: list[str] = []
    watcher = SourceWatcher({"c": folder}, lambda name: calls.append(name) or f"{name}: synced", settle=2.0,
                            report=lines.append)  # fmt: skip
    assert watcher.look(now=0.0) == []  # the first look only remembers
    assert watcher.look(now=1.0) == []  # nothing changed
    for n, now in enumerate((2.0, 3.0, 4.5)):  # a copy in progress: each look sees more files
        (folder / f"{n}.png").write_bytes(b"x" * (n + 1))
        assert watcher.look(now=now) == []
    assert watcher.look(now=5.0) == []  # unchanged for 0.5 s: not settled yet
    assert watcher.look(now=6.5) == ["c"] and calls == ["c"] and lines == ["watch: c: synced"]
    assert watcher.look(now=20.0) == []  # synced once per settled change
    (folder / "0.png").unlink()
    watcher.look(now=21.0)
    assert watcher.look(now=23.0) == ["c"] and calls == ["c", "c"]


def test_a_failed_watched_sync_is_logged_and_the_watch_goes_on(tmp_path):
    from percep_rag.serve.watch import SourceWatcher

    lines: list[str] = []

    def broken(name: str) -> str:
        raise OSError("source folder gone")

    watcher = SourceWatcher({"c": tmp_path}, broken, settle=0.0, report=lines.append)
    watcher.look(now=0.0)
    (tmp_path / "a.png").write_bytes(b"x")
    watcher.look(now=1.0)
    assert watcher.look(now=2.0) == [] and lines == ["watch: sync of 'c' failed: source folder gone"]


def test_watch_syncs_the_served_collection_when_its_folder_changes(world):
    import time

    from percep_rag.serve.watch import SourceWatcher
    from percep_rag.serve.writes import sync_collection

    app = app_for(world)
    state = app.state
    lines: list[str] = []
    watcher = SourceWatcher(
        {"live": world["photos"]},
        lambda name: sync_collection(state.catalog, state.writes, state.settings, name)["report"],
        interval=0.05,
        settle=0.2,
        report=lines.append,
    )
    with TestClient(app) as client:
        watcher.start()
        try:
            draw(world["photos"] / "train" / "dog" / "watched.png", COLOURS["dog"], 4321)
            deadline = time.monotonic() + 60
            while not lines and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            watcher.stop()
        synced = "watch: live: 1 added, 12 kept, 0 replaced, 0 removed, 0 relinked, 0 failed; "
        assert len(lines) == 1 and lines[0].startswith(synced)
        assert count(client) == 13


def test_the_uploads_list_appends_survives_a_torn_line_and_compacts(tmp_path):
    from percep_rag.datasets.records import ImageRecord
    from percep_rag.uploads import UPLOADS_LIST, forget_uploads, list_uploads

    rows = [(ImageRecord(id=f"uploads/{n}", uri=str(tmp_path / f"{n}.png"), label="x"), f"p{n}") for n in range(600)]
    for start in range(0, 600, 100):
        list_uploads(tmp_path, rows[start : start + 100])
    with (tmp_path / UPLOADS_LIST).open("a") as listed:
        listed.write('{"record": {"id": "cut')  # a write cut short by kill -9
    assert [pid for _, pid in uploaded_records(tmp_path)] == [f"p{n}" for n in range(600)]
    files = forget_uploads(tmp_path, {f"p{n}" for n in range(500)})
    assert len(files) == 500 and files[0] == tmp_path / "0.png"
    assert [pid for _, pid in uploaded_records(tmp_path)] == [f"p{n}" for n in range(500, 600)]
    assert len((tmp_path / UPLOADS_LIST).read_text().splitlines()) == 100  # rewritten without the withdrawn
    assert forget_uploads(tmp_path, {"p0"}) == []  # already gone
