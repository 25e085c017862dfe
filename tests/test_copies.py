"""Issue 38: "copy" means a copy. Exact = the same pixels (pixel hash recorded at index time, on
the local and the Ray path); near = a cosine threshold calibrated for the collection (or given),
never a fixed number; duplicates groups without chaining; byte-identical files are one point
that names them all; collections indexed before pixel hashes still search.

The world is the issue's: twelve images (a circle and a square on six dark backgrounds) that a
random tiny ViT puts at cosine 0.95-0.997 from a query in none of them."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.records import ImageRecord, scan_folder
from percep_rag.duplicates import calibrate, find_duplicates, pixel_hash
from percep_rag.errors import CalibrationError, ConfigError
from percep_rag.indexing import index_records
from percep_rag.pixel_backfill import backfill_pixel_hashes, known_pixel_hash
from percep_rag.retrieval import Retriever
from percep_rag.store import content_hash, open_store, point_id
from tests.copies_world import make_world, query_in_none, reencoded, resized

from .conftest import run_cli

COLLECTION = "world"


@pytest.fixture(scope="module")
def embedder() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32", batch_size=8))


def _index(catalog: Path, spec: str, embedder: AlignedEmbedder) -> None:
    with open_store(spec) as store:
        index_records(scan_folder(catalog), embedder=embedder, store=store, collection=COLLECTION, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("copies")
    catalog = make_world(root)
    queries = root / "queries"
    queries.mkdir()
    original = catalog / "circle" / "0.png"
    found = {
        "root": root,
        "catalog": catalog,
        "original": original,
        "q": query_in_none(queries),
        "reencoded": reencoded(original, queries / "circle0-reencoded.png"),
        "resized": resized(original, queries / "circle0-resized.png"),
        "spec": f"edge:{root / 'store'}",
    }
    _index(catalog, found["spec"], embedder)
    return found


def _search(capsys, world, query: Path, *extra: str, spec: str | None = None, k: int = 11) -> dict:
    args = ["search", str(query), "-c", COLLECTION, "--store", spec or world["spec"], "-k", str(k), "--json", *extra]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    return json.loads(out)


def _captions(monkeypatch, capsys, world, query: Path, spec: str | None = None) -> dict[str, list[str]]:
    """The captions `show` draws under each hit (the figure itself is not looked at)."""
    import percep_rag.viz

    drawn: dict[str, list[str]] = {}

    def grid(queries, base, aligned, out, **kwargs):
        drawn["base"], drawn["aligned"] = kwargs["base_captions"][0], kwargs["aligned_captions"][0]

    monkeypatch.setattr(percep_rag.viz, "retrieval_grid", grid)
    out = world["root"] / "grid.png"
    code, _, err = run_cli(capsys, "show", str(query), "-c", COLLECTION, "--store", spec or world["spec"], "-k", "5",
                           "-o", str(out))  # fmt: skip
    assert code == 0, err
    return drawn


# --------------------------------------------------------------------------- the world of the issue


def test_the_world_marks_no_hit_as_a_copy(world, capsys, monkeypatch):
    found = _search(capsys, world, world["q"])
    for space, hits in found["hits"].items():
        assert len(hits) == 11
        # What makes this mean something: every hit is above the old fixed 0.97 rule or close to it.
        assert min(hit["score"] for hit in hits) > 0.94, space
        assert [hit["copy_of_query"] for hit in hits] == [None] * 11, space
        assert not any(hit["duplicate_of_query"] for hit in hits)
        assert found["copies"][space]["near_threshold"] is None
    code, table, _ = run_cli(capsys, "search", str(world["q"]), "-c", COLLECTION, "--store", world["spec"], "-k", "11")
    rows = [line.split() for line in table.splitlines() if line[:1].isdigit()]
    assert code == 0 and len(rows) == 22 and {row[3] for row in rows} == {"-"}
    assert "near: not marked (no threshold calibrated for aligned" in table
    captions = _captions(monkeypatch, capsys, world, world["q"])
    assert len(captions["aligned"]) == 5 and not any("copy" in c for c in captions["aligned"] + captions["base"])
    # duplicates: no pixel copies, and no near groups without a threshold (never circles with squares).
    code, out, _ = run_cli(capsys, "duplicates", "-c", COLLECTION, "--store", world["spec"], "--no-progress")
    assert code == 0 and "0 groups (0 exact, 0 near)" in out and "near: not looked for" in out, out


def test_a_reencoded_pixel_identical_query_finds_its_original_first_marked_exact(world, capsys, monkeypatch):
    assert pixel_hash(world["reencoded"]) == pixel_hash(world["original"])
    found = _search(capsys, world, world["reencoded"])
    for hits in found["hits"].values():
        assert hits[0]["payload"]["uri"] == str(world["original"]) and hits[0]["copy_of_query"] == "exact"
        assert [hit["copy_of_query"] for hit in hits[1:]] == [None] * 10
        assert hits[0]["payload"]["pixel_hash"] == pixel_hash(world["original"])  # recorded at index time
    captions = _captions(monkeypatch, capsys, world, world["reencoded"])
    assert captions["aligned"][0].endswith("(copy)") and not any("copy" in c for c in captions["aligned"][1:])


# --------------------------------------------------------------------------- calibration


def _pairs_csv(world, folder: Path) -> Path:
    """Two resized copies labelled the same, and every pair of the twelve labelled different."""
    lines = ["image_a,image_b,same"]
    for name in ("circle/1.png", "square/3.png"):
        original = world["catalog"] / name
        lines.append(f"{original},{resized(original, folder / name.replace('/', '-'))},1")
    twelve = sorted(world["catalog"].rglob("*.png"))
    lines += [f"{a},{b},0" for a, b in itertools.combinations(twelve, 2)]
    path = folder / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def calibrated(world, embedder, tmp_path_factory):
    """The world in a store of its own, calibrated with `duplicates --calibrate` (the others stay uncalibrated)."""
    folder = tmp_path_factory.mktemp("calibrated")
    spec = f"edge:{folder / 'store'}"
    _index(world["catalog"], spec, embedder)
    return spec, _pairs_csv(world, folder)


def test_calibration_stores_a_threshold_info_shows_and_search_marks_near_copies(world, calibrated, capsys, monkeypatch):
    spec, pairs = calibrated
    base = ["-c", COLLECTION, "--store", spec]
    code, out, err = run_cli(capsys, "duplicates", *base, "--calibrate", str(pairs), "--no-progress")
    assert code == 0, err
    assert "stored aligned near-copy threshold:" in out and "(68 pairs: 2 same, 66 different; precision 1.00" in out
    # No two of the twelve are within the calibrated threshold: no group, circles never with squares.
    assert "0 groups (0 exact, 0 near)" in out and "near: aligned cosine >=" in out
    assert "calibrated from pairs.csv (68 pairs)" in out
    with open_store(spec) as store:
        stored = store.collection_info(COLLECTION).copy_thresholds["aligned"]
    code, info, _ = run_cli(capsys, "info", COLLECTION, "--store", spec)
    assert code == 0 and f"near-copy threshold (aligned): {stored.threshold:.4f}, calibrated from pairs.csv" in info
    code, info, _ = run_cli(capsys, "info", COLLECTION, "--store", world["spec"])
    assert "near-copy threshold: none (not calibrated" in info

    # A slightly resized copy (not among the pairs) is a near copy of its original; no other image is.
    found = _search(capsys, world, world["resized"], spec=spec)
    aligned = found["hits"]["aligned"]
    assert aligned[0]["payload"]["uri"] == str(world["original"]) and aligned[0]["copy_of_query"] == "near"
    assert aligned[0]["score"] >= stored.threshold > max(hit["score"] for hit in aligned[1:])
    assert [hit["copy_of_query"] for hit in aligned[1:]] == [None] * 10
    assert found["copies"]["aligned"]["near_threshold"] == stored.threshold
    assert [hit["copy_of_query"] for hit in found["hits"]["base"]] == [None] * 11  # base was not calibrated
    captions = _captions(monkeypatch, capsys, world, world["resized"], spec=spec)
    assert "(near copy)" in captions["aligned"][0] and not any("copy" in c for c in captions["aligned"][1:])
    # The query in none of them still marks nothing; the exact copy stays exact, not near.
    assert not any(hit["copy_of_query"] for hit in _search(capsys, world, world["q"], spec=spec)["hits"]["aligned"])
    assert _search(capsys, world, world["reencoded"], spec=spec)["hits"]["aligned"][0]["copy_of_query"] == "exact"
    # An explicit threshold still works, for one search, and says so.
    loose = _search(capsys, world, world["q"], "--duplicate-threshold", "0.9", "--using", "aligned", spec=spec)
    assert {hit["copy_of_query"] for hit in loose["hits"]["aligned"]} == {"near"}
    assert loose["copies"]["aligned"]["near_source"] == "duplicate_threshold"


def test_calibrate_rule_is_precision_first_and_refuses_what_it_cannot_separate():
    chosen = calibrate([0.999, 0.998, 0.95, 0.96, 0.997], [True, True, False, False, True])
    assert chosen.threshold == pytest.approx((0.96 + 0.997) / 2) and (chosen.precision, chosen.recall) == (1.0, 1.0)
    # A same pair below the most similar different pair is missed (recall), never a different one marked.
    missed = calibrate([0.999, 0.93, 0.95], [True, True, False])
    assert missed.precision == 1.0 and missed.recall == 0.5 and missed.threshold > 0.95
    with pytest.raises(CalibrationError, match="no threshold separates"):
        calibrate([0.94, 0.95], [True, False])
    with pytest.raises(ConfigError, match="pairs of both kinds"):
        calibrate([0.99], [True])


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "--calibrate: no file"),
        ("image_a,image_b\nx.png,y.png\n", 2, "need columns image_a, image_b and same"),
        ("image_a,image_b,same\n{a},{b},maybe\n", 2, "same must be 1 or 0"),
        ("image_a,image_b,same\n", 2, "no pairs"),
        ("image_a,image_b,same\n{a},{b},1\n", 2, "pairs of both kinds"),
        ("image_a,image_b,same\n{a},/no/such.png,0\n{a},{b},1\n", 2, "/no/such.png: not a stored image"),
        ("image_a,image_b,same\n{a},{b},1\n{a},{c},0\n{b},{c},0\n", 1, "no threshold separates"),
    ],
)
def test_calibrate_refuses_a_bad_pairs_file_in_one_line(world, capsys, tmp_path, content, code, message):
    path = tmp_path / "pairs.csv"
    if content is not None:
        a, b, c = (world["catalog"] / name for name in ("circle/0.png", "square/5.png", "circle/2.png"))
        path.write_text(content.format(a=a, b=b, c=c))
    args = ["duplicates", "-c", COLLECTION, "--store", world["spec"], "--calibrate", str(path), "--no-progress"]
    got, out, err = run_cli(capsys, *args)
    assert got == code and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    with open_store(world["spec"]) as store:
        assert store.collection_info(COLLECTION).copy_thresholds == {}  # nothing stored on a refusal


# --------------------------------------------------------------------------- grouping


def test_near_groups_never_chain_every_member_is_near_the_representative(world, embedder):
    # A chain: a~b, b~c, c~d at cos(10 deg) = 0.985, but a and c at cos(20 deg) = 0.940.
    angles = {"a": 0, "b": 10, "c": 20, "d": 30, "far": 90}
    vectors = np.zeros((len(angles), embedder.dim), np.float32)
    for row, degrees in enumerate(angles.values()):
        vectors[row, :2] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    ids = [point_id(name, COLLECTION) for name in angles]
    payloads = [{"uri": f"/{name}.png", "pixel_hash": name} for name in angles]
    with open_store(":memory:") as store:
        store.ensure_collection(COLLECTION, embedder.fingerprint)
        store.upsert_arrays(COLLECTION, ids, {"base": vectors[:, : embedder.base_dim], "aligned": vectors}, payloads)
        report = find_duplicates(store, COLLECTION, threshold=0.98)
    assert report.threshold == 0.98 and report.threshold_source == "given"
    # Union-find would say {a, b, c, d}; here b leads (two neighbours) and takes a and c, each
    # within 0.98 of b; d's only neighbour is taken, so d is in no group, and neither is "far".
    [group] = report.groups
    assert group.members[0].uri == "/b.png" and {m.uri for m in group.members[1:]} == {"/a.png", "/c.png"}
    assert group.kind == "near" and group.members[0].score is None
    assert all(m.score == pytest.approx(np.cos(np.radians(10)), abs=1e-5) for m in group.members[1:])
    # The world with a threshold given: every member of every group is within it of the first one.
    with open_store(world["spec"]) as store:
        stored = {p.id: p.vectors["aligned"] for p in store.iterate(COLLECTION, with_vectors=True)}
        world_report = find_duplicates(store, COLLECTION, threshold=0.99, neighbours=11)
    assert world_report.groups
    for group in world_report.groups:
        lead = stored[group.members[0].id]
        assert all(float(lead @ stored[m.id]) >= 0.99 - 1e-6 for m in group.members[1:])


def _write_multi_record_points(store, embedder, count: int, copies: int, folder: Path) -> list[list[str]]:
    """``count`` points with ``copies`` records each, written as the issue-39 index writes them
    (one point per content, ``records`` sorted by uri); random vectors. Returns the uris per point."""
    store.ensure_collection(COLLECTION, embedder.fingerprint)
    rng = np.random.default_rng(0)
    ids, payloads, uris = [], [], []
    for n in range(count):
        files = sorted(str(folder / f"copy{c}" / f"{n:05d}.jpg") for c in range(copies))
        records = [{"record_id": f"{c}/{n}", "uri": uri, "label": f"item{n}"} for c, uri in enumerate(files)]
        digest = content_hash(f"image {n}".encode())
        ids.append(point_id(digest, COLLECTION))
        payloads.append({**records[0], "records": records, "content_hash": digest, "pixel_hash": f"{n:064x}"})
        uris.append(files)
    base = rng.normal(size=(count, embedder.base_dim)).astype(np.float32)
    aligned = rng.normal(size=(count, embedder.dim)).astype(np.float32)
    store.upsert_arrays(COLLECTION, ids, {"base": base, "aligned": aligned}, payloads)
    return uris


def test_a_folder_of_3000_images_in_6_byte_identical_copies_reports_3000_exact_groups(tmp_path, embedder, capsys):
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        uris = _write_multi_record_points(store, embedder, 3000, 6, tmp_path)
    args = ["duplicates", "-c", COLLECTION, "--store", spec, "--no-progress"]
    code, out, err = run_cli(capsys, *args, "--json")
    found = json.loads(out)
    assert code == 0, err
    assert len(found["groups"]) == 3000 and {g["kind"] for g in found["groups"]} == {"exact"}
    named = [uri for g in found["groups"] for m in g["members"] for uri in m["files"]]
    assert len(named) == 18_000 and set(named) == {uri for files in uris for uri in files}
    assert (found["files"], found["points"], found["duplicate_files"]) == (18_000, 3000, 15_000)
    code, table, _ = run_cli(capsys, *args, "--max-groups", "1")
    assert code == 0 and table.startswith(
        f"{COLLECTION}: 3000 groups (3000 exact, 0 near) holding 15000 duplicate files among 18000 files in 3000 points"
    )
    assert "group 1: exact, 6 files in 1 points" in table and "... 2999 more groups" in table


def test_a_hit_says_how_many_files_it_stands_for(world, embedder, capsys, monkeypatch, tmp_path):
    """A point whose payload lists three byte-identical files: search, show, the API and LangChain count them."""
    folder = tmp_path / "three"
    spec = f"edge:{tmp_path / 'store'}"
    _index(world["catalog"], spec, embedder)
    source = world["catalog"] / "square" / "4.png"
    files = []
    for n in range(3):
        (folder / str(n)).mkdir(parents=True)
        files.append(str(shutil.copy(source, folder / str(n) / "4.png")))
    with open_store(spec) as store:
        pid = point_id(content_hash(source.read_bytes()), COLLECTION)
        [point] = store.retrieve(COLLECTION, [pid], with_vectors=True)
        records = sorted([{"record_id": f"r{n}", "uri": uri, "label": "square"} for n, uri in enumerate(files)],
                         key=lambda r: r["uri"])  # fmt: skip
        payload = {**point.payload, **records[0], "records": records}
        store.upsert_arrays(COLLECTION, [pid], {k: [v] for k, v in point.vectors.items()}, [payload])
    found = _search(capsys, world, world["q"], spec=spec, k=12)
    counts = {hit["payload"]["uri"]: hit["files"] for hit in found["hits"]["aligned"]}
    assert counts[records[0]["uri"]] == 3 and sorted(set(counts.values())) == [1, 3]
    code, table, _ = run_cli(capsys, "search", str(world["q"]), "-c", COLLECTION, "--store", spec, "-k", "12")
    rows = [line.split() for line in table.splitlines() if line[:1].isdigit()]
    assert code == 0 and "files" in table.splitlines()[2].split()
    assert {row[4] for row in rows if row[5] == records[0]["uri"]} == {"3"}
    assert {row[4] for row in rows if row[5] != records[0]["uri"]} == {"1"}
    captions = _captions(monkeypatch, capsys, world, source, spec=spec)  # its own point is left out...
    assert not any("files" in c for c in captions["aligned"])
    from percep_rag.cli.hits import hit_caption  # ...so the caption is checked on the stored hit

    with open_store(spec) as store:
        [three] = [h for h in Retriever(store, COLLECTION, embedder).search(str(world["q"]), k=12) if h.id == pid]
    assert hit_caption(1, three).endswith("· 3 files")
    code, out, _ = run_cli(capsys, "duplicates", "-c", COLLECTION, "--store", spec, "--no-progress", "--json")
    [group] = json.loads(out)["groups"]
    assert group["kind"] == "exact" and sorted(group["members"][0]["files"]) == sorted(files)


# --------------------------------------------------------------------------- old collections


def _strip_pixel_hashes(store) -> None:
    points = list(store.iterate(COLLECTION, with_vectors=True))
    payloads = [{k: v for k, v in p.payload.items() if k != "pixel_hash"} for p in points]
    store.upsert_arrays(COLLECTION, [p.id for p in points],
                        {n: [p.vectors[n] for p in points] for n in ("base", "aligned")}, payloads)  # fmt: skip


def test_an_old_collection_without_pixel_hashes_still_searches_and_the_next_index_fills_them(world, embedder, tmp_path):
    catalog = tmp_path / "catalog"
    shutil.copytree(world["catalog"], catalog)
    store = open_store(":memory:")
    index_records(scan_folder(catalog), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    _strip_pixel_hashes(store)
    retriever = Retriever(store, COLLECTION, embedder)
    # Files still there: the exact copy is recognised from its file, on demand.
    assert retriever.search(str(world["reencoded"]), k=3)[0].copy_of_query == "exact"
    # A file replaced since indexing never lends the point its new pixels.
    changed = catalog / "circle" / "0.png"
    payload = next(p.payload for p in store.iterate(COLLECTION) if p.payload["uri"] == str(changed))
    shutil.copy(world["catalog"] / "square" / "0.png", changed)
    assert known_pixel_hash(payload) is None
    # Files gone: still searches, nothing is exact, duplicates still runs.
    shutil.rmtree(catalog)
    hits = retriever.search(str(world["reencoded"]), k=12)
    assert len(hits) == 12 and not any(hit.copy_of_query for hit in hits)
    report = find_duplicates(store, COLLECTION)
    assert report.groups == [] and report.hashes_missing == 12
    # Back in place: the next index run stores them (the backfill), and only the missing ones.
    shutil.copytree(world["catalog"], catalog)
    again = index_records(scan_folder(catalog), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert again.indexed == 0
    hashes = {p.payload["uri"]: p.payload.get("pixel_hash") for p in store.iterate(COLLECTION)}
    assert all(hashes[str(path)] == pixel_hash(path) for path in catalog.rglob("*.png"))
    assert backfill_pixel_hashes(store, COLLECTION) == 0  # nothing left to fill
    store.close()


def test_sync_keeps_the_pixel_hashes_it_does_not_rewrite(world, embedder, tmp_path):
    from percep_rag.sync import sync_records

    catalog = tmp_path / "catalog"
    shutil.copytree(world["catalog"], catalog)
    with open_store(":memory:") as store:
        sync_records(scan_folder(catalog), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        (catalog / "circle" / "1.png").rename(catalog / "circle" / "1-renamed.png")  # relinked
        report = sync_records(scan_folder(catalog), embedder=embedder, store=store, collection=COLLECTION,
                              progress=False)  # fmt: skip
        assert report.relinked == 1 and report.kept == 12
        assert all(p.payload.get("pixel_hash") == pixel_hash(p.payload["uri"]) for p in store.iterate(COLLECTION))


def test_the_ray_stages_record_the_pixel_hash_where_they_decode(world, embedder, tmp_path):
    from percep_rag.distributed.sinks import write_to_store
    from percep_rag.distributed.stages import EmbedActor, fingerprint_of, read_images, rows_batch

    records = [ImageRecord(id=p.stem, uri=str(p)) for p in sorted(world["catalog"].rglob("*.png"))[:3]]
    records.append(ImageRecord(id="bad", uri=str(tmp_path / "missing.png")))
    spec = EmbedderSpec(backbone="tiny-vit-random", precision="fp32", device="cpu")
    read = read_images(rows_batch(records, range(4)), collection="r")
    embedded = EmbedActor(spec, fingerprint_of(spec), threads=1)(read)
    assert list(embedded["pixel_hash"][:3]) == [pixel_hash(r.uri) for r in records[:3]]
    assert embedded["pixel_hash"][3] == ""
    with open_store(":memory:") as store:
        store.ensure_collection("r", fingerprint_of(spec))
        write_to_store(store, "r", embedded, None, records)
        assert {p.payload["uri"]: p.payload["pixel_hash"] for p in store.iterate("r")} == {
            r.uri: pixel_hash(r.uri) for r in records[:3]
        }


def test_indexed_byte_identical_files_are_exact_groups_naming_every_file_until_deleted_or_synced(
    tmp_path, embedder, capsys
):
    """End to end through index (issue 39 writes the records) and duplicates (issue 38 groups
    them): 8 images in 3 byte-identical files each; deleting one file keeps its group of 2; a
    sync after removing another keeps the rest, and the pixel hashes survive the relinks."""
    from PIL import Image

    folder = tmp_path / "catalog"
    rng = np.random.default_rng(0)
    for n in range(8):
        image = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
        for copy in range(3):
            (folder / f"shelf{copy}").mkdir(parents=True, exist_ok=True)
            image.save(folder / f"shelf{copy}" / f"item{n}.png")
    spec = f"edge:{tmp_path / 'store'}"
    _index(folder, spec, embedder)
    args = ["duplicates", "-c", COLLECTION, "--store", spec, "--no-progress", "--json"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    found = json.loads(out)
    assert len(found["groups"]) == 8 and {g["kind"] for g in found["groups"]} == {"exact"}
    named = sorted(uri for g in found["groups"] for m in g["members"] for uri in m["files"])
    assert named == sorted(str(p) for p in folder.rglob("*.png")) and found["files"] == 24

    code, _, err = run_cli(
        capsys, "delete", "-c", COLLECTION, "--store", spec, "--uri", str(folder / "shelf0" / "item0.png"), "--yes"
    )
    assert code == 0, err

    def group_sizes() -> dict[str, int]:
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err
        groups = json.loads(out)["groups"]
        return {Path(g["members"][0]["files"][0]).name: sum(len(m["files"]) for m in g["members"]) for g in groups}

    assert group_sizes() == {**{f"item{n}.png": 3 for n in range(1, 8)}, "item0.png": 2}
    (folder / "shelf1" / "item1.png").unlink()
    with open_store(spec) as store:
        from percep_rag.sync import sync_records

        sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        points = list(store.iterate(COLLECTION))
    assert len(points) == 8 and all(p.payload.get("pixel_hash") for p in points)
    # item0's deleted file is still in the folder, so the sync lists it again; item1's is gone.
    assert group_sizes() == {**{f"item{n}.png": 3 for n in range(8) if n != 1}, "item1.png": 2}
