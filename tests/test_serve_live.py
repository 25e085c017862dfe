"""Issue 37: a catalog that changes while it is served, with real processes.

``percep-rag serve`` holds an Edge store; ``percep-rag index --sync`` and ``delete`` on it go
through the service (the owner file next to the store says where it listens), images are added
through the API, and searches see exactly the current catalog, with no WAL error anywhere. The
service killed with ``kill -9`` in the middle of a sync leaves a stale owner file and a partly
synced store: a restart and a second sync end in exactly the synced state.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'percep-rag[serve]'")
httpx = pytest.importorskip("httpx")

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.cli import main  # noqa: E402
from percep_rag.datasets.records import scan_folder  # noqa: E402
from percep_rag.indexing import index_records  # noqa: E402
from percep_rag.store import content_hash, open_store, point_id  # noqa: E402
from percep_rag.store.owner import OWNER_FILE, find_owner  # noqa: E402
from percep_rag.sync import sync_records  # noqa: E402
from tests.serve_world import COLOURS, draw, free_port, index_folder, make_photos, wait_until_served  # noqa: E402

from .conftest import kill_after_acks, make_crash_folder, make_image, start_script, without_stats  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "live-test-key"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "WAL" not in captured.err + captured.out
    return done.value.code or 0, captured.out, captured.err


def ids_of(paths, collection: str) -> set[str]:
    return {point_id(content_hash(Path(p).read_bytes()), collection) for p in paths}


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def served(tmp_path):
    """``percep-rag serve`` (a real process, with an API key) over ``live``, indexed from photos/."""
    photos = make_photos(tmp_path, per_class=2)
    store_root = tmp_path / "store"
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    index_folder(photos, f"edge:{store_root}", "live", embedder)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")]),
        "PERCEP_RAG_API_KEY": KEY,
    }
    command = [
        sys.executable, "-m", "percep_rag", "serve", "--store", f"edge:{store_root}", "--source", f"live={photos}",
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        owner = wait_until_served(store_root, process, log)
        yield {"photos": photos, "store": store_root, "owner": owner, "process": process, "log": log}
    finally:
        stop(process)


def test_a_served_edge_collection_changes_through_the_cli_and_the_api(served, tmp_path, capsys, monkeypatch):
    photos, store_root, owner = served["photos"], served["store"], served["owner"]
    spec = f"edge:{store_root}"
    assert owner.collections == ["live"] and owner.sources == {"live": str(photos)} and owner.api_key
    api = httpx.Client(base_url=owner.url, headers={"X-API-Key": KEY}, timeout=60)

    # Without the key the CLI says which service holds the store and what it needs, in one line.
    monkeypatch.delenv("PERCEP_RAG_API_KEY", raising=False)
    code, _, err = run_cli(capsys, "index", str(photos), "-c", "live", "--store", spec, "--sync")
    assert code == 1 and f"(pid {owner.pid})" in err and "PERCEP_RAG_API_KEY" in err and len(err.splitlines()) <= 2
    monkeypatch.setenv("PERCEP_RAG_API_KEY", KEY)

    # 1. Three images added to the folder, then `index --sync` of it: done by the service.
    added = [draw(photos / "train" / "cat" / f"new{n}.png", COLOURS["cat"], 500 + n) for n in range(3)]
    code, out, _ = run_cli(capsys, "index", str(photos), "-c", "live", "--store", spec, "--sync")
    assert code == 0, out
    assert "live: 3 added, 12 kept, 0 replaced, 0 removed, 0 relinked, 0 failed" in out
    assert f"now holds 15 points (through percep-rag serve (pid {owner.pid})" in out

    # 2. An image added through the API.
    uploaded = png_bytes(77)
    answer = api.post(
        "/collections/live/points", files={"image": ("u.png", uploaded, "image/png")}, data={"label": "cat"}
    )
    assert answer.status_code == 200 and answer.json()["added"] == 1, answer.text

    # 3. One deleted through the CLI (confirmed with --yes), by its source uri.
    code, out, _ = run_cli(capsys, "delete", "-c", "live", "--store", spec, "--uri", str(added[0]), "--yes")
    assert code == 0 and "deleted 1 point of 'live'" in out and "15 left" in out
    added[0].unlink()  # withdrawn from the folder too, or the next sync brings it back

    # Search sees exactly the current catalog: the folder's images and the upload.
    expected = ids_of(scan_folder_paths(photos), "live") | {point_id(content_hash(uploaded), "live")}
    query = png_bytes(999)  # not in the catalog: it excludes nothing
    found = api.post("/collections/live/search", files={"image": ("q.png", query, "image/png")}, data={"k": 100})
    assert found.status_code == 200
    for space in ("aligned", "base"):
        assert {hit["id"] for hit in found.json()["results"][space]} == expected
    assert api.get("/collections").json()["collections"][0]["points"] == len(expected) == 15

    # What cannot be forwarded fails in one line naming the service and how to write through it.
    other = tmp_path / "elsewhere"
    draw(other / "x.png", COLOURS["dog"], 1)
    code, _, err = run_cli(capsys, "index", str(other), "-c", "live", "--store", spec)
    assert code == 1 and f"served by percep-rag serve (pid {owner.pid})" in err and "POST" in err
    assert len(err.splitlines()) <= 2

    # A second sync through the service changes nothing; the served store stays consistent.
    code, out, _ = run_cli(capsys, "index", str(photos), "-c", "live", "--store", spec, "--sync")
    assert code == 0 and "0 added, 15 kept, 0 replaced, 0 removed" in out

    # Stopped: the owner file goes, the CLI writes the store itself again.
    stop(served["process"])
    assert not (store_root / OWNER_FILE).exists()
    code, out, _ = run_cli(capsys, "index", str(photos), "-c", "live", "--store", spec, "--sync")
    assert code == 0 and "0 added, 15 kept" in out and "through" not in out
    log = served["log"].read_text()
    assert "WAL" not in log and "Traceback" not in log


def scan_folder_paths(folder: Path) -> list[str]:
    return [record.uri for record in scan_folder(folder)]


def test_a_store_locked_by_another_opener_is_one_line_without_the_wal_text(tmp_path, capsys):
    photos = make_photos(tmp_path, per_class=1)
    spec = f"edge:{tmp_path / 'store'}"
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    index_folder(photos, spec, "live", embedder)
    with open_store(spec) as holder:
        holder.count("live")  # holds the collection's WAL, as a service would
        for args in (
            ("index", str(photos), "-c", "live", "--store", spec, "--sync"),
            ("index", str(photos), "-c", "live", "--store", spec),
            ("delete", "-c", "live", "--store", spec, "--filter", "label=cat", "--yes"),
        ):
            code, _, err = run_cli(capsys, *args)
            assert code == 1 and "is held by another process" in err and "write through the service" in err, err


# --------------------------------------------------------------------------- kill -9 inside the service

_SERVICE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.serve import ServedCollection, WriteTarget, Writes, create_app
    from percep_rag.serve.running import run_service
    from percep_rag.store import open_store

    folder, root, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4,
                                                   num_workers=0))

    def acknowledged(n):
        print(n, flush=True)
        time.sleep(0.3)  # keeps the sync long enough to be killed in the middle

    with open_store(f"edge:{root}") as store:
        writes = Writes({"shapes": WriteTarget(source=folder, uploads=root / ".uploads" / "shapes")},
                        on_upsert=acknowledged)
        app = create_app([ServedCollection("shapes", store, embedder)], writes=writes)
        run_service(app, host="127.0.0.1", port=port, log_level="warning", store_roots=[root],
                    collections=["shapes"], sources=writes.sources, api_key=False)
    """
)


def post_sync(url: str, answers: list) -> None:
    request = urllib.request.Request(f"{url}/collections/shapes/sync", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            answers.append(json.loads(answer.read()))
    except (urllib.error.URLError, OSError, ConnectionError) as error:
        answers.append(error)


def test_a_sync_in_the_service_killed_by_kill_9_then_restarted_ends_synced(tmp_path):
    folder = tmp_path / "images"
    make_crash_folder(folder, first_seed=900)
    (folder / "zz_bad.jpg").unlink()
    root = tmp_path / "store"
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=8))
    with open_store(f"edge:{root}") as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection="shapes", progress=False)
        before = {p.id for p in store.iterate("shapes")}
    for n in range(5):
        (folder / f"{n:02d}.png").unlink()  # withdrawn
    for n in range(5, 8):
        make_image(7000 + n, size=(32, 32)).save(folder / f"{n:02d}.png")  # replaced
    for n in range(16):
        make_image(8000 + n, size=(32, 32)).save(folder / f"new{n:02d}.png")  # added
    wanted = ids_of(scan_folder_paths(folder), "shapes")

    port = free_port()
    service = start_script(_SERVICE, str(folder), str(root), str(port))
    owner = wait_until_served(root, service)
    answers: list = []
    threading.Thread(target=post_sync, args=(owner.url, answers), daemon=True).start()
    acknowledged = kill_after_acks(service, 2)
    assert acknowledged >= 2, service.stderr.read()
    # The killed service's owner file is stale: found dead, removed, never forwarded to.
    assert (root / OWNER_FILE).exists() and find_owner(root) is None and not (root / OWNER_FILE).exists()
    with open_store(f"edge:{root}") as store:
        partial = {p.id: p.payload for p in store.iterate("shapes")}
    assert before & wanted <= set(partial)  # nothing still in the source was lost
    assert wanted - set(partial)  # killed in the middle: not everything new was written yet

    restarted = start_script(_SERVICE, str(folder), str(root), str(port))
    try:
        owner = wait_until_served(root, restarted)
        answers.clear()
        post_sync(owner.url, answers)
        [report] = answers
        assert isinstance(report, dict), report
        assert report["added"] == len(wanted - set(partial)) and report["count"] == len(wanted)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(30)
    # Exactly the synced state: the points and payloads a sync from scratch gives.
    reference = open_store(":memory:")
    sync_records(scan_folder(folder), embedder=embedder, store=reference, collection="shapes", progress=False)
    with open_store(f"edge:{root}") as store:
        synced = {p.id: p.payload for p in store.iterate("shapes")}
    # (Stats aside: whether a file's was recorded depends on its age when it was read.)
    assert {pid: without_stats(p) for pid, p in synced.items()} == {
        p.id: without_stats(p.payload) for p in reference.iterate("shapes")
    }
    assert set(synced) == wanted
